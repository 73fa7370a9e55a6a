"""The Event Socket listener: connections, authentication, subscriptions, filters, command
dispatch, and the connection faults (drop, stall, inject bytes, withhold replies).

Framing is byte-for-byte what FreeSWITCH 1.10 sends (see freeswitch-captures): `auth/request`,
`command/reply` with `Reply-Text`, `api/response` with `Content-Length`, events as
`Content-Length` then `Content-Type: text/event-plain|json`, `text/disconnect-notice`.
"""

from __future__ import annotations

import logging
import re
import struct
import uuid as uuidlib
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gevent
import gevent.event
from gevent import socket
from gevent.server import StreamServer

from rater.esl.frames import build_frame
from rater.sim import captured
from rater.sim.bus import Event

if TYPE_CHECKING:
    from rater.sim.simulator import Simulator

log = logging.getLogger(__name__)

AUTH_REQUEST = build_frame([("Content-Type", "auth/request")])
# mod_event_socket: a listener's event queue holds 100000 events (MAX_QUEUE_LEN); past that
# events are lost, and after 500 lost ones (MAX_MISSED) the listener is killed.
MAX_QUEUE_LEN = 100_000
MAX_MISSED = 500
EVENT_NAMES = frozenset((
    "CUSTOM", "CLONE", "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE",
    "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_OUTGOING",
    "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_APPLICATION", "CHANNEL_ORIGINATE", "CHANNEL_UUID",
    "API", "LOG", "INBOUND_CHAN", "OUTBOUND_CHAN", "STARTUP", "SHUTDOWN", "PUBLISH", "UNPUBLISH",
    "TALK", "NOTALK", "SESSION_CRASH", "MODULE_LOAD", "MODULE_UNLOAD", "DTMF", "MESSAGE",
    "PRESENCE_IN", "NOTIFY_IN", "PRESENCE_OUT", "PRESENCE_PROBE", "MESSAGE_WAITING",
    "MESSAGE_QUERY", "ROSTER", "CODEC", "BACKGROUND_JOB", "DETECTED_SPEECH", "DETECTED_TONE",
    "PRIVATE_COMMAND", "HEARTBEAT", "TRAP", "ADD_SCHEDULE", "DEL_SCHEDULE", "EXE_SCHEDULE",
    "RE_SCHEDULE", "RELOADXML", "NOTIFY", "PHONE_FEATURE", "PHONE_FEATURE_SUBSCRIBE",
    "SEND_MESSAGE", "RECV_MESSAGE", "REQUEST_PARAMS", "CHANNEL_DATA", "GENERAL", "COMMAND",
    "SESSION_HEARTBEAT", "CLIENT_DISCONNECTED", "SERVER_DISCONNECTED", "SEND_INFO", "RECV_INFO",
    "RECV_RTCP_MESSAGE", "SEND_RTCP_MESSAGE", "CALL_SECURE", "NAT", "RECORD_START", "RECORD_STOP",
    "PLAYBACK_START", "PLAYBACK_STOP", "CALL_UPDATE", "FAILURE", "SOCKET_DATA", "MEDIA_BUG_START",
    "MEDIA_BUG_STOP", "CONFERENCE_DATA_QUERY", "CONFERENCE_DATA", "CALL_SETUP_REQ",
    "CALL_SETUP_RESULT", "CALL_DETAIL", "DEVICE_STATE", "TEXT", "SHUTDOWN_REQUESTED", "ALL",
))


def command_reply(text: str, job_uuid: str | None = None) -> bytes:
    """`command/reply` with Reply-Text (and Job-UUID after a bgapi)."""
    headers = [("Content-Type", "command/reply"), ("Reply-Text", text)]
    if job_uuid:
        headers.append(("Job-UUID", job_uuid))
    return build_frame(headers)


def api_response(body: str) -> bytes:
    """`api/response`: Content-Type first, then Content-Length, then the body (what
    build_frame gives for these headers, without its checks: one per api command)."""
    raw = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(raw), raw)


