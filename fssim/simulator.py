"""The simulator facade: owns the ESL server, the legs, the scheduler, the event emitter and
the heartbeat, and exposes calls, waits, load and fault injection to tests and tools.

It is the one place that knows every part: each part is given only the narrow sink it
declares (a leg its `LegSink`, a connection its `Switch`, the API its `ApiSink`, the scheduler
two callables, the load generator a `CallPlacer`), and the Simulator implements them here,
so no part imports this module."""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import gevent
import gevent.event

from fssim import captured
from fssim.api import Api
from fssim.bus import StreamFaults
from fssim.channel import Channel
from fssim.connection import MAX_QUEUE_LEN, Connection
from fssim.emitter import Emitter
from fssim.fault_switches import FaultSwitches
from fssim.faults import WithholdRule
from fssim.load import LoadGenerator, TalkSeconds
from fssim.outbound import DecisionSockets
from fssim.scheduler import Scheduler
from fssim.server import EslServer
from fssim.status import SessionStats, SwitchInfo
from fssim.timers import new_uuid, now_us
from fssim.wire import disconnect_notice

log = logging.getLogger(__name__)

DEFAULT_PASSWORD = "ClueCon"


@dataclass
class CommandLogEntry:
    """A command received on any connection (api, bgapi, event, auth, ...)."""

    time_us: int
    connection: int
    line: str = field(repr=True)


