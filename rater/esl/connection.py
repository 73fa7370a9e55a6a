"""One FreeSWITCH node's Event Socket client: greenswitch's InboundESL with its gaps closed.

What this adds to stock greenswitch (DESIGN §8):

- every wait has a deadline: TCP connect, auth/request, auth, each command (ReplyTimeout);
  when the connection drops, every reply still pending fails at once (SwitchUnavailable);
- `run()` keeps the connection up: reconnect with exponential backoff and jitter,
  re-authenticate, re-subscribe, then call `on_connected` (the daemon reconciles there);
- framing by frames.py (bodies by Content-Length, EOF mid-frame ends the connection
  cleanly, a malformed stream drops it) and typed events, plain or JSON (events.py);
- events go straight from the reader to `on_event` (e.g. KeyedDispatcher.submit), so
  every complete frame read before a drop is delivered, in order;
- liveness: subscribed to HEARTBEAT, a connection with no frame for `liveness_timeout`
  is dropped and re-made;
- replies are matched to requests in order, so several commands can be in flight
  (pipelining); a reply that times out leaves that order unknowable, so the connection
  is dropped and everything pending fails.

`api` runs inline in FreeSWITCH's listener and holds back that connection's events, so a
node gets two of these: one subscribed to events, one for commands (subscribed to
HEARTBEAT only, for liveness).

The password never appears in logs, reprs or exception messages.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

import gevent
import gevent.socket
import greenswitch
from gevent.event import AsyncResult, Event
from gevent.lock import Semaphore

from rater.backoff import Backoff
from rater.clock import Clock, SystemClock
from rater.errors import (
    AuthenticationFailed,
    FrameError,
    MalformedFrame,
    ReplyTimeout,
    SwitchError,
    SwitchUnavailable,
)
from rater.esl import commands
from rater.esl.dispatch import KeyedDispatcher
from rater.esl.events import (
    ApiResponse,
    AuthRequest,
    ChannelEvent,
    CommandReply,
    DisconnectNotice,
    EventFormat,
    EventName,
    Header,
    Reply,
    RudeRejection,
    parse_frame,
)
from rater.esl.frames import Frame, FrameParser

log = logging.getLogger(__name__)

RECV_SIZE = 256 * 1024
_IDLE_CHECK = 60.0  # run() re-checks its state this often while a connection is up

T = TypeVar("T")


class State(enum.Enum):
    IDLE = "idle"  # created, never connected
    CONNECTING = "connecting"  # TCP connect, then waiting for auth/request
    AUTHENTICATING = "authenticating"
    SUBSCRIBING = "subscribing"
    READY = "ready"
    DISCONNECTED = "disconnected"  # lost, or an attempt failed; run() backs off and retries
    STOPPED = "stopped"  # stop() was called; final


class PendingReply(Generic[T]):
    """A reply on its way. `result()` waits for it until the request's deadline."""

    def __init__(
        self,
        conn: EslConnection,
        link: _Link,
        future: AsyncResult,
        what: str,
        deadline: float,
        interpret: Callable[[Reply], T],
    ) -> None:
        self._conn = conn
        self._link = link
        self._future = future
        self._what = what
        self._deadline = deadline
        self._interpret = interpret

    def result(self, timeout: float | None = None) -> T:
        """The interpreted reply. Raises ReplyTimeout (and drops the connection: replies
        are matched in order, so a late one would answer the wrong request),
        SwitchUnavailable if the connection dropped, CommandFailed for -ERR/-USAGE."""
        clock = self._conn._clock
        wait = self._deadline - clock.monotonic() if timeout is None else timeout
        try:
            reply = self._future.get(timeout=max(0.0, wait))
        except gevent.Timeout:
            self._conn._drop(
                self._link, f"no reply to {self._what} in time; replies are matched in order, "
                "so the connection is out of step"
            )
            raise ReplyTimeout(
                f"{self._conn}: no reply to {self._what} within {max(0.0, wait):.3g}s"
            ) from None
        return self._interpret(reply)