def disconnect_notice(body: str) -> bytes:
    raw = body.encode()
    return build_frame(
        [("Content-Type", "text/disconnect-notice"), ("Content-Length", str(len(raw)))], raw)


def event_name(word: str) -> str | None:
    """switch_name_event: case-insensitive, `SWITCH_EVENT_` prefix allowed."""
    name = word.upper()
    if name.startswith("SWITCH_EVENT_"):
        name = name[13:]
    return name if name in EVENT_NAMES else None


@dataclass
class Command:
    """One command block received from a client."""

    line: str
    headers: dict[str, str]
    body: bytes


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

    def __init__(self, sim: Simulator, sock: socket.socket, address: tuple[str, int],
                 conn_id: int) -> None:
        self.sim = sim
        self.sock = sock
        self.address = address
        self.id = conn_id
        self.authed = False
        self.listening = False
        self.format = "plain"
        self.all_events = False
        self.events: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.closed = False
        self.received: deque[str] = deque(maxlen=10_000)  # last commands, newest last
        self._out: deque[bytes | _Close] = deque()
        self._wake = gevent.event.Event()
        self._resume = gevent.event.Event()
        self._stall_until = 0.0
        self._busy = False
        self._held: list[bytes] = []
        self._writer: gevent.Greenlet | None = None
        self.lost_events = 0

    # --- output -----------------------------------------------------------------------------

    def _queue(self, data: bytes | _Close) -> None:
        if not self.closed:
            self._out.append(data)
            self._wake.set()

    def send_event(self, event: Event) -> None:
        """Queue an event; held back while this connection runs an api command (as the
        listener thread does in FreeSWITCH)."""
        if len(self._out) + len(self._held) >= self.sim.max_queue:
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
              frame: bytes | None = None) -> None:
        """Drop the connection without a disconnect notice, discarding unsent output;
        with `mid_frame`, half of a frame goes out first."""
        if self.closed:
            return
        pending = [d for d in self._out if isinstance(d, bytes)]
        self._out.clear()
        if mid_frame:
            whole = frame or (pending[0] if pending else b"")
            if not whole:
                whole = self.sim.sample_event_frame(self.format)
            self._out.append(whole[: max(1, len(whole) // 2)])
        self._out.append(_Close(reset))
        self.resume()
        self._wake.set()

    def wants(self, event: Event) -> bool:
        if not self.listening or self.closed:
            return False
        if not (self.all_events or event.name in self.events):
            return False
        return not self.filters or self._passes_filters(event)

    def _passes_filters(self, event: Event) -> bool:
        """mod_event_socket's filter loop: any positive match lets the event through, a
        matching `-value` filter stops it; `/regex/` values are regular expressions."""
        send = False
        for name, raw in self.filters:
            value = event.header(name)
            if value is None:
                continue
            pos = True
            comp = raw
            while comp and comp[0] in "+- ":
                if comp[0] == "+":
                    pos = True
                elif comp[0] == "-":
                    pos = False
                comp = comp[1:]
            if send and pos:
                continue
            if raw.startswith("/"):
                pattern = comp.strip("/")
                hit = re.search(pattern, value) is not None
            else:
                hit = value.lower() == comp.lower()
            if hit:
                if pos:
                    send = True
                else:
                    return False
        return send

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
        self.sim.server.forget(self)
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
                    command, pos = self._next_command(buffer, pos)
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

    @staticmethod
    def _next_command(buffer: bytes, pos: int) -> tuple[Command | None, int]:
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

    def _reply(self, data: bytes) -> None:
        self._queue(data)

    def _handle(self, command: Command) -> None:
        line = command.line
        low = line.lower()
        self.received.append(line)
        self.sim.log_command(self.id, line)
        if not self.authed:
            if low.startswith("auth "):
                if line[5:].strip() == self.sim.password:
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
            self._event(line[6:])
        elif low.startswith("noevents"):
            self._noevents()
        elif low.startswith("nixevent "):
            self._nixevent(line[9:])
        elif low.startswith("filter "):
            self._filter(line[7:])
        else:
            self._reply(command_reply("-ERR command not found"))

    def _finish(self, notice: str) -> None:
        self._queue(disconnect_notice(notice))
        self._queue(_Close())

    def _api(self, text: str) -> None:
        cmd, _, arg = text.partition(" ")
        self._busy = True
        try:
            reply = self.sim.api.execute(cmd, arg.strip() or None)
        finally:
            self._busy = False
        if not reply:
            reply = "-ERR no reply\n"
        if not self.sim.take_withheld(text):
            self._queue(api_response(reply))
        held, self._held = self._held, []
        for frame in held:
            self._queue(frame)

    def _bgapi(self, text: str, job_uuid: str | None) -> None:
        job = job_uuid or str(uuidlib.uuid4())
        if not self.sim.take_withheld(text):
            self._queue(command_reply(f"+OK Job-UUID: {job}", job))
        cmd, _, arg = text.partition(" ")
        reply = self.sim.api.execute(cmd, arg.strip() or None)
        self.sim.emit_background_job(job, cmd, arg.strip() or None, reply)

    def _event(self, args: str) -> None:
        words = args.split()
        fmt = "plain"
        if words and words[0].lower() in ("plain", "json", "xml"):
            fmt = words.pop(0).lower()
        if fmt == "xml":
            self._reply(command_reply("-ERR xml events are not simulated"))
            return
        found, custom = 0, False
        for word in words:
            if custom:
                continue  # CUSTOM subclass names: the simulator fires no custom events
            name = event_name(word)
            if name is None:
                continue
            found += 1
            if name == "ALL":
                self.all_events = True
            else:
                self.events.add(name)
            custom = name == "CUSTOM"
        if not found:
            self._reply(command_reply("-ERR no keywords supplied"))
            return
        self.format = fmt
        self.listening = True
        self.sim.subscriptions_changed()
        self._reply(command_reply(f"+OK event listener enabled {fmt}"))

    def _noevents(self) -> None:
        if not self.listening:
            self._reply(command_reply("-ERR not listening for events"))
            return
        self.listening = False
        self.all_events = False
        self.events.clear()
        self.sim.subscriptions_changed()
        self._reply(command_reply("+OK no longer listening for events"))

    def _nixevent(self, args: str) -> None:
        for word in args.split():
            name = event_name(word)
            if name == "ALL":
                self.all_events = False
                self.events.clear()
            elif name is not None:
                self.events.discard(name)
        self.sim.subscriptions_changed()
        self._reply(command_reply("+OK events nixed"))

    def _filter(self, args: str) -> None:
        name, _, value = args.strip().partition(" ")
        if name.lower() == "delete" and value:
            name, _, value = value.partition(" ")
            if name.lower() == "all":
                self.filters.clear()
            else:
                self.filters = [
                    (n, v) for n, v in self.filters
                    if not (n.lower() == name.lower() and (not value or v == value))
                ]
            self._reply(command_reply(f"+OK filter deleted. [{name}]=[{value}]"))
        elif value:
            if name.lower() == "add":
                name, _, value = value.partition(" ")
            self.filters.append((name, value))
            self._reply(command_reply(f"+OK filter added. [{name}]=[{value}]"))
        else:
            self._reply(command_reply("-ERR invalid syntax"))


class EslServer:
    """The listening socket and its connections."""

    def __init__(self, sim: Simulator, host: str, port: int) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.connections: list[Connection] = []
        self._ids = 0
        self._server: StreamServer | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> int:
        """Bind and accept; returns the bound port (reused on a restart)."""
        self._server = StreamServer((self.host, self.port), self._handle)
        self._server.start()
        self.port = self._server.server_port
        return self.port

    def stop(self, abort_connections: bool = True) -> None:
        """Stop accepting; close every connection abruptly unless told not to."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if abort_connections:
            for conn in list(self.connections):
                conn.abort()

    def forget(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)
            self.sim.subscriptions_changed()

    def _handle(self, sock: socket.socket, address: tuple[str, int]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._ids += 1
        conn = Connection(self.sim, sock, address, self._ids)
        self.connections.append(conn)
        log.debug("ESL connection %d from %s:%d", conn.id, *address[:2])
        conn.serve()
