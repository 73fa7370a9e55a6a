"""Runs what the leg state machine decides: rating (snapshot + ledger) and switch commands.

`handle(uuid, item)` is called by the keyed dispatcher, one item at a time per uuid, so a
leg's events are handled strictly in order while different legs run concurrently. Items are
switch events (CHANNEL_PARK, CHANNEL_ANSWER, CHANNEL_HANGUP_COMPLETE) or the leg's own
events (a timer firing, adoption after a restart).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping

import redis

from rater.calls import leg as L
from rater.calls.commits import Commits
from rater.calls.items import (
    AdoptLeg,
    AskedCall,
    CutOff,
    FindRecordDue,
    Readmit,
    SwitchControl,
    SwitchEvent,
)
from rater.calls.leg_switch import LegSwitch
from rater.calls.registry import LegRegistry, LiveLeg
from rater.calls.switch_records import NoSwitchRecords, SwitchRecords
from rater.clock import Clock, SystemClock
from rater.config import Config, hangup_cause
from rater.errors import LedgerError
from rater.esl import commands
from rater.ledger.client import Ledger
from rater.ledger.connections import ReplyLost
from rater.metrics import Metrics
from rater.rating.chain import Refusal, resolve_leg
from rater.rating.snapshot import Snapshot
from rater.reasons import LegRefusal, Reason

log = logging.getLogger(__name__)

# Hangup cause when the rater ends a call at the end of its paid time.
CUT_OFF_CAUSE = "ALLOTTED_TIMEOUT"
# A leg that ended unseen looks for the switch's record of it this often.
RECORD_RETRY = 5.0
# After an adoption starts, hangups of legs this process does not know yet are kept this
# long: adoption may take up such a leg after its hangup went by.
ADOPTION_WINDOW = 60.0


# Timer events carry no data: one instance each serves every leg.
_CUT_OFF = CutOff()
_RESERVE_DUE = L.ReserveDue()
_FIND_RECORD_DUE = FindRecordDue()


class CallHandler:
    """Bridges the leg state machine, the ledger and the switch."""

    def __init__(
        self,
        cfg: Config,
        ledger: Ledger,
        snapshot: Callable[[], Snapshot | None],
        switches: Mapping[str, SwitchControl],
        submit: Callable[[str, object], None],
        metrics: Metrics,
        clock: Clock | None = None,
        records: SwitchRecords | None = None,
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.snapshot = snapshot
        self.switch = LegSwitch(switches)
        self.submit = submit
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.records = records or NoSwitchRecords()
        self.legs = LegRegistry(cfg.rating.debit_interval, cfg.rating.reserve_ahead)
        self.accepting = True
        self.commits = Commits(ledger, metrics, self.clock, self._recreate)
        self._unclaimed: OrderedDict[str, tuple[float, L.HungUp]] = OrderedDict()
        self._keep_unclaimed_until = 0.0
        # With the decision socket, a call's hangup comes on another connection than its
        # question and could (in theory) be handled first: such hangups are always kept.
        self.keep_unclaimed = False

    def adoption_started(self) -> None:
        """Keep hangups of unknown legs for a while: adoption may take them up next."""
        self._keep_unclaimed_until = self.clock.monotonic() + ADOPTION_WINDOW

    # --- entry point (per-uuid ordered) ---------------------------------------------------

    def handle(self, uuid: str, item: object) -> None:
        live = self.legs.get(uuid)
        events: list[L.Event]
        if isinstance(item, SwitchEvent):
            event = self._leg_event(uuid, live, item)
            if event is None:
                return
            live = self.legs.get(uuid)
            events = [event]
        elif isinstance(item, AskedCall):
            self._asked(uuid, live, item)
            return
        elif isinstance(item, AdoptLeg):
            if live is not None:
                return  # this process already follows it
            live, events = self._adopt(uuid, item)
        elif live is None or live.leg.done:
            return
        elif isinstance(item, CutOff):
            self._cut_off(uuid, live)
            return
        elif isinstance(item, FindRecordDue):
            if live.leg.state is not L.LegState.ENDED_UNSEEN:
                return
            found = self._find_record(uuid, live)
            if found is None:
                return
            events = [found]
        elif isinstance(item, Readmit):
            if live.admit_failed and live.leg.state in (L.LegState.ADMITTED,
                                                        L.LegState.TALKING):
                self._admit(uuid, live, live.leg.max_seconds, live.leg.answered_usec)
            elif live.net_behind and live.leg.state is L.LegState.TALKING:
                self._arm_net(uuid, live, live.leg.net_at)
            return
        else:
            events = [item]  # type: ignore[list-item]
        if live is None:
            return
        self._run(uuid, live, events)

    def _leg_event(self, uuid: str, live: LiveLeg | None, ev: SwitchEvent) -> L.Event | None:
        if ev.name == "CHANNEL_PARK":
            if live is None:
                if not ev.rated or not self.accepting:
                    return None
                self._take_up(uuid, ev)
            return _parked(ev)
        if live is None:
            if ev.name == "CHANNEL_HANGUP_COMPLETE" and ev.node and self._keeping_unclaimed():
                self._unclaimed[uuid] = (self.clock.monotonic(), _hung_up(ev))
            return None
        if ev.name == "CHANNEL_ANSWER":
            return L.Answered(ev.answered_usec or int(self.clock.now() * 1_000_000))
        if ev.name == "CHANNEL_HANGUP_COMPLETE":
            return _hung_up(ev)
        return None

    def _asked(self, uuid: str, live: LiveLeg | None, item: AskedCall) -> None:
        """A call asking on the decision socket: decided as a parked one, the answer sent
        on its connection. One this process cannot take (already known, not rated, not
        accepting, or given up by the socket meanwhile) is released to its dialplan."""
        ev, control = item.event, item.control
        if live is not None or not ev.rated or not self.accepting or not control.open:
            control.release()
            return
        live = self._take_up(uuid, ev)
        live.asking = control
        events: list[L.Event] = [_parked(ev)]
        seen = self._unclaimed.pop(uuid, None)
        if seen is not None:
            events.append(seen[1])  # its hangup was handled before its question
        try:
            self._run(uuid, live, events)
        finally:
            live.asking = None
            if control.open:  # nothing was sent on it: let the dialplan go on (and park)
                control.release()

    def _take_up(self, uuid: str, ev: SwitchEvent) -> LiveLeg:
        """A new leg for a call asking to be decided (parked, or on the decision socket)."""
        live = self.legs.create(uuid, ev.node, self.clock.monotonic())
        live.parked_at = live.created_at
        self.metrics.live_legs.set(len(self.legs))
        return live

    def _keeping_unclaimed(self) -> bool:
        now = self.clock.monotonic()
        unclaimed = self._unclaimed
        while unclaimed:  # oldest first: drop what no adoption claimed in time
            first = next(iter(unclaimed.values()))
            if now - first[0] <= ADOPTION_WINDOW:
                break
            unclaimed.popitem(last=False)
        return self.keep_unclaimed or now < self._keep_unclaimed_until

    def _adopt(self, uuid: str, a: AdoptLeg) -> tuple[LiveLeg, list[L.Event]]:
        live = self.legs.create(uuid, a.node, self.clock.monotonic())
        live.tag, live.keys = a.tag, a.keys
        self.metrics.live_legs.set(len(self.legs))
        events: list[L.Event] = [a.adopted]
        seen = self._unclaimed.pop(uuid, None)
        if seen is not None:
            events.append(seen[1])  # its hangup went by before adoption took it up
        elif not a.on_switch:
            events.append(L.Vanished())
        return live, events

    def _run(self, uuid: str, live: LiveLeg, first: Iterable[L.Event]) -> None:
        pending: deque[L.Event] = deque(first)
        while pending:
            for action in live.leg.handle(pending.popleft()):
                follow = self._do(uuid, live, action)
                if follow is not None:
                    pending.append(follow)
        if live.leg.done:
            self.legs.drop(uuid)
            self.metrics.live_legs.set(len(self.legs))

    # --- actions ----------------------------------------------------------------------------

    def _do(self, uuid: str, live: LiveLeg, action: L.Action) -> L.Event | None:
        match action:
            case L.Authorize():
                return self._authorize(uuid, live, action)
            case L.Refuse():
                self._refuse(uuid, live, action.reason)
            case L.Admit():
                self._admit(uuid, live, action.max_seconds, action.answered_usec)
            case L.Reserve():
                return self._reserve(live, action)
            case L.ScheduleReserve():
                self._reserve_timer(uuid, live, self._until(live, action.at_seconds),
                                    _RESERVE_DUE)
            case L.RetryReserve():
                self._reserve_timer(uuid, live, action.delay, _RESERVE_DUE)
            case L.ArmNet():
                self._arm_net(uuid, live, action.at_seconds)
            case L.HangupAt():
                delay = None if action.at_seconds is None else self._until(live, action.at_seconds)
                self.legs.set_hangup_timer(live, delay, self.submit, uuid, _CUT_OFF)
            case L.CancelTimers():
                self.legs.cancel_timers(live)
            case L.FindRecord():
                live.ended_unseen_at = self.clock.monotonic()
                return self._find_record(uuid, live)
            case L.Commit():
                self.commits.commit(uuid, live, action)
        return None

    def _authorize(self, uuid: str, live: LiveLeg, a: L.Authorize) -> L.Event:
        snap = self.snapshot()
        if snap is None:
            log.error("call %s: no rating snapshot loaded yet", uuid)
            return L.AuthDecided(False, reason=Reason.INTERNAL_ERROR)
        try:
            plan = resolve_leg(snap, a.account, a.direction, a.destination, self.clock.now())
        except ValueError as exc:
            log.warning("call %s: cannot rate: %s", uuid, exc)
            return L.AuthDecided(False, reason=Reason.INTERNAL_ERROR)
        if isinstance(plan, Refusal):
            log.info("call %s: refused %s (%s)", uuid, plan.reason, plan.detail)
            return L.AuthDecided(False, reason=plan.reason)
        if not commands.transferable(a.destination):
            # a rate matched, but the switch command that transfers the call cannot carry
            # this number (quotes, separators, control characters): nowhere to route it
            log.info("call %s: refused no_rate (destination %r cannot be transferred)", uuid,
                     a.destination)
            return L.AuthDecided(False, reason=Reason.NO_RATE)
        live.tag = plan.tag
        live.account = plan.account
        live.destination = a.destination
        live.direction, live.caller = a.direction, a.caller
        live.keys = self.ledger.leg_keys(uuid, plan)
        try:
            auth = self.ledger.authorize(
                uuid, plan, cap_seconds=self.cfg.rating.max_call_seconds, caller=a.caller,
                node=live.node, created_usec=live.leg.created_usec,
            )
        except ReplyLost as exc:  # sent, never answered: Redis may have run it
            self.metrics.redis_errors.inc()
            log.error("call %s: authorize failed: %s (refused; the authorization is withdrawn)",
                      uuid, exc)
            return L.AuthDecided(False, reason=Reason.INTERNAL_ERROR, may_be_written=True)
        except (redis.RedisError, LedgerError) as exc:  # never ran, or failed before writing
            self.metrics.redis_errors.inc()
            log.error("call %s: authorize failed: %s", uuid, exc)
            return L.AuthDecided(False, reason=Reason.INTERNAL_ERROR)
        if not auth.allowed:
            log.info("call %s: refused %s at account %s", uuid, auth.reason, auth.account)
        return L.AuthDecided(auth.allowed, auth.max_seconds, auth.reason)

    def _refuse(self, uuid: str, live: LiveLeg, reason: str) -> None:
        self.metrics.calls_refused.labels(reason).inc()
        self.switch.call(live, "hangup", uuid, hangup_cause(self.cfg, reason),
                          decision=True)
        self._observe_decision(live)

    def _admit(self, uuid: str, live: LiveLeg, max_seconds: int, answered_usec: int) -> None:
        if not live.admit_failed:
            self.metrics.calls_authorized.inc()
        variables = {"rater_max_seconds": str(max_seconds), "rater_account": live.account}
        net = max_seconds if self.cfg.rating.safety_net == "authorized" else live.leg.first_net()
        # A switch that did not answer keeps the call parked: the channel sync sends the
        # admit again (Readmit) once it sees the channel still waiting in park.
        live.admit_failed = not self.switch.call(
            live, "admit", uuid, net, live.destination,
            self.cfg.rating.transfer_context, variables, answered_usec, decision=True)
        self._observe_decision(live)

    def _reserve(self, live: LiveLeg, a: L.Reserve) -> L.Event:
        if a.seq > 1 and not self.switch.channel_exists(live):
            # the hangup was lost: never extend a call the switch no longer has
            log.warning("call %s: reservation %d due but the channel is gone", live.leg.uuid,
                        a.seq)
            return L.Vanished()
        try:
            res = self.ledger.reserve(live.keys, a.seq, a.target_seconds, live.leg.answered_usec)
            if res.reason == LegRefusal.UNKNOWN_LEG and self._recreate(live.leg.uuid, live):
                res = self.ledger.reserve(live.keys, a.seq, a.target_seconds,
                                          live.leg.answered_usec)
        except (redis.RedisError, LedgerError) as exc:
            self.metrics.redis_errors.inc()
            self.metrics.reservations.labels("error").inc()
            log.warning("call %s: reservation %d failed: %s", live.leg.uuid, a.seq, exc)
            return L.Reserved("error", live.leg.granted)
        self.metrics.reservations.labels(res.status).inc()
        return L.Reserved(res.status, res.granted_seconds)

    def _recreate(self, uuid: str, live: LiveLeg) -> bool:
        """Redis lost a leg this process authorized (a failover, a machine crash with its
        last second of writes): authorize it again from the snapshot, so that it can be
        reserved for and charged. False (and counted) when it cannot be: the call then
        goes unbilled, and the log line keeps what is needed to bill it by hand."""
        snap = self.snapshot()
        plan = None if snap is None or not live.account else resolve_leg(
            snap, live.account, live.direction, live.destination, self.clock.now())
        if plan is not None and not isinstance(plan, Refusal):
            auth = self.ledger.authorize(
                uuid, plan, cap_seconds=self.cfg.rating.max_call_seconds, caller=live.caller,
                node=live.node, created_usec=live.leg.created_usec)
            if auth.allowed:
                live.keys = self.ledger.leg_keys(uuid, plan)
                log.warning("call %s: Redis had lost the leg; authorized it again", uuid)
                return True
        self.metrics.unbilled_legs.inc()
        log.error("call %s: Redis lost the leg and it cannot be authorized again: it goes "
                  "unbilled (account %s, destination %s, answered at %d µs, %d s reserved)",
                  uuid, live.account or "?", live.destination or "?", live.leg.answered_usec,
                  live.leg.granted)
        return False

    def _arm_net(self, uuid: str, live: LiveLeg, at_seconds: int) -> None:
        """Move the switch's safety net to the end of what is reserved, +1 s: the switch
        schedules in whole epoch seconds, and the daemon's own cut-off (0.5 s before the
        paid end) must come first. So with the daemon gone a call ends within about 2 s
        after its last reserved chunk (README: What is guaranteed)."""
        if self.cfg.rating.safety_net != "reserved":
            return
        seconds = math.ceil(self._until(live, at_seconds)) + 1
        live.net_behind = not self.switch.call(live, "arm_net", uuid, max(1, seconds))

    def _reserve_timer(self, uuid: str, live: LiveLeg, delay: float, item: object) -> None:
        self.legs.set_reserve_timer(live, delay, self.submit, uuid, item)

    def _cut_off(self, uuid: str, live: LiveLeg) -> None:
        log.info("call %s: paid time over after %ss, hanging up", uuid, live.leg.granted)
        self.metrics.calls_cut_off.inc()
        self.switch.call(live, "hangup", uuid, CUT_OFF_CAUSE)

    def _find_record(self, uuid: str, live: LiveLeg) -> L.Event | None:
        """The switch's record of a leg that ended unseen, looked for until the wait is over."""
        record = self.records.find(uuid)
        if record is not None:
            log.info("call %s: ended unseen; settled from the switch's record", uuid)
            return L.RecordFound(record.answered_usec, record.hangup_usec, record.billmsec,
                                 record.cause, record.created_usec)
        waited = self.clock.monotonic() - live.ended_unseen_at
        left = self.cfg.switch_records.wait_seconds - waited
        if left <= 0:
            log.warning("call %s: ended unseen and no switch record came in %.0fs: "
                        "charged as reserved", uuid, waited)
            return L.NoRecord()
        self._reserve_timer(uuid, live, min(RECORD_RETRY, left), _FIND_RECORD_DUE)
        return None

    # --- helpers ----------------------------------------------------------------------------

    def _until(self, live: LiveLeg, at_seconds: float) -> float:
        """Seconds from now until the call reaches `at_seconds` after its answer."""
        answered = live.leg.answered_usec / 1_000_000
        return answered + at_seconds - self.clock.now()

    def _observe_decision(self, live: LiveLeg) -> None:
        if live.parked_at:
            self.metrics.decision_seconds.observe(self.clock.monotonic() - live.parked_at)
            live.parked_at = 0.0


def _parked(ev: SwitchEvent) -> L.Parked:
    return L.Parked(ev.account, ev.direction, ev.destination, ev.caller, ev.created_usec,
                    ev.answered_usec)


def _hung_up(ev: SwitchEvent) -> L.HungUp:
    return L.HungUp(ev.answered_usec, ev.hangup_usec, ev.billmsec, ev.hangup_cause,
                    ev.created_usec)
