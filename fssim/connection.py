"""One Event Socket connection as mod_event_socket runs it: reads command blocks, writes
replies and events in order through one writer greenlet, and the connection faults (drop
mid-frame, reset, stall, inject bytes). What it asks of the switch behind it is `Switch`."""

from __future__ import annotations

import logging
import struct
import uuid as uuidlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import gevent
import gevent.event
from gevent import socket

from fssim import captured
from fssim.bus import Event
from fssim.subscription import Subscription
from fssim.wire import AUTH_REQUEST, api_response, command_reply, disconnect_notice

log = logging.getLogger(__name__)

# mod_event_socket: a listener's event queue holds 100000 events (MAX_QUEUE_LEN); past that
# events are lost, and after 500 lost ones (MAX_MISSED) the listener is killed.
MAX_QUEUE_LEN = 100_000
MAX_MISSED = 500


class Switch(Protocol):
    """What a connection asks of the switch behind it (the Simulator is one)."""

    def command_received(self, connection: int, line: str) -> None:
        """Every command line, as it arrives (for the command log)."""

    def api(self, command: str, arg: str | None) -> str:
        """Run an API command; the reply body."""

    def reply_withheld(self, command: str) -> bool:
        """True when the reply to this api/bgapi command must not be sent (a fault)."""

    def background_job(self, job_uuid: str, command: str, arg: str | None,
                       reply: str) -> None:
        """A bgapi command ran: fire its BACKGROUND_JOB event."""

    def subscriptions_changed(self) -> None:
        """A connection started or stopped listening, or went away."""


@dataclass
class Command:
    """One command block received from a client."""

    line: str
    headers: dict[str, str]
    body: bytes


