"""One Event Socket TCP connection, from the greeting to the close (fsock's `fsconn`;
connection.py is the reconnecting `fsock` that makes a new Link after each drop).

- every wait has a deadline: TCP connect, auth/request, auth, each command (ReplyTimeout);
- one reader greenlet per link frames the stream (frames.py: bodies by Content-Length, EOF
  mid-frame ends the link cleanly, a malformed stream closes it) and types each frame
  (messages.py); events go straight to `on_event`, so every complete frame read before a
  drop is delivered, in order;
- replies are matched to requests in order, so several can be in flight (pipelining); a
  reply that times out leaves that order unknowable, so the link closes;
- `close()` happens once: every reply still pending fails at once (SwitchUnavailable), then
  `on_close` is told;
- liveness: with `liveness` set, a link with no frame for that long is closed.

The password never appears in logs, reprs or exception messages.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import gevent
import gevent.socket
from gevent.event import AsyncResult, Event
from gevent.lock import Semaphore

from rater.clock import Clock
from rater.errors import (
    AuthenticationFailed,
    FrameError,
    MalformedFrame,
    ReplyTimeout,
    SwitchUnavailable,
)
from rater.esl import commands
from rater.esl.events import ChannelEvent
from rater.esl.frames import Frame, FrameParser
from rater.esl.messages import parse_frame
from rater.esl.replies import (
    ApiResponse,
    AuthRequest,
    CommandReply,
    DisconnectNotice,
    Reply,
    RudeRejection,
)

log = logging.getLogger(__name__)

RECV_SIZE = 256 * 1024

T = TypeVar("T")
R = TypeVar("R", bound=Reply)


def expect(kind: type[R], what: str) -> Callable[[Reply], R]:
    """A reply interpreter that accepts only `kind` (else SwitchUnavailable)."""

    def check(reply: Reply) -> R:
        if not isinstance(reply, kind):
            raise SwitchUnavailable(f"{what}: got {type(reply).__name__}, expected {kind.__name__}")
        return reply

    return check


def redact(data: bytes) -> str:
    """The first line of a command, for logs: never the password."""
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    return "auth ********" if first.startswith("auth") else first


class PendingReply(Generic[T]):
    """A reply on its way. `result()` waits for it until the request's deadline."""

    def __init__(self, link: Link, future: AsyncResult, what: str, deadline: float,
                 interpret: Callable[[Reply], T]) -> None:
        self._link = link
        self._future = future
        self._what = what
        self._deadline = deadline
        self._interpret = interpret

    def result(self, timeout: float | None = None) -> T:
        """The interpreted reply. Raises ReplyTimeout (and closes the link: replies are
        matched in order, so a late one would answer the wrong request),
        SwitchUnavailable if the link closed, CommandFailed for -ERR/-USAGE."""
        link = self._link
        wait = self._deadline - link.clock.monotonic() if timeout is None else timeout
        try:
            reply = self._future.get(timeout=max(0.0, wait))
        except gevent.Timeout:
            link.close(f"no reply to {self._what} in time; replies are matched in order, "
                       "so the connection is out of step")
            raise ReplyTimeout(
                f"{link.owner}: no reply to {self._what} within {max(0.0, wait):.3g}s"
            ) from None
        return self._interpret(reply)


class _Watchdog:
    """Calls `expired()` (in the hub) once `due()` (seconds left) is no longer positive,
    checking again whenever it was pushed back meanwhile. `close()` cancels it."""

    def __init__(self, due: Callable[[], float], expired: Callable[[], None]) -> None:
        self._due = due
        self._expired = expired
        self._timer: Any = None  # a gevent loop timer (gevent is untyped)
        self._arm(max(0.0, due()))

    def _arm(self, delay: float) -> None:
        self._timer = gevent.get_hub().loop.timer(delay)
        self._timer.start(self._check)

    def _check(self) -> None:
        self._timer.close()
        left = self._due()
        if left > 0:
            self._arm(left)
        else:
            self._timer = None
            self._expired()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None


class _WriteStalled(Exception):
    """A write did not finish before its deadline."""


def _send_all(sock: gevent.socket.socket, data: bytes) -> None:
    """sendall() with send(): gevent's sendall asks the kernel for the socket's buffer size
    on every call, a syscall per command."""
    view = memoryview(data)
    while view:
        view = view[sock.send(view):]


