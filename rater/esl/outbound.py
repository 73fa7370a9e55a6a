"""One call brought to the daemon by FreeSWITCH's `socket` dialplan application (the Event
Socket's outbound mode, static: the channel's own thread serves the connection). No rating
here: read the call's data, then admit it or hang it up, then `exit`.

The conversation, as a real FreeSWITCH 1.10.12 holds it (fssim/captures/outbound/outbound_*):

    daemon  connect                          switch  command/reply + the channel's data
    daemon  sendmsg: execute multiset ...    switch  +OK (the application has run)
    daemon  sendmsg: execute transfer ...    switch  +OK
    daemon  exit                             switch  +OK bye, a disconnect notice, close

Nothing is read from the switch between the commands: they are written at once and run in
order, so a decision costs the switch one wake-up. Then the channel leaves the `socket`
application: transferred, it runs the transfer context; hung up, it ends; released with
neither, the dialplan goes on with its next application (the shipped one parks the call,
which the daemon then decides the usual way). Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import logging
import socket

import gevent
from gevent.event import Event

from rater.errors import (
    CommandFailed,
    MalformedFrame,
    ReplyTimeout,
    SwitchError,
    SwitchUnavailable,
)
from rater.esl import commands
from rater.esl.frames import Frame, FrameParser
from rater.esl.names import ContentType, Header
from rater.esl.plain import PlainEvent

log = logging.getLogger(__name__)

_RECV_SIZE = 64 * 1024
# The channel's data is one header block: ~7 KB for a SIP call; a switch sending more than
# this is not one to talk to.
MAX_CHANNEL_DATA = 1024 * 1024
_REPLY = ContentType.COMMAND_REPLY.encode()


class OutboundCall:
    """The daemon's side of one `socket` connection. `done` is set once a decision
    (admit or hangup) or a release has been sent and its replies read, or the connection
    closed; one of them only, ever."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout
        self._parser = FrameParser()
        self._frames: list[Frame] = []
        self.uuid = ""
        self._finishing = False  # a decision or a release is being sent
        self.done = Event()

    @property
    def waiting(self) -> bool:
        """Neither decided, released nor closed (nor being so)."""
        return not (self._finishing or self.done.is_set())

    # --- the conversation ---------------------------------------------------------------

    def connect(self) -> PlainEvent:
        """Send `connect`; the channel's data (headers and variables, as in an event).
        The frame (~7 KB, no body) is read as a plain event as it stands: headers are
        searched when asked for, never all split."""
        self._send(commands.connect())
        block = self._read_block("the channel's data")
        try:
            event = PlainEvent(block)
        except MalformedFrame as exc:
            raise SwitchUnavailable(f"outbound connection: {exc}") from None
        kind, text = event.get(Header.CONTENT_TYPE), event.get(Header.REPLY_TEXT) or ""
        if kind != ContentType.COMMAND_REPLY or not text.startswith("+OK"):
            raise SwitchUnavailable(f"outbound connection: unexpected answer to connect: "
                                    f"{kind or 'no Content-Type'} {text.strip()}")
        self.uuid = event.unique_id or ""
        if not self.uuid:
            raise SwitchUnavailable("outbound connection: the channel's data has no Unique-ID")
        return event

    def decide(self, batch: list[bytes], what: str) -> None:
        """Write these `sendmsg` commands and `exit` at once, then read one reply per
        command. A connection that ends first means the channel left the `socket`
        application without this decision (it hung up, or went on to the dialplan's
        fallback): SwitchUnavailable. An -ERR reply: CommandFailed."""
        if self._finishing or self.done.is_set():
            raise SwitchUnavailable(f"outbound connection of {self.uuid}: already decided, "
                                    "released or closed")
        self._finishing = True
        try:
            self._send(b"".join(batch) + commands.exit())
            for _ in batch:
                frame = self._next_frame(f"the reply to {what}")
                text = (frame.header(Header.REPLY_TEXT) or b"").decode("utf-8", "replace")
                if frame.header(Header.CONTENT_TYPE) != _REPLY:
                    raise SwitchUnavailable(f"{what}: unexpected {frame.content_type!r} frame")
                if not text.startswith("+OK"):
                    raise CommandFailed(f"{what} through the outbound connection: {text}")
        finally:
            self.done.set()

    def release(self) -> None:
        """Let the channel go on without a decision: its dialplan continues (and parks it)."""
        if self._finishing or self.done.is_set():
            return
        self._finishing = True
        try:
            self._send(commands.exit())
        except SwitchError:
            pass  # the channel went on (or down) without us: nothing more to do
        finally:
            self.done.set()

    def close(self) -> None:
        self.done.set()
        with contextlib.suppress(OSError):
            self._sock.close()

    # --- helpers ------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        try:
            with gevent.Timeout(self._timeout, ReplyTimeout(
                    f"outbound connection {self.uuid or '?'}: write stalled")):
                self._sock.sendall(data)
        except OSError as exc:
            raise SwitchUnavailable(f"outbound connection {self.uuid or '?'}: {exc}") from None

    def _read_block(self, what: str) -> bytes:
        """Bytes up to the first blank line (its first newline kept); what follows goes
        to the frame parser."""
        buf = bytearray()
        with gevent.Timeout(self._timeout, ReplyTimeout(
                f"outbound connection: no {what} within {self._timeout:g}s")):
            while (end := buf.find(b"\n\n")) < 0:
                if len(buf) > MAX_CHANNEL_DATA:
                    raise SwitchUnavailable(f"outbound connection: {what} longer than "
                                            f"{MAX_CHANNEL_DATA} bytes")
                buf.extend(self._recv(what))
        self._frames.extend(self._parser.feed(bytes(buf[end + 2:])))
        return bytes(buf[:end + 1])

    def _recv(self, what: str) -> bytes:
        try:
            data = self._sock.recv(_RECV_SIZE)
        except OSError as exc:
            raise SwitchUnavailable(f"outbound connection {self.uuid or '?'}: {exc}") from None
        if not data:
            raise SwitchUnavailable(f"outbound connection {self.uuid or '?'} closed before {what}")
        return data

    def _next_frame(self, what: str) -> Frame:
        timeout = ReplyTimeout(f"outbound connection {self.uuid or '?'}: no {what} within "
                               f"{self._timeout:g}s")
        with gevent.Timeout(self._timeout, timeout):
            while not self._frames:
                self._frames.extend(self._parser.feed(self._recv(what)))
        return self._frames.pop(0)