def next_command(buffer: bytes, pos: int) -> tuple[Command | None, int]:
    """The command block starting at `pos` (lines, blank line, optional Content-Length
    body) and where the next one starts; (None, pos) while it is incomplete."""
    size = len(buffer)
    while pos < size and buffer[pos] in (10, 13):  # FreeSWITCH skips stray newlines
        pos += 1
    end = buffer.find(b"\n\n", pos)
    crlf = buffer.find(b"\r\n\r\n", pos, end if end >= 0 else size)
    if crlf >= 0:
        end, sep = crlf, 4
    elif end >= 0:
        sep = 2
    else:
        return None, pos
    lines = buffer[pos:end].decode("utf-8", "replace").replace("\r", "").split("\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    start = end + sep
    length = int(headers.get("Content-Length", "0") or 0)
    if size - start < length:
        return None, pos
    return Command(lines[0].strip(), headers, buffer[start:start + length]), start + length


class _Close:
    """Writer instruction: close the socket (RST when `reset`)."""

    def __init__(self, reset: bool = False) -> None:
        self.reset = reset


def _send_all(sock: socket.socket, data: bytes) -> None:
    """sendall() with send(): gevent's sendall asks the kernel for the socket's buffer size
    on every call."""
    view = memoryview(data)
    while view:
        view = view[sock.send(view):]


class Connection:
    """One ESL client: reads commands, writes replies and events in order."""

    def __init__(self, switch: Switch, sock: socket.socket, address: tuple[str, int],
                 conn_id: int, *, password: str, max_queue: int = MAX_QUEUE_LEN,
                 on_close: Callable[[Connection], None] | None = None) -> None:
        self.switch = switch
        self.sock = sock
        self.address = address
        self.id = conn_id
        self.authed = False
        self.subscription = Subscription()
        self.closed = False
        self._password = password
        self._max_queue = max_queue  # unsent frames before events are lost
        self._on_close = on_close
        self.received: deque[str] = deque(maxlen=10_000)  # last commands, newest last
        self._out: deque[bytes | _Close] = deque()
        self._wake = gevent.event.Event()
        self._resume = gevent.event.Event()
        self._stall_until = 0.0
        self._busy = False
        self._held: list[bytes] = []
        self._writer: gevent.Greenlet | None = None
        self.lost_events = 0

    @property
    def format(self) -> str:
        """The event format this connection asked for (`plain` or `json`)."""
        return self.subscription.format

    # --- output -----------------------------------------------------------------------------

    def _queue(self, data: bytes | _Close) -> None:
        if not self.closed:
            self._out.append(data)
            self._wake.set()

    def send_event(self, event: Event) -> None:
        """Queue an event; held back while this connection runs an api command (as the
        listener thread does in FreeSWITCH)."""
        if len(self._out) + len(self._held) >= self._max_queue:
            self.lost_events += 1
            if self.lost_events > MAX_MISSED:
                log.warning("killing ESL connection %d: %d events lost", self.id,
                            self.lost_events)
                self.abort()
            return
        frame = event.frame(self.format)
        if self._busy:
            self._held.append(frame)
        else:
            self._queue(frame)

    def close_after_output(self) -> None:
        """Close once everything queued so far is sent."""
        self._queue(_Close())

    def inject(self, data: bytes) -> None:
        """Queue raw bytes (garbage, malformed or truncated frames) in the output stream."""
        self._queue(data)

    def stall(self, seconds: float) -> None:
        """Send nothing (events or replies) for `seconds`, keeping the socket open."""
        self._stall_until = gevent.get_hub().loop.now() + seconds
        self._resume.clear()

    def resume(self) -> None:
        self._stall_until = 0.0
        self._resume.set()

    def abort(self, mid_frame: bool = False, reset: bool = False,
              sample: Callable[[str], bytes] | None = None) -> None:
        """Drop the connection without a disconnect notice, discarding unsent output;
        with `mid_frame`, half of a frame goes out first (the first one queued, else
        `sample(format)`)."""
        if self.closed:
            return
        pending = [d for d in self._out if isinstance(d, bytes)]
        self._out.clear()
        if mid_frame:
            whole = pending[0] if pending else b""
            if not whole and sample is not None:
                whole = sample(self.format)
            self._out.append(whole[: max(1, len(whole) // 2)])
        self._out.append(_Close(reset))
        self.resume()
        self._wake.set()

    def wants(self, event: Event) -> bool:
        return not self.closed and self.subscription.wants(event)

    def _write_loop(self) -> None:
        loop = gevent.get_hub().loop
        try:
            while True:
                if not self._out:
                    self._wake.clear()
                    self._wake.wait()
                    continue
                wait = self._stall_until - loop.now()
                if wait > 0:
                    self._resume.wait(wait)
                    self._stall_until = 0.0
                    continue
                batch: list[bytes] = []
                closing: _Close | None = None
                while self._out:
                    item = self._out.popleft()
                    if isinstance(item, _Close):
                        closing = item
                        break
                    batch.append(item)
                if batch:
                    _send_all(self.sock, batch[0] if len(batch) == 1 else b"".join(batch))
                if closing is not None:
                    self._close_socket(closing.reset)
                    return
        except OSError:
            pass
        finally:
            self._close_socket(False)

    def _close_socket(self, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if self._on_close is not None:
            self._on_close(self)
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # --- input ------------------------------------------------------------------------------

    def serve(self) -> None:
        """Run the connection until the client or the simulator closes it."""
        self._writer = gevent.spawn(self._write_loop)
        self._queue(AUTH_REQUEST)
        buffer = b""
        try:
            while not self.closed:
                data = self.sock.recv(65536)
                if not data:
                    break
                buffer = buffer + data if buffer else data
                pos = 0
                while not self.closed:
                    command, pos = next_command(buffer, pos)
                    if command is None:
                        break
                    self._handle(command)
                buffer = buffer[pos:]
        except OSError:
            pass
        finally:
            if not self.closed:
                self._queue(_Close())
            self._writer.join(timeout=5)
            self._close_socket(False)

    def _reply(self, data: bytes) -> None:
        self._queue(data)

    def _handle(self, command: Command) -> None:
        line = command.line
        low = line.lower()
        self.received.append(line)
        self.switch.command_received(self.id, line)
        if not self.authed:
            if low.startswith("auth "):
                if line[5:].strip() == self._password:
                    self.authed = True
                    self._reply(command_reply("+OK accepted"))
                else:
                    self._reply(command_reply("-ERR invalid"))
                    self._finish(captured.DISCONNECT_GOODBYE)
            else:
                self._reply(command_reply("-ERR command not found"))
            return
        if low == "exit" or low.startswith(("exit ", "...")):
            self._reply(command_reply("+OK bye"))
            self._finish(captured.DISCONNECT_GOODBYE)
        elif low.startswith("api "):
            self._api(line[4:].strip())
        elif low.startswith("bgapi "):
            self._bgapi(line[6:].strip(), command.headers.get("Job-UUID"))
        elif low.startswith("event ") or low == "event":
            self._subscribe(self.subscription.event(line[6:]))
        elif low.startswith("noevents"):
            self._subscribe(self.subscription.noevents())
        elif low.startswith("nixevent "):
            self._subscribe(self.subscription.nixevent(line[9:]))
        elif low.startswith("filter "):
            self._reply(command_reply(self.subscription.filter(line[7:])))
        else:
            self._reply(command_reply("-ERR command not found"))

    def _finish(self, notice: str) -> None:
        self._queue(disconnect_notice(notice))
        self._queue(_Close())

    def _api(self, text: str) -> None:
        cmd, _, arg = text.partition(" ")
        self._busy = True
        try:
            reply = self.switch.api(cmd, arg.strip() or None)
        finally:
            self._busy = False
        if not reply:
            reply = "-ERR no reply\n"
        if not self.switch.reply_withheld(text):
            self._queue(api_response(reply))
        held, self._held = self._held, []
        for frame in held:
            self._queue(frame)

    def _bgapi(self, text: str, job_uuid: str | None) -> None:
        job = job_uuid or str(uuidlib.uuid4())
        if not self.switch.reply_withheld(text):
            self._queue(command_reply(f"+OK Job-UUID: {job}", job))
        cmd, _, arg = text.partition(" ")
        reply = self.switch.api(cmd, arg.strip() or None)
        self.switch.background_job(job, cmd, arg.strip() or None, reply)

    def _subscribe(self, reply_text: str) -> None:
        if reply_text.startswith("+OK"):
            self.switch.subscriptions_changed()
        self._reply(command_reply(reply_text))