class _Link:
    """One TCP connection: socket, write lock, replies awaited in FIFO order."""

    def __init__(self, sock: gevent.socket.socket, now: float) -> None:
        self.sock = sock
        self.pending: deque[AsyncResult] = deque()
        self.write_lock = Semaphore()
        self.closed = Event()
        self.reason: str | None = None  # why it closed; None while open
        self.last_frame_at = now
        self.notice: str | None = None  # body of a text/disconnect-notice, if one came
        self.reader: gevent.Greenlet | None = None

    def close(self, reason: str, label: str) -> bool:
        """Close once: fail every pending reply, close the socket. False if already closed."""
        if self.reason is not None:
            return False
        self.reason = reason
        pending, self.pending = self.pending, deque()
        for future in pending:
            future.set_exception(SwitchUnavailable(f"{label}: connection lost ({reason})"))
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed.set()
        return True


class _Watchdog:
    """Calls `expired()` (in the hub) once `due()` (seconds left) is no longer positive,
    checking again whenever it was pushed back meanwhile. `close()` cancels it."""

    def __init__(self, due: Callable[[], float], expired: Callable[[], None]) -> None:
        self._due = due
        self._expired = expired
        self._timer = None
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


def _redact(data: bytes) -> str:
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    return "auth ********" if first.startswith("auth") else first


def _expect(kind: type, what: str) -> Callable[[Reply], Reply]:
    def check(reply: Reply) -> Reply:
        if not isinstance(reply, kind):
            raise SwitchUnavailable(f"{what}: got {type(reply).__name__}, expected {kind.__name__}")
        return reply

    return check