class Simulator(FaultSwitches):
    """A FreeSWITCH stand-in on 127.0.0.1 speaking the Event Socket protocol.

    Call `start()` (or use it as a context manager); `port` is the bound port. Calls enter
    through `place_call()` or `run_load()`; every call's record stays in `calls` (the last
    `history` finished ones when that is set). With `decision_socket` (host, port), settable
    at any time, each new call first asks the rater there (fssim.outbound), as the shipped
    dialplan's `socket` application does, and parks only when it cannot or is let go.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str | None = None, *,
                 heartbeat: float = 20.0, hostname: str = "vm", core_uuid: str | None = None,
                 emit_destroy: bool = True, sched_phase: float | None = None,
                 max_sessions: int = 1000, history: int | None = None,
                 max_queue: int = MAX_QUEUE_LEN,
                 record_writer: Callable[[Channel], None] | None = None,
                 decision_socket: tuple[str, int] | None = None) -> None:
        self.password = password or os.environ.get("RATER_ESL_PASSWORD") or DEFAULT_PASSWORD
        self.heartbeat = heartbeat
        self.info = SwitchInfo(hostname, core_uuid or str(uuidlib.uuid4()), max_sessions)
        self.emit_destroy = emit_destroy
        # how many finished calls and logged commands to remember (None: all; long load runs
        # should bound it)
        self.history = history
        self.calls: dict[str, Channel] = {}
        self.live: dict[str, Channel] = {}
        self.command_log: deque[CommandLogEntry] = deque(maxlen=history)
        self._finished: deque[str] = deque()
        self.server = EslServer(self, host, port, password=self.password, max_queue=max_queue)
        self.stream_faults = StreamFaults()
        self.emitter = Emitter(self.info, self.live, self.server.connections, self.stream_faults)
        self.scheduler = Scheduler(self._hangup_task, self.emitter.task_event, sched_phase)
        self.commands = Api(self.info, self.live, self.scheduler, self.emitter)
        self._withhold: list[WithholdRule] = []
        self._session_ids = itertools.count(1)
        self._callers = itertools.count(1)
        self._idle = gevent.event.Event()
        self._idle.set()
        self._subscribed = gevent.event.Event()
        self._heartbeat: gevent.Greenlet | None = None
        self._observers: dict[str, Callable[[Channel], None]] = {}
        self.sockets = DecisionSockets(self, decision_socket)
        # mod_cdr_pg_csv: called with each leg as it ends, before CHANNEL_HANGUP_COMPLETE
        self.record_writer = record_writer

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def hostname(self) -> str:
        return self.info.hostname

    @property
    def core_uuid(self) -> str:
        return self.info.core_uuid

    @property
    def stats(self) -> SessionStats:
        return self.info.stats

    @property
    def decision_socket(self) -> tuple[str, int] | None:
        """Where new calls ask the rater (the dialplan's `socket host:port`); None: they
        park at once."""
        return self.sockets.address

    @decision_socket.setter
    def decision_socket(self, address: tuple[str, int] | None) -> None:
        self.sockets.address = address

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
        self.sockets.close()
        for channel in list(self.live.values()):
            channel.silence()
        self.scheduler.cancel_all()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def uptime_us(self) -> int:
        return self.info.uptime_us()

    # --- calls ----------------------------------------------------------------------------

    def place_call(self, account: str | None = None, destination: str | None = None, *,
                   direction: str = "outbound", caller: str | None = None,
                   answer_after: float = 0.1, duration: float = 5.0, answer: bool = True,
                   variables: Mapping[str, str] | None = None,
                   unanswered_cause: str = "NO_ANSWER", uuid: str | None = None,
                   observer: Callable[[Channel], None] | None = None,
                   park_timeout: float | None = None, answer_first: bool = False) -> str:
        """A new leg enters the rating context: CHANNEL_CREATE, then CHANNEL_PARK (or first
        the decision socket, when there is one: see the class).

        The dialplan sets `rater_direction`, `accountcode` (when `account` is given) and
        `variables`, then parks. Transferred (uuid_transfer, or the `transfer` application
        on the decision socket) it rings `answer_after` s, is answered and talks `duration`
        s (the caller hangs up, NORMAL_CLEARING); with `answer=False` it rings `duration` s
        and ends with `unanswered_cause`. Left waiting (on the socket or in park), the caller
        gives up after `park_timeout` s (default `duration`; ORIGINATOR_CANCEL).
        `answer_first` answers the leg before it asks (as an IVR would); transferred, it
        talks on. `observer` is called when the leg is done.
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
            sink=self, uuid=uuid or new_uuid(), destination=destination,
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
                sub = conn.subscription
                if sub.listening and (sub.all_events or wanted <= sub.events):
                    return conn
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no listener subscribed to {sorted(wanted)} in {timeout}s")
            self._subscribed.clear()
            self._subscribed.wait(left)

    def emit(self, uuid: str, name: str) -> int:
        """Fire `name` (e.g. CHANNEL_ANSWER) for a call as it is now, whatever its state: for
        tests that need stray, repeated or out-of-order events."""
        return self.emitter.channel_event(self.calls[uuid], name, stray=True)

    def heartbeat_now(self) -> None:
        """Fire a HEARTBEAT now (the periodic one fires every `heartbeat` seconds)."""
        self.emitter.heartbeat()

    def _heartbeat_loop(self) -> None:
        while True:
            gevent.sleep(self.heartbeat)
            self.heartbeat_now()

    # --- LegSink: what a leg asks of the switch ---------------------------------------------

    def leg_event(self, leg: Channel, name: str) -> None:
        if name != "CHANNEL_DESTROY" or self.emit_destroy:
            self.emitter.channel_event(leg, name)

    def leg_asks(self, leg: Channel) -> bool:
        return self.sockets.ask(leg)

    def leg_hung_up(self, leg: Channel) -> None:
        self.scheduler.drop_group(leg.uuid)
        self.sockets.channel_down(leg.uuid)
        if self.record_writer is not None:
            self.record_writer(leg)

    def schedule_hangup(self, runtime: int, uuid: str, cause: str) -> None:
        self.scheduler.schedule_hangup(runtime, uuid, cause)

    def api(self, command: str, arg: str | None) -> str:
        """Run an API command, as `api` on a connection does (also the connections' sink)."""
        return self.commands.execute(command, arg)

    # --- SessionSink: what a decision-socket connection asks of the switch -----------------

    def channel_data_reply(self, leg: Channel, socket_data: str) -> bytes:
        return self.emitter.channel_data_reply(leg, socket_data)

    def live_leg(self, uuid: str) -> Channel | None:
        return self.live.get(uuid)

    def leg_done(self, channel: Channel) -> None:
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

    def _hangup_task(self, uuid: str, cause: str) -> None:
        """A scheduled hangup is due."""
        channel = self.live.get(uuid)
        if channel is not None:
            channel.hangup(cause)

    # --- Switch: what a connection asks of the switch ---------------------------------------

    def command_received(self, connection: int, line: str) -> None:
        if line.lower().startswith("auth "):
            line = "auth <hidden>"
        self.command_log.append(CommandLogEntry(now_us(), connection, line))

    def subscriptions_changed(self) -> None:
        listening = [c.subscription for c in self.server.connections
                     if c.subscription.listening and not c.closed]
        self.emitter.want(any(s.all_events for s in listening),
                         frozenset(n for s in listening for n in s.events))
        self._subscribed.set()

    def background_job(self, job_uuid: str, command: str, arg: str | None,
                       reply: str) -> None:
        self.emitter.background_job(job_uuid, command, arg, reply)

    def reply_withheld(self, command: str) -> bool:
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
            history=self.history,
        )
        return generator.start()

    def shutdown(self, hangup_calls: bool = True) -> None:
        """Stop like FreeSWITCH: (hang up every call with SYSTEM_SHUTDOWN), SHUTDOWN and
        MODULE_UNLOAD events, the disconnect notice `The system is being shut down.`, close."""
        if hangup_calls:
            for channel in list(self.live.values()):
                channel.hangup("SYSTEM_SHUTDOWN")
        self.emitter.fire("SHUTDOWN", dict)
        self.emitter.fire("MODULE_UNLOAD", dict)
        for conn in list(self.server.connections):
            conn.inject(disconnect_notice(captured.DISCONNECT_SHUTDOWN))
            conn.close_after_output()
        self.stop(abort_connections=False)
