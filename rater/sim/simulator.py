"""The simulator facade: owns the ESL server, the channels, the scheduler, the heartbeat, the
event sequence, and exposes calls, waits, load and fault injection to tests and tools."""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event

from rater.sim import captured
from rater.sim.api import Api, uptime_text
from rater.sim.bus import Event, StreamFaults, StreamRule, deliver
from rater.sim.channel import CallState, Channel, new_uuid, now_us
from rater.sim.faults import MALFORMED, WithholdRule
from rater.sim.load import LoadGenerator, TalkSeconds
from rater.sim.scheduler import HangupTask, Scheduler
from rater.sim.server import MAX_QUEUE_LEN, Connection, EslServer, disconnect_notice
from rater.sim.templates import TEMPLATES, EventClock

log = logging.getLogger(__name__)

DEFAULT_PASSWORD = "ClueCon"
_BY_ANSWER = ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY")


@dataclass
class SimStats:
    """FreeSWITCH's session counters, as `status` and HEARTBEAT report them."""

    sessions_since_startup: int = 0
    session_peak: int = 0
    sps_last: int = 0
    sps_max: int = 0
    _sps_second: int = 0
    _sps_count: int = 0

    def session_created(self, live: int) -> None:
        self.sessions_since_startup += 1
        self.session_peak = max(self.session_peak, live)
        second = int(time.time())
        if second != self._sps_second:
            self.sps_last = self._sps_count if second == self._sps_second + 1 else 0
            self._sps_second, self._sps_count = second, 0
        self._sps_count += 1
        self.sps_max = max(self.sps_max, self._sps_count)


@dataclass
class CommandLogEntry:
    """A command received on any connection (api, bgapi, event, auth, ...)."""

    time_us: int
    connection: int
    line: str = field(repr=True)


