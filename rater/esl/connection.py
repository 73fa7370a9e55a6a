"""One FreeSWITCH node's Event Socket client that stays connected (fsock's `fsock`).

`EslConnection` owns at most one `Link` (link.py, fsock's `fsconn`: one socket, its
handshake, reader, replies and deadlines) and makes a new one after each drop:

- one state (`State`) rather than loose flags; `connect()` greets, authenticates and
  subscribes once, within deadlines;
- `run()` keeps the connection up: reconnect with exponential backoff and jitter,
  re-authenticate, re-subscribe, then call `on_connected` (the daemon reconciles there);
- it subscribes to exactly the events asked for, plus HEARTBEAT for liveness, which it
  does not deliver unless asked; filters get a HEARTBEAT filter for the same reason;
- requests (`api`, `api_async`, `api_many`, `bgapi`, `command`) go to the current link
  and fail at once (SwitchUnavailable) while there is none.

`api` runs inline in FreeSWITCH's listener and holds back that connection's events, so a
node gets two of these: one subscribed to events, one for commands (subscribed to
HEARTBEAT only, for liveness).

greenswitch is no longer a base class (its `__init__`, socket, parser and greenlets are
replaced whole); it is kept, by composition, only as the handler registry behind
`register_handle()` (handlers.py), for a connection given no `on_event`.

The password never appears in logs, reprs or exception messages.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

from gevent.event import Event

from rater.backoff import Backoff
from rater.clock import Clock, SystemClock
from rater.errors import SwitchError, SwitchUnavailable
from rater.esl import commands
from rater.esl.dispatch import KeyedDispatcher
from rater.esl.events import ChannelEvent
from rater.esl.handlers import EventHandlers, Handler
from rater.esl.link import Link, PendingReply, expect, open_socket, redact
from rater.esl.names import EventFormat, EventName, Header
from rater.esl.replies import ApiResponse, CommandReply, Reply

log = logging.getLogger(__name__)

_IDLE_CHECK = 60.0  # run() re-checks its state this often while a connection is up


class State(enum.Enum):
    IDLE = "idle"  # created, never connected
    CONNECTING = "connecting"  # TCP connect, then waiting for auth/request
    AUTHENTICATING = "authenticating"
    SUBSCRIBING = "subscribing"
    READY = "ready"
    DISCONNECTED = "disconnected"  # lost, or an attempt failed; run() backs off and retries
    STOPPED = "stopped"  # stop() was called; final


class EslConnection:
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
        self.host = host
        self.port = port
        self._password = password
        self.name = name or f"{host}:{port}"
        self._events = tuple(events)
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
        self._handlers = EventHandlers()
        self._dispatcher: KeyedDispatcher[ChannelEvent] | None = None
        if on_event is None:
            self._dispatcher = KeyedDispatcher(
                self._handlers.run,
                ChannelEvent.ordering_key.fget,  # type: ignore[attr-defined]  # a property's getter
                name=f"{self.name}-events",
            )
            on_event = self._dispatcher.submit
        self._on_event = on_event
        self._state = State.IDLE
        self._ready = Event()  # set exactly while the state is READY (see _set_state)
        self._wakeup = Event()  # set by stop() to cut run()'s backoff short
        self._link: Link | None = None

    def __repr__(self) -> str:
        return f"<EslConnection {self.name} {self._state.value}>"

    __str__ = __repr__

    def __enter__(self) -> EslConnection:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- state --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def connected(self) -> bool:
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
        link: Link | None = None
        try:
            link = self._link = Link(
                open_socket(self.host, self.port, deadline, self, self._clock),
                owner=self, name=self.name, clock=self._clock, on_event=self._deliver,
                on_close=self._closed, liveness=self._liveness)
            link.greet(deadline)
            self._set_state(State.AUTHENTICATING)
            link.authenticate(self._password, deadline)
            self._set_state(State.SUBSCRIBING)
            for data in self._subscribe_commands():
                link.command(data, self._clock.monotonic() + self._command_timeout)
            self._set_state(State.READY)
            log.info("%s: connected and subscribed", self.name)
        except BaseException as exc:
            if link is not None:
                link.close(f"connect failed: {exc}")
            else:
                self._set_state(State.DISCONNECTED)
            raise

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
                    link.close("on_connected failed")
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
                    link.command(commands.exit(), self._clock.monotonic() + timeout)
            link.close("stopped")
            if link.reader is not None:
                link.reader.join(timeout=timeout)
                if not link.reader.dead:
                    link.reader.kill(block=False)
        if self._dispatcher is not None:
            self._dispatcher.close(timeout)

    # --- what the links report ----------------------------------------------------------------

    def _deliver(self, event: ChannelEvent) -> None:
        name = event.name
        wanted = self._wanted
        if not (
            name in wanted
            or EventName.ALL in wanted
            or (name == EventName.CUSTOM and event.subclass in wanted)
        ):
            return  # e.g. the HEARTBEAT we asked for only to watch liveness
        self._on_event(event)

    def _closed(self, link: Link, reason: str) -> None:
        if link is not self._link:
            return
        self._link = None
        if self._state is State.READY:
            log.warning("%s: connection lost: %s", self.name, reason)
        else:
            log.info("%s: connection closed: %s", self.name, reason)
        self._set_state(State.DISCONNECTED)

    # --- requests -----------------------------------------------------------------------------

    def _current(self) -> Link:
        link = self._link
        if link is None or self._state is not State.READY:
            raise SwitchUnavailable(f"{self}: not connected")
        return link

    def _deadline(self, timeout: float | None) -> float:
        return self._clock.monotonic() + (timeout or self._command_timeout)

    def submit(self, data: bytes, timeout: float | None = None) -> PendingReply[Reply]:
        """Send raw command bytes (see commands.py) without waiting: the reply comes
        through the returned PendingReply. Replies are matched in order."""
        deadline = self._deadline(timeout)
        return self._current().submit(data, redact(data), deadline, lambda r: r)

    def request(self, data: bytes, timeout: float | None = None) -> Reply:
        """Send raw command bytes and wait for the reply (not interpreted)."""
        return self.submit(data, timeout).result()

    def api_async(self, command: str, timeout: float | None = None) -> PendingReply[str]:
        """Start `api <command>`; result() gives its output or raises CommandFailed."""
        deadline = self._deadline(timeout)
        check = expect(ApiResponse, str(self))

        def interpret(reply: Reply) -> str:
            return commands.check_reply(check(reply).body, command)

        return self._current().submit(commands.api(command), command, deadline, interpret)

    def api_many(self, api_commands: Sequence[str],
                 timeout: float | None = None) -> list[PendingReply[str]]:
        """Start several `api` commands with one write (one syscall, one lock); FreeSWITCH
        runs them in order. Each result() gives its output or raises CommandFailed."""
        deadline = self._deadline(timeout)
        check = expect(ApiResponse, str(self))

        def interpreter(command: str) -> Callable[[Reply], str]:
            return lambda reply: commands.check_reply(check(reply).body, command)

        return self._current().submit_all(
            [(commands.api(c), c, interpreter(c)) for c in api_commands], deadline)

    def api(self, command: str, timeout: float | None = None) -> str:
        """Run `api <command>` and return its output; -ERR/-USAGE raise CommandFailed
        (NoSuchChannel for a gone channel)."""
        return self.api_async(command, timeout).result()

    def bgapi(self, command: str, job_uuid: str | None = None,
              timeout: float | None = None) -> str:
        """Start `bgapi <command>`; return its Job-UUID. The result comes later as a
        BACKGROUND_JOB event (to every subscriber: match the Job-UUID)."""
        job = job_uuid or str(uuid.uuid4())
        reply = self._current().submit(
            commands.bgapi(command, job), f"bgapi {command}", self._deadline(timeout),
            expect(CommandReply, str(self)),
        ).result()
        commands.check_reply(reply.text, f"bgapi {command}")
        return reply.job_uuid or job

    def command(self, data: bytes, timeout: float | None = None) -> str:
        """Send an ESL command (event, filter, noevents ...) and return its +OK text."""
        return self._current().command(data, self._deadline(timeout))

    def send(self, data: str) -> Reply:
        """greenswitch's send(), with a deadline: `data` without its blank line."""
        return self.request(data.encode("utf-8") + b"\n\n")

    # --- greenswitch-style handlers (with no on_event) -------------------------------------------

    def register_handle(self, name: str, handler: Handler) -> None:
        """Run `handler(event)` for events named `name` (a CUSTOM subclass; '*' for any
        event without handlers of its own). Only for a connection given no `on_event`."""
        self._handlers.register(name, handler)

    def unregister_handle(self, name: str, handler: Handler) -> None:
        self._handlers.unregister(name, handler)