class EslConnection(greenswitch.InboundESL):
    """An inbound Event Socket connection to one FreeSWITCH node.

    `events` is what to subscribe to (nothing else is asked for; HEARTBEAT is added when
    `liveness_timeout` is set). Events are handed, in arrival order and in the reader
    greenlet, to `on_event`, which must not block: pass `KeyedDispatcher.submit`. With no
    `on_event`, greenswitch-style `register_handle()` handlers run through an internal
    KeyedDispatcher (one channel's events in order, channels concurrently).
    """

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        name: str | None = None,
        events: Sequence[str] = (),
        event_format: str = EventFormat.PLAIN,
        filters: Iterable[tuple[str, str]] = (),
        on_event: Callable[[ChannelEvent], object] | None = None,
        on_connected: Callable[[EslConnection], object] | None = None,
        connect_timeout: float = 5.0,
        command_timeout: float = 5.0,
        liveness_timeout: float | None = 45.0,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
    ) -> None:
        # greenswitch's own __init__ builds the queue-and-greenlets machinery this class
        # replaces (and loose flags); set only what its inherited helpers use.
        self.host = host
        self.port = port
        self.password = password
        self.timeout = connect_timeout
        self.event_handlers: dict[str, list[Callable]] = {}
        self.name = name or f"{host}:{port}"
        self._events = tuple(events)
        self._format = event_format
        self._filters = tuple(filters)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._liveness = liveness_timeout
        self._clock = clock or SystemClock()
        self._backoff = backoff or Backoff(
            0.5, 30.0, jitter=0.2, stable_after=60.0, clock=self._clock)
        self._on_connected = on_connected
        self._wanted = frozenset(self._events)
        names = self._subscribed_names()
        self._subscription = commands.event(event_format, names) if names else None
        for header, value in self._filters:
            commands.filter(header, value)  # validate now, not at connect time
        self._dispatcher: KeyedDispatcher[ChannelEvent] | None = None
        if on_event is None:
            self._dispatcher = KeyedDispatcher(
                self._run_handlers, ChannelEvent.ordering_key.fget, name=f"{self.name}-events"
            )
            on_event = self._dispatcher.submit
        self._on_event = on_event
        self._state = State.IDLE
        self._ready = Event()  # set exactly while the state is READY (see _set_state)
        self._wakeup = Event()  # set by stop() to cut run()'s backoff short
        self._link: _Link | None = None

    def __repr__(self) -> str:
        return f"<EslConnection {self.name} {self._state.value}>"

    __str__ = __repr__

    # --- state --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def connected(self) -> bool:  # greenswitch's flag, derived from the one state
        return self._state is State.READY

    @property
    def last_frame_at(self) -> float | None:
        """Monotonic time of the last frame received on the current connection."""
        return None if self._link is None else self._link.last_frame_at

    def wait_ready(self, timeout: float) -> bool:
        """Wait until connected and subscribed; False if `timeout` passed first."""
        return self._ready.wait(timeout=timeout)

    def _set_state(self, state: State) -> None:
        if self._state is State.STOPPED:
            return
        if state is not self._state:
            log.debug("%s: %s -> %s", self.name, self._state.value, state.value)
        self._state = state
        if state is State.READY:
            self._ready.set()
        else:
            self._ready.clear()

    def _subscribed_names(self) -> list[str]:
        names = list(self._events)
        if self._liveness is not None and EventName.ALL not in names:
            names.append(EventName.HEARTBEAT)
        return names

    # --- connecting -----------------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> None:
        """Connect, authenticate and subscribe once, within `timeout` seconds (default
        `connect_timeout`) for the connection and authentication. No retry: see run().

        Raises ReplyTimeout, SwitchUnavailable, AuthenticationFailed or CommandFailed.
        """
        if self._state is State.STOPPED:
            raise SwitchUnavailable(f"{self}: stopped")
        if self._link is not None:
            return
        deadline = self._clock.monotonic() + (timeout or self._connect_timeout)
        self._set_state(State.CONNECTING)
        link: _Link | None = None
        try:
            link = self._link = _Link(self._open(deadline), self._clock.monotonic())
            hello: AsyncResult = AsyncResult()  # auth/request comes like a reply to "connect"
            link.pending.append(hello)
            link.reader = gevent.spawn(self._read_loop, link)
            PendingReply(self, link, hello, "the auth/request greeting", deadline,
                         _expect(AuthRequest, str(self))).result()
            self._set_state(State.AUTHENTICATING)
            reply = self._submit(link, commands.auth(self.password), "auth", deadline,
                                 _expect(CommandReply, str(self))).result()
            if not reply.ok:
                raise AuthenticationFailed(
                    f"{self}: FreeSWITCH refused the Event Socket password ({reply.text})"
                )
            self._set_state(State.SUBSCRIBING)
            for data in self._subscribe_commands():
                self._command_on(link, data, self._clock.monotonic() + self._command_timeout)
            self._set_state(State.READY)
            log.info("%s: connected and subscribed", self.name)
        except BaseException as exc:
            if link is not None:
                self._drop(link, f"connect failed: {exc}")
            else:
                self._set_state(State.DISCONNECTED)
            raise

    def _open(self, deadline: float) -> gevent.socket.socket:
        remaining = deadline - self._clock.monotonic()
        try:
            sock = gevent.socket.create_connection((self.host, self.port), timeout=remaining)
        except TimeoutError:
            raise ReplyTimeout(
                f"{self}: TCP connect not done within {remaining:.3g}s"
            ) from None
        except OSError as exc:
            raise SwitchUnavailable(f"{self}: cannot connect: {exc}") from None
        sock.settimeout(None)  # deadlines are gevent.Timeouts, per operation
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock

    def _subscribe_commands(self) -> list[bytes]:
        out = [] if self._subscription is None else [self._subscription]
        filters = list(self._filters)
        if filters and self._liveness is not None:
            # filters let through only what matches one of them: HEARTBEAT must match too
            filters.append((Header.EVENT_NAME, EventName.HEARTBEAT))
        out += [commands.filter(header, value) for header, value in filters]
        return out

    def run(self) -> None:
        """Stay connected until stop(): connect, subscribe, call `on_connected`, wait for
        the connection to drop, back off, repeat. Logs failures, never raises them;
        returns once stop() is called. Meant to be the body of a supervised greenlet."""
        while self._state is not State.STOPPED:
            try:
                self.connect()
            except SwitchError as exc:
                if self._state is State.STOPPED:
                    break
                log.warning("%s: connection attempt failed: %s", self.name, exc)
                self._pause()
                continue
            link = self._link
            if link is None:  # dropped already
                self._pause()
                continue
            self._backoff.connected()
            if self._on_connected is not None:
                try:
                    self._on_connected(self)
                except Exception:
                    log.exception("%s: on_connected failed; reconnecting", self.name)
                    self._drop(link, "on_connected failed")
            while not link.closed.wait(timeout=_IDLE_CHECK):
                pass
            if self._state is State.STOPPED:
                break
            self._pause()
        log.info("%s: stopped", self.name)

    def _pause(self) -> None:
        delay = self._backoff.next_delay()
        log.info("%s: reconnecting in %.2fs", self.name, delay)
        self._wakeup.wait(timeout=delay)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop for good: send `exit` if connected (best effort, within `timeout`), close,
        end the reader, and let queued handlers finish within `timeout`."""
        if self._state is State.STOPPED:
            return
        link = self._link
        was_ready = self._state is State.READY
        self._set_state(State.STOPPED)
        self._wakeup.set()
        if link is not None:
            if was_ready and link.reason is None:
                with contextlib.suppress(SwitchError):  # best effort: we close anyway
                    self._command_on(link, commands.exit(), self._clock.monotonic() + timeout)
            self._drop(link, "stopped")
            if link.reader is not None:
                link.reader.join(timeout=timeout)
                if not link.reader.dead:
                    link.reader.kill(block=False)
        if self._dispatcher is not None:
            self._dispatcher.close(timeout)

    # --- reading ---------------------------------------------------------------------------

    def _read_loop(self, link: _Link) -> None:
        parser = FrameParser()
        reason = "closed"
        watchdog = self._watch(link) if self._liveness is not None else None
        try:
            while link.reason is None:
                data = link.sock.recv(RECV_SIZE)
                if not data:
                    if parser.buffered:
                        reason = (f"EOF in the middle of a frame ({parser.buffered} bytes "
                                  "of it dropped)")
                    else:
                        reason = "closed by FreeSWITCH"
                    if link.notice:
                        reason += f" after: {link.notice}"
                    break
                try:
                    frames = parser.feed(data)
                except FrameError as exc:
                    self._on_frames(link, exc.frames)  # what came before the bad bytes
                    reason = f"malformed stream: {exc}"
                    break
                self._on_frames(link, frames)
        except OSError as exc:
            reason = f"socket error: {exc}"
        except Exception as exc:  # a bug below must cost this connection, not the reader
            log.exception("%s: reading the stream failed", self.name)
            reason = f"reading the stream failed: {exc!r}"
        finally:
            if watchdog is not None:
                watchdog.close()
            self._drop(link, reason)  # a no-op when the watchdog dropped it first

    def _watch(self, link: _Link) -> _Watchdog:
        """Drop `link` once no frame came for `liveness` seconds. One timer re-armed per
        liveness period, rather than a timeout around every read."""
        liveness = self._liveness
        assert liveness is not None

        def due() -> float:
            return link.last_frame_at + liveness - self._clock.monotonic()

        def silent() -> None:
            # runs in the hub: the drop (closing the socket wakes the reader) in a greenlet
            gevent.spawn(self._drop, link, f"no frame for {liveness}s (no HEARTBEAT): "
                         "connection presumed dead")

        return _Watchdog(due, silent)

    def _on_frames(self, link: _Link, frames: list[Frame]) -> None:
        if frames:
            link.last_frame_at = self._clock.monotonic()
        for frame in frames:
            try:
                message = parse_frame(frame)
            except MalformedFrame as exc:  # the framing held: skip just this event
                log.error("%s: dropped a malformed event: %s", self.name, exc)
                continue
            if isinstance(message, ChannelEvent):
                self._deliver(message)
            elif isinstance(message, AuthRequest | CommandReply | ApiResponse):
                if link.pending:
                    link.pending.popleft().set(message)
                elif link.reason is None:
                    self._drop(link, f"a {frame.content_type} nobody asked for: out of step")
            elif isinstance(message, DisconnectNotice):
                link.notice = message.body.strip()
                log.info("%s: disconnect notice: %s", self.name, link.notice)
            elif isinstance(message, RudeRejection):
                if link.pending:
                    link.pending.popleft().set_exception(AuthenticationFailed(
                        f"{self}: FreeSWITCH's ACL refused this client: {message.body.strip()}"
                    ))
            else:
                log.debug("%s: ignored a %s frame", self.name, frame.content_type)

    def _deliver(self, event: ChannelEvent) -> None:
        name = event.name
        wanted = self._wanted
        if not (
            name in wanted
            or EventName.ALL in wanted
            or (name == EventName.CUSTOM and event.subclass in wanted)
        ):
            return  # e.g. the HEARTBEAT we asked for only to watch liveness
        try:
            self._on_event(event)
        except Exception:
            log.exception("%s: on_event failed for %r", self.name, event)

    def _run_handlers(self, event: ChannelEvent) -> None:
        """greenswitch-style dispatch: handlers of the event name (or CUSTOM subclass),
        else '*'. Each failure is logged by greenswitch's _safe_exec_handler."""
        name = event.subclass if event.name == EventName.CUSTOM else event.name
        handlers = self.event_handlers.get(name or "") or self.event_handlers.get("*") or ()
        for handler in list(handlers):
            self._safe_exec_handler(handler, event)

    def _drop(self, link: _Link, reason: str) -> None:
        if not link.close(reason, str(self)):
            return
        if link is self._link:
            self._link = None
            if self._state is State.READY:
                log.warning("%s: connection lost: %s", self.name, reason)
            else:
                log.info("%s: connection closed: %s", self.name, reason)
            self._set_state(State.DISCONNECTED)

    # --- requests -----------------------------------------------------------------------------

    def _current(self) -> _Link:
        link = self._link
        if link is None or self._state is not State.READY:
            raise SwitchUnavailable(f"{self}: not connected")
        return link

    def _submit(
        self, link: _Link, data: bytes, what: str, deadline: float,
        interpret: Callable[[Reply], T],
    ) -> PendingReply[T]:
        return self._submit_all(link, [(data, what, interpret)], deadline)[0]

    def _submit_all(
        self, link: _Link, requests: Sequence[tuple[bytes, str, Callable[[Reply], T]]],
        deadline: float,
    ) -> list[PendingReply[T]]:
        """Send requests (data, what, interpret) in one write; replies come back in order."""
        what = ", ".join(w for _, w, _ in requests)
        futures = [AsyncResult() for _ in requests]
        remaining = deadline - self._clock.monotonic()
        if not link.write_lock.acquire(timeout=max(0.0, remaining)):
            raise ReplyTimeout(f"{self}: could not send {what} within {remaining:.3g}s")
        try:
            if link.reason is not None:
                raise SwitchUnavailable(f"{self}: connection lost ({link.reason})")
            link.pending.extend(futures)  # before writing: the replies may come at once
            if log.isEnabledFor(logging.DEBUG):
                for data, _, _ in requests:
                    log.debug("%s: > %s", self.name, _redact(data))
            data = requests[0][0] if len(requests) == 1 else b"".join(r[0] for r in requests)
            try:
                with gevent.Timeout(max(0.0, deadline - self._clock.monotonic()),
                                    _WriteStalled):
                    _send_all(link.sock, data)
            except _WriteStalled:
                self._drop(link, f"sending {what} stalled")
                raise ReplyTimeout(f"{self}: could not send {what} in time") from None
            except OSError as exc:
                self._drop(link, f"socket error: {exc}")
                raise SwitchUnavailable(f"{self}: sending {what} failed: {exc}") from None
        finally:
            link.write_lock.release()
        return [PendingReply(self, link, future, w, deadline, interpret)
                for future, (_, w, interpret) in zip(futures, requests, strict=True)]

    def _command_on(self, link: _Link, data: bytes, deadline: float) -> str:
        what = _redact(data)
        reply = self._submit(link, data, what, deadline,
                             _expect(CommandReply, str(self))).result()
        return commands.check_reply(reply.text, what)

    def submit(self, data: bytes, timeout: float | None = None) -> PendingReply[Reply]:
        """Send raw command bytes (see commands.py) without waiting: the reply comes
        through the returned PendingReply. Replies are matched in order."""
        deadline = self._clock.monotonic() + (timeout or self._command_timeout)
        return self._submit(self._current(), data, _redact(data), deadline, lambda r: r)

    def request(self, data: bytes, timeout: float | None = None) -> Reply:
        """Send raw command bytes and wait for the reply (not interpreted)."""
        return self.submit(data, timeout).result()

    def api_async(self, command: str, timeout: float | None = None) -> PendingReply[str]:
        """Start `api <command>`; result() gives its output or raises CommandFailed."""
        deadline = self._clock.monotonic() + (timeout or self._command_timeout)
        check = _expect(ApiResponse, str(self))

        def interpret(reply: Reply) -> str:
            return commands.check_reply(check(reply).body, command)

        return self._submit(self._current(), commands.api(command), command, deadline,
                            interpret)

    def api_many(self, api_commands: Sequence[str],
                 timeout: float | None = None) -> list[PendingReply[str]]:
        """Start several `api` commands with one write (one syscall, one lock); FreeSWITCH
        runs them in order. Each result() gives its output or raises CommandFailed."""
        deadline = self._clock.monotonic() + (timeout or self._command_timeout)
        check = _expect(ApiResponse, str(self))

        def interpreter(command: str) -> Callable[[Reply], str]:
            return lambda reply: commands.check_reply(check(reply).body, command)

        return self._submit_all(
            self._current(), [(commands.api(c), c, interpreter(c)) for c in api_commands],
            deadline)

    def api(self, command: str, timeout: float | None = None) -> str:
        """Run `api <command>` and return its output; -ERR/-USAGE raise CommandFailed
        (NoSuchChannel for a gone channel)."""
        return self.api_async(command, timeout).result()

    def bgapi(self, command: str, job_uuid: str | None = None,
              timeout: float | None = None) -> str:
        """Start `bgapi <command>`; return its Job-UUID. The result comes later as a
        BACKGROUND_JOB event (to every subscriber: match the Job-UUID)."""
        job = job_uuid or str(uuid.uuid4())
        reply = self._submit(
            self._current(), commands.bgapi(command, job), f"bgapi {command}",
            self._clock.monotonic() + (timeout or self._command_timeout),
            _expect(CommandReply, str(self)),
        ).result()
        commands.check_reply(reply.text, f"bgapi {command}")
        return reply.job_uuid or job

    def command(self, data: bytes, timeout: float | None = None) -> str:
        """Send an ESL command (event, filter, noevents ...) and return its +OK text."""
        return self._command_on(
            self._current(), data, self._clock.monotonic() + (timeout or self._command_timeout)
        )

    def send(self, data: str) -> Reply:
        """greenswitch's send(), with a deadline: `data` without its blank line."""
        return self.request(data.encode("utf-8") + b"\n\n")

    def authenticate(self) -> None:
        """greenswitch API: here connect() authenticates (with a deadline)."""
        raise NotImplementedError("connect() authenticates")