class Simulator:
    """A FreeSWITCH stand-in on 127.0.0.1 speaking the Event Socket protocol.

    Call `start()` (or use it as a context manager); `port` is the bound port. Calls enter
    through `place_call()` or `run_load()`; every call's record stays in `calls` (the last
    `history` finished ones when that is set).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str | None = None, *,
                 heartbeat: float = 20.0, hostname: str = "vm", core_uuid: str | None = None,
                 emit_destroy: bool = True, sched_phase: float | None = None,
                 max_sessions: int = 1000, history: int | None = None,
                 max_queue: int = MAX_QUEUE_LEN,
                 record_writer: Callable[[Channel], None] | None = None) -> None:
        self.password = password or os.environ.get("RATER_ESL_PASSWORD") or DEFAULT_PASSWORD
        self.heartbeat = heartbeat
        self.hostname = hostname
        self.core_uuid = core_uuid or str(uuidlib.uuid4())
        self.emit_destroy = emit_destroy
        self.max_sessions = max_sessions
        self.max_queue = max_queue  # unsent frames per connection before events are lost
        # how many finished calls and logged commands to remember (None: all; long load runs
        # should bound it)
        self.history = history
        self.calls: dict[str, Channel] = {}
        self.live: dict[str, Channel] = {}
        self.command_log: deque[CommandLogEntry] = deque(maxlen=history)
        self._finished: deque[str] = deque()
        self.stats = SimStats()
        self.api = Api(self)
        self.scheduler = Scheduler(self, sched_phase)
        self.server = EslServer(self, host, port)
        self.stream_faults = StreamFaults()
        self._withhold: list[WithholdRule] = []
        self._seq = itertools.count(1)
        self._session_ids = itertools.count(1)
        self._callers = itertools.count(1)
        self._clock = EventClock()
        self._started_us = now_us()
        self._wanted: frozenset[str] = frozenset()
        self._want_all = False
        self._idle = gevent.event.Event()
        self._idle.set()
        self._subscribed = gevent.event.Event()
        self._heartbeat: gevent.Greenlet | None = None
        self._observers: dict[str, Callable[[Channel], None]] = {}
        # mod_cdr_pg_csv: called with each leg as it ends, before CHANNEL_HANGUP_COMPLETE
        self.record_writer = record_writer

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> tuple[str, int]:
        return self.server.host, self.server.port

    def start(self) -> Simulator:
        """Listen (again, on the same port after a stop) and start the heartbeat."""
        self.server.start()
        if self.heartbeat and self._heartbeat is None:
            self._heartbeat = gevent.spawn(self._heartbeat_loop)
        log.info("FreeSWITCH simulator listening on %s:%d", *self.address)
        return self

    def stop(self, abort_connections: bool = True) -> None:
        """Stop listening and drop every connection abruptly; calls keep running."""
        self.server.stop(abort_connections)
        if self._heartbeat is not None:
            self._heartbeat.kill(block=False)
            self._heartbeat = None

    def close(self) -> None:
        """stop(), and silence every call (no more events or timers)."""
        self.stop()
        for channel in list(self.live.values()):
            channel.silence()
        self.scheduler.cancel_all()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def uptime_us(self) -> int:
        return now_us() - self._started_us

    # --- calls ----------------------------------------------------------------------------

    def place_call(self, account: str | None = None, destination: str | None = None, *,
                   direction: str = "outbound", caller: str | None = None,
                   answer_after: float = 0.1, duration: float = 5.0, answer: bool = True,
                   variables: Mapping[str, str] | None = None,
                   unanswered_cause: str = "NO_ANSWER", uuid: str | None = None,
                   observer: Callable[[Channel], None] | None = None,
                   park_timeout: float | None = None, answer_first: bool = False) -> str:
        """A new leg enters the rating context: CHANNEL_CREATE, then CHANNEL_PARK.

        The dialplan sets `rater_direction`, `accountcode` (when `account` is given) and
        `variables`, then parks. On uuid_transfer it rings `answer_after` s, is answered and
        talks `duration` s (the caller hangs up, NORMAL_CLEARING); with `answer=False` it
        rings `duration` s and ends with `unanswered_cause`. Left parked, the caller gives up
        after `park_timeout` s (default `duration`; ORIGINATOR_CANCEL). `answer_first`
        answers the leg before it parks (as an IVR would); transferred, it talks on.
        `observer` is called when the leg is done.
        Returns the uuid.
        """
        if not destination:
            raise ValueError("place_call needs a destination (the dialed number or the DID)")
        if direction not in ("outbound", "inbound"):
            raise ValueError(f"direction must be outbound or inbound, not {direction!r}")
        dialplan_vars = {"rater_direction": direction}
        if account:
            dialplan_vars["accountcode"] = account
        dialplan_vars.update(variables or {})
        channel = Channel(
            sim=self, uuid=uuid or new_uuid(), destination=destination,
            account=account, direction=direction,
            caller=caller or f"1555{next(self._callers) % 10_000_000:07d}",
            answer_after=answer_after, duration=duration, answer=answer,
            unanswered_cause=unanswered_cause, session_id=next(self._session_ids),
            dialplan_vars=dialplan_vars,
            park_timeout=duration if park_timeout is None else park_timeout,
            answer_first=answer_first,
        )
        if channel.uuid in self.calls:
            raise ValueError(f"uuid {channel.uuid} already used")
        self.calls[channel.uuid] = channel
        self.live[channel.uuid] = channel
        if observer is not None:
            self._observers[channel.uuid] = observer
        self._idle.clear()
        self.stats.session_created(len(self.live))
        channel.start()
        return channel.uuid

    def call(self, uuid: str) -> Channel:
        """The record of a call placed on this simulator (KeyError when unknown)."""
        return self.calls[uuid]

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> bool:
        """The caller hangs up now (BYE when answered, CANCEL before)."""
        channel = self.live.get(uuid)
        if channel is None:
            return False
        if not channel.answered and cause == "NORMAL_CLEARING":
            cause = "ORIGINATOR_CANCEL"
        return channel.hangup(cause, by="caller")

    def wait_for_hangup(self, uuid: str, timeout: float) -> Channel:
        """Wait until the call's CHANNEL_HANGUP_COMPLETE went out; TimeoutError otherwise."""
        channel = self.calls[uuid]
        if not channel.done.wait(timeout):
            raise TimeoutError(f"call {uuid} still {channel.state} after {timeout}s")
        return channel

    def wait_all_done(self, timeout: float) -> None:
        """Wait until no channel is left; TimeoutError otherwise."""
        if not self._idle.wait(timeout):
            raise TimeoutError(f"{len(self.live)} calls still up after {timeout}s")

    def wait_for_listener(self, events: Iterable[str] = (), timeout: float = 5.0) -> Connection:
        """Wait until an authenticated connection is subscribed to all of `events`."""
        wanted = set(events)
        deadline = time.monotonic() + timeout
        while True:
            for conn in self.server.connections:
                if conn.listening and (conn.all_events or wanted <= conn.events):
                    return conn
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no listener subscribed to {sorted(wanted)} in {timeout}s")
            self._subscribed.clear()
            self._subscribed.wait(left)

    def channel_data(self, channel: Channel) -> str:
        """uuid_dump: the channel's headers as a plain CHANNEL_DATA event body."""
        key = {CallState.PARKED: "CHANNEL_PARK", CallState.RINGING: "CHANNEL_UNPARK"}.get(
            channel.state, "CHANNEL_ANSWER")
        ctx = self._channel_values(channel, key, False)
        ctx.update(self._event_fields(next(self._seq)))
        text = TEMPLATES[key].render_plain(ctx).decode()
        return "Event-Name: CHANNEL_DATA\n" + text.split("\n", 1)[1]

    # --- event firing (used by channels, the API and the scheduler) ------------------------

    def _event_fields(self, seq: int) -> dict[str, str]:
        local, gmt, stamp = self._clock.fields(now_us())
        return {"core_uuid": self.core_uuid, "hostname": self.hostname, "date_local": local,
                "date_gmt": gmt, "timestamp": stamp, "seq": str(seq)}

    def _fire(self, key: str, values: Callable[[], dict[str, Any]], *,
              uuid: str | None = None, body: str | None = None) -> int:
        seq = next(self._seq)
        template = TEMPLATES[key]
        if not (self._want_all or template.event_name in self._wanted
                or self.stream_faults.held):
            return seq
        ctx = values()
        ctx.update(self._event_fields(seq))
        deliver(Event(template, ctx, body, uuid), self.server.connections, self.stream_faults)
        return seq

    def emit_channel_event(self, channel: Channel, name: str, *, stray: bool = False) -> int:
        """Fire one of the channel's events (the template follows its answered state)."""
        key = name
        if name in _BY_ANSWER:
            key = f"{name}.{'answered' if channel.answered_us else 'unanswered'}"
        if key not in TEMPLATES:
            raise ValueError(f"the simulator has no template for {name}")
        seq = self._fire(key, lambda: self._channel_values(channel, key, stray),
                         uuid=channel.uuid)
        channel.events.append((name, seq))
        return seq

    @staticmethod
    def _channel_values(channel: Channel, key: str, timing: bool) -> dict[str, Any]:
        ctx = channel.context_values(timing=timing)
        # the SIP variables of the template's own capture when the far end hung up
        sip_vars = TEMPLATES[key].captured_values.get("sip_hangup_vars", ())
        ctx["sip_hangup_vars"] = tuple(sip_vars) if ctx["remote_hangup"] else ()
        return ctx

    def emit(self, uuid: str, name: str) -> int:
        """Fire `name` (e.g. CHANNEL_ANSWER) for a call as it is now, whatever its state: for
        tests that need stray, repeated or out-of-order events."""
        return self.emit_channel_event(self.calls[uuid], name, stray=True)

    def emit_api_event(self, command: str, arg: str | None) -> None:
        self._fire("API", lambda: {
            "api_command": command,
            "api_arg": [("API-Command-Argument", arg)] if arg else [],
        })

    def emit_background_job(self, job_uuid: str, command: str, arg: str | None,
                            reply: str) -> None:
        self._fire("BACKGROUND_JOB", lambda: {
            "job_uuid": job_uuid, "job_command": command,
            "job_arg": [("Job-Command-Arg", arg)] if arg else [],
        }, body=reply)

    def emit_task_event(self, name: str, task: HangupTask) -> None:
        self._fire(name, lambda: {"task_id": str(task.task_id), "task_group": task.group,
                                  "task_runtime": str(task.runtime)})

    def heartbeat_now(self) -> None:
        """Fire a HEARTBEAT now (the periodic one fires every `heartbeat` seconds)."""
        self._fire("HEARTBEAT", self._heartbeat_values)

    def _heartbeat_values(self) -> dict[str, Any]:
        up = self.uptime_us()
        return {
            "up_time": uptime_text(up), "uptime_msec": str(up // 1000),
            "session_count": str(len(self.live)),
            "session_since_startup": str(self.stats.sessions_since_startup),
            "session_peak_max": str(self.stats.session_peak),
            "session_peak_fivemin": str(self.stats.session_peak),
            "sps_last": str(self.stats.sps_last), "sps_max": str(self.stats.sps_max),
            "sps_fivemin": str(self.stats.sps_max), "idle_cpu": "95.000000",
        }

    def _heartbeat_loop(self) -> None:
        while True:
            gevent.sleep(self.heartbeat)
            self.heartbeat_now()

    def sample_event_frame(self, fmt: str) -> bytes:
        """A complete HEARTBEAT frame (not fired), e.g. to cut in half."""
        ctx = {**self._heartbeat_values(), **self._event_fields(next(self._seq))}
        return Event(TEMPLATES["HEARTBEAT"], ctx).frame(fmt)

    # --- bookkeeping (used by channels and connections) -------------------------------------

    def channel_done(self, channel: Channel) -> None:
        self.live.pop(channel.uuid, None)
        if not self.live:
            self._idle.set()
        if self.history is not None:
            self._finished.append(channel.uuid)
            while len(self._finished) > self.history:
                self.calls.pop(self._finished.popleft(), None)
        observer = self._observers.pop(channel.uuid, None)
        if observer is not None:
            try:
                observer(channel)
            except Exception:
                log.exception("call observer failed")

    def log_command(self, connection: int, line: str) -> None:
        if line.lower().startswith("auth "):
            line = "auth <hidden>"
        self.command_log.append(CommandLogEntry(now_us(), connection, line))

    def subscriptions_changed(self) -> None:
        listening = [c for c in self.server.connections if c.listening and not c.closed]
        self._want_all = any(c.all_events for c in listening)
        self._wanted = frozenset(n for c in listening for n in c.events)
        self._subscribed.set()

    def take_withheld(self, command: str) -> bool:
        """True when the reply to `command` must not be sent (a withhold fault)."""
        return any(rule.take(command) for rule in self._withhold)

    # --- load -------------------------------------------------------------------------------

    def run_load(self, cps: float, count: int | None = None, duration: float | None = None, *,
                 destinations: Sequence[str] = ("15557650000",),
                 accounts: Sequence[str | None] = (None,),
                 talk_seconds: TalkSeconds = (1.0, 5.0), answer_ratio: float = 1.0,
                 answer_after: tuple[float, float] = (0.05, 0.3),
                 direction: str = "outbound", seed: int = 0,
                 record: bool = False) -> LoadGenerator:
        """Start a load generator greenlet placing `cps` calls per second (see LoadGenerator)."""
        generator = LoadGenerator(
            self, cps, count=count, duration=duration, destinations=destinations,
            accounts=accounts, talk_seconds=talk_seconds, answer_ratio=answer_ratio,
            answer_after=answer_after, direction=direction, seed=seed, record=record,
        )
        return generator.start()

    # --- faults -----------------------------------------------------------------------------

    def drop_connections(self, mid_frame: bool = False, reset: bool = False) -> int:
        """Close every client socket abruptly (no disconnect notice); with `mid_frame` send
        half of a frame first, with `reset` send a TCP RST. Returns how many were dropped."""
        conns = list(self.server.connections)
        for conn in conns:
            conn.abort(mid_frame=mid_frame, reset=reset)
        return len(conns)

    def stall(self, seconds: float) -> None:
        """Stop sending anything on every connection for `seconds` (sockets stay open;
        commands are still read and their replies queue up)."""
        for conn in self.server.connections:
            conn.stall(seconds)

    def resume(self) -> None:
        """End a stall now."""
        for conn in self.server.connections:
            conn.resume()

    def inject(self, data: bytes) -> None:
        """Write raw bytes into every connection's output stream, in order with the rest."""
        for conn in self.server.connections:
            conn.inject(data)

    def send_malformed(self, kind: str = "garbage") -> None:
        """Inject one of `faults.MALFORMED` (garbage, no-colon, bad-length, negative-length,
        huge-length, short-body, bad-event-body, bad-json, unknown-type) or `truncated`
        (the first half of a real event frame, the stream then goes on)."""
        for conn in self.server.connections:
            data = (self.sample_event_frame(conn.format)[:300] if kind == "truncated"
                    else MALFORMED[kind])
            conn.inject(data)

    def duplicate_events(self, count: int | None = 1, names: Iterable[str] | None = None,
                         uuid: str | None = None) -> StreamRule:
        """Deliver the next `count` matching events twice (same Event-Sequence)."""
        return self.stream_faults.add("duplicate", names, uuid, count)

    def lose_events(self, count: int | None = 1, names: Iterable[str] | None = None,
                    uuid: str | None = None) -> StreamRule:
        """Never deliver the next `count` matching events."""
        return self.stream_faults.add("lose", names, uuid, count)

    def hold_events(self, names: Iterable[str], uuid: str | None = None,
                    release_after: str | None = None, count: int | None = None) -> StreamRule:
        """Hold back matching events; they go out (in their order) right after the event
        named `release_after` for the same call, or at `release_held()`. E.g. hold
        CHANNEL_ANSWER until CHANNEL_HANGUP_COMPLETE to deliver them out of order."""
        return self.stream_faults.add("hold", names, uuid, count, release_after)

    def release_held(self) -> int:
        """Deliver every held event now; returns how many."""
        released = self.stream_faults.release()
        for event, targets in released:
            for conn in targets:
                conn.send_event(event)
        return len(released)

    def clear_faults(self) -> None:
        """Forget event-stream and withhold rules (held events stay held)."""
        self.stream_faults.clear()
        self._withhold.clear()

    def withhold_replies(self, count: int | None = 1, command: str | None = None) -> WithholdRule:
        """Run the next `count` api/bgapi commands starting with `command` (e.g.
        "uuid_transfer") but never send their reply."""
        rule = WithholdRule(command, count)
        self._withhold.append(rule)
        return rule

    def shutdown(self, hangup_calls: bool = True) -> None:
        """Stop like FreeSWITCH: (hang up every call with SYSTEM_SHUTDOWN), SHUTDOWN and
        MODULE_UNLOAD events, the disconnect notice `The system is being shut down.`, close."""
        if hangup_calls:
            for channel in list(self.live.values()):
                channel.hangup("SYSTEM_SHUTDOWN")
        self._fire("SHUTDOWN", dict)
        self._fire("MODULE_UNLOAD", dict)
        for conn in list(self.server.connections):
            conn.inject(disconnect_notice(captured.DISCONNECT_SHUTDOWN))
            conn.close_after_output()
        self.stop(abort_connections=False)