def open_socket(host: str, port: int, deadline: float, owner: object,
                clock: Clock) -> gevent.socket.socket:
    """A TCP connection to the node, made before `deadline`. Raises ReplyTimeout or
    SwitchUnavailable (`owner` names the connection in their messages)."""
    remaining = deadline - clock.monotonic()
    try:
        sock = gevent.socket.create_connection((host, port), timeout=remaining)
    except TimeoutError:
        raise ReplyTimeout(f"{owner}: TCP connect not done within {remaining:.3g}s") from None
    except OSError as exc:
        raise SwitchUnavailable(f"{owner}: cannot connect: {exc}") from None
    sock.settimeout(None)  # deadlines are gevent.Timeouts, per operation
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


class Link:
    """One connected socket: its reader, its writes, the replies it awaits in FIFO order.

    `owner` names the link in error messages (its str(), read when the error is made);
    `name` in logs. `on_event` gets every channel event, in the reader greenlet (it must
    not block); `on_close(link, reason)` is called once, when the link closes.
    """

    def __init__(
        self,
        sock: gevent.socket.socket,
        *,
        owner: object,
        name: str,
        clock: Clock,
        on_event: Callable[[ChannelEvent], object],
        on_close: Callable[[Link, str], object],
        liveness: float | None = None,
    ) -> None:
        self.sock = sock
        self.owner = owner
        self.name = name
        self.clock = clock
        self._on_event = on_event
        self._on_close = on_close
        self._liveness = liveness
        self.pending: deque[AsyncResult] = deque()
        self.write_lock = Semaphore()
        self.closed = Event()
        self.reason: str | None = None  # why it closed; None while open
        self.last_frame_at = clock.monotonic()
        self.notice: str | None = None  # body of a text/disconnect-notice, if one came
        self.reader: gevent.Greenlet | None = None

    def close(self, reason: str) -> None:
        """Close once: fail every pending reply, close the socket, tell `on_close`."""
        if self.reason is not None:
            return
        self.reason = reason
        pending, self.pending = self.pending, deque()
        for future in pending:
            future.set_exception(SwitchUnavailable(f"{self.owner}: connection lost ({reason})"))
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed.set()
        self._on_close(self, reason)

    # --- the handshake -------------------------------------------------------------------

    def greet(self, deadline: float) -> None:
        """Start the reader and wait for FreeSWITCH's auth/request, awaited like a reply."""
        hello: AsyncResult = AsyncResult()
        self.pending.append(hello)  # before reading: it may come at once
        self.reader = gevent.spawn(self.read_loop)
        PendingReply(self, hello, "the auth/request greeting", deadline,
                     expect(AuthRequest, str(self.owner))).result()

    def authenticate(self, password: str, deadline: float) -> None:
        """Send the password; AuthenticationFailed if FreeSWITCH refuses it."""
        reply = self.submit(commands.auth(password), "auth", deadline,
                            expect(CommandReply, str(self.owner))).result()
        if not reply.ok:
            raise AuthenticationFailed(
                f"{self.owner}: FreeSWITCH refused the Event Socket password ({reply.text})"
            )

    def command(self, data: bytes, deadline: float) -> str:
        """Send an ESL command (event, filter, exit ...) and return its +OK text."""
        what = redact(data)
        reply = self.submit(data, what, deadline, expect(CommandReply, str(self.owner))).result()
        return commands.check_reply(reply.text, what)

    # --- requests ---------------------------------------------------------------------------

    def submit(self, data: bytes, what: str, deadline: float,
               interpret: Callable[[Reply], T]) -> PendingReply[T]:
        return self.submit_all([(data, what, interpret)], deadline)[0]

    def submit_all(self, requests: Sequence[tuple[bytes, str, Callable[[Reply], T]]],
                   deadline: float) -> list[PendingReply[T]]:
        """Send requests (data, what, interpret) in one write; replies come back in order."""
        what = ", ".join(w for _, w, _ in requests)
        futures = [AsyncResult() for _ in requests]
        remaining = deadline - self.clock.monotonic()
        if not self.write_lock.acquire(timeout=max(0.0, remaining)):
            raise ReplyTimeout(f"{self.owner}: could not send {what} within {remaining:.3g}s")
        try:
            if self.reason is not None:
                raise SwitchUnavailable(f"{self.owner}: connection lost ({self.reason})")
            self.pending.extend(futures)  # before writing: the replies may come at once
            if log.isEnabledFor(logging.DEBUG):
                for data, _, _ in requests:
                    log.debug("%s: > %s", self.name, redact(data))
            data = requests[0][0] if len(requests) == 1 else b"".join(r[0] for r in requests)
            try:
                with gevent.Timeout(max(0.0, deadline - self.clock.monotonic()),
                                    _WriteStalled):
                    _send_all(self.sock, data)
            except _WriteStalled:
                self.close(f"sending {what} stalled")
                raise ReplyTimeout(f"{self.owner}: could not send {what} in time") from None
            except OSError as exc:
                self.close(f"socket error: {exc}")
                raise SwitchUnavailable(f"{self.owner}: sending {what} failed: {exc}") from None
        finally:
            self.write_lock.release()
        return [PendingReply(self, future, w, deadline, interpret)
                for future, (_, w, interpret) in zip(futures, requests, strict=True)]

    # --- reading ----------------------------------------------------------------------------

    def read_loop(self) -> None:
        """The reader greenlet's body: frames until EOF, an error or close()."""
        parser = FrameParser()
        reason = "closed"
        watchdog = self._watch() if self._liveness is not None else None
        try:
            while self.reason is None:
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    if parser.buffered:
                        reason = (f"EOF in the middle of a frame ({parser.buffered} bytes "
                                  "of it dropped)")
                    else:
                        reason = "closed by FreeSWITCH"
                    if self.notice:
                        reason += f" after: {self.notice}"
                    break
                try:
                    frames = parser.feed(data)
                except FrameError as exc:
                    self._on_frames(exc.frames)  # what came before the bad bytes
                    reason = f"malformed stream: {exc}"
                    break
                self._on_frames(frames)
        except OSError as exc:
            reason = f"socket error: {exc}"
        except Exception as exc:  # a bug below must cost this connection, not the reader
            log.exception("%s: reading the stream failed", self.name)
            reason = f"reading the stream failed: {exc!r}"
        finally:
            if watchdog is not None:
                watchdog.close()
            self.close(reason)  # a no-op when the watchdog closed it first

    def _watch(self) -> _Watchdog:
        """Close once no frame came for `liveness` seconds. One timer re-armed per
        liveness period, rather than a timeout around every read."""
        liveness = self._liveness
        assert liveness is not None

        def due() -> float:
            return self.last_frame_at + liveness - self.clock.monotonic()

        def silent() -> None:
            # runs in the hub: the close (it wakes the reader) in a greenlet
            gevent.spawn(self.close, f"no frame for {liveness}s (no HEARTBEAT): "
                         "connection presumed dead")

        return _Watchdog(due, silent)

    def _on_frames(self, frames: list[Frame]) -> None:
        if frames:
            self.last_frame_at = self.clock.monotonic()
        for frame in frames:
            try:
                message = parse_frame(frame)
            except MalformedFrame as exc:  # the framing held: skip just this event
                log.error("%s: dropped a malformed event: %s", self.name, exc)
                continue
            if isinstance(message, ChannelEvent):
                try:
                    self._on_event(message)
                except Exception:
                    log.exception("%s: on_event failed for %r", self.name, message)
            elif isinstance(message, AuthRequest | CommandReply | ApiResponse):
                if self.pending:
                    self.pending.popleft().set(message)
                elif self.reason is None:
                    self.close(f"a {frame.content_type} nobody asked for: out of step")
            elif isinstance(message, DisconnectNotice):
                self.notice = message.body.strip()
                log.info("%s: disconnect notice: %s", self.name, self.notice)
            elif isinstance(message, RudeRejection):
                if self.pending:
                    self.pending.popleft().set_exception(AuthenticationFailed(
                        f"{self.owner}: FreeSWITCH's ACL refused this client: "
                        f"{message.body.strip()}"
                    ))
            else:
                log.debug("%s: ignored a %s frame", self.name, frame.content_type)
