"""One rated leg's state machine: `Leg.handle(event) -> actions`. No I/O.

The call handler runs the actions (Redis, FreeSWITCH) and feeds their outcomes back as
events, all in the leg's own ordered queue, so a leg sees one event at a time and in order.
Duplicate and out-of-order events change nothing they should not: every transition checks
the state it comes from.

    NEW --Parked--> AUTHORIZING --AuthDecided(allowed)--> ADMITTED --Answered--> TALKING
                         |                                    |                    |
                  AuthDecided(refused) -> REFUSED        HungUp (release)     HungUp (commit)
                                                              v                    v
                                                           FINISHED <-----------+
                                                              ^
    ADMITTED or TALKING --Vanished--> ENDED_UNSEEN --RecordFound | NoRecord | HungUp--+

A refusal because Redis did not answer withdraws the authorization (a Commit settled
`withdrawn`: no CDR), in case Redis wrote it and only its reply was lost.

A leg whose channel ended unseen (its hangup was lost, or happened while the daemon was
down) waits in ENDED_UNSEEN for FreeSWITCH's own record of the call (its real answer and
hangup times); with none in time it is charged what was reserved.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rater.rating.tariff import billed_seconds_from_msec, billed_seconds_from_usec
from rater.reasons import Reason, ReservationStatus, SettlementKind


class LegState(enum.Enum):
    NEW = "new"
    AUTHORIZING = "authorizing"
    REFUSED = "refused"
    ADMITTED = "admitted"
    TALKING = "talking"
    ENDED_UNSEEN = "ended_unseen"
    FINISHED = "finished"


# --- events -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Parked:
    account: str | None
    direction: str
    destination: str
    caller: str
    created_usec: int
    answered_usec: int = 0  # a channel answered before it parked (an IVR, say)


@dataclass(frozen=True, slots=True)
class AuthDecided:
    allowed: bool
    max_seconds: int = 0
    reason: str | None = None
    # Refused because Redis did not answer: the authorization may have been written all
    # the same (the reply was lost), so it is withdrawn.
    may_be_written: bool = False


@dataclass(frozen=True, slots=True)
class Answered:
    answered_usec: int


@dataclass(frozen=True, slots=True)
class ReserveDue:
    """The timer: time to reserve the next chunk."""


@dataclass(frozen=True, slots=True)
class Reserved:
    status: str          # ok | short | refused | error
    granted_seconds: int


@dataclass(frozen=True, slots=True)
class HungUp:
    answered_usec: int
    hangup_usec: int
    billmsec: int | None
    cause: str
    created_usec: int = 0


@dataclass(frozen=True, slots=True)
class Adopted:
    """The daemon (re)started and found this leg live in Redis and on the switch."""

    answered_usec: int
    max_seconds: int
    granted_seconds: int
    next_seq: int
    created_usec: int = 0


@dataclass(frozen=True, slots=True)
class Vanished:
    """The leg is live here but its channel is gone from the switch: it ended while we
    were not listening (or its hangup event was lost)."""


@dataclass(frozen=True, slots=True)
class RecordFound:
    """FreeSWITCH's own record of a leg that ended unseen (its CDR): billed, like a
    CHANNEL_HANGUP_COMPLETE, from its billmsec."""

    answered_usec: int
    hangup_usec: int
    billmsec: int
    cause: str
    created_usec: int = 0


@dataclass(frozen=True, slots=True)
class NoRecord:
    """No record of a leg that ended unseen came in time: charge what was reserved."""


Event = (
    Parked | AuthDecided | Answered | ReserveDue | Reserved | HungUp | Adopted | Vanished
    | RecordFound | NoRecord
)


# --- actions ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Authorize:
    account: str | None
    direction: str
    destination: str
    caller: str


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: str


@dataclass(frozen=True, slots=True)
class Admit:
    max_seconds: int
    answered_usec: int = 0  # answered before the park: the safety net counts from it


@dataclass(frozen=True, slots=True)
class Reserve:
    seq: int
    target_seconds: int


@dataclass(frozen=True, slots=True)
class ScheduleReserve:
    """Fire ReserveDue when the call reaches `at_seconds` after its answer."""

    at_seconds: float


@dataclass(frozen=True, slots=True)
class RetryReserve:
    """Fire ReserveDue again after `delay` seconds (the last attempt failed)."""

    delay: float


@dataclass(frozen=True, slots=True)
class HangupAt:
    """Hang the call up when it reaches `at_seconds` after its answer (its paid end);
    replaces any earlier deadline. None cancels the deadline."""

    at_seconds: float | None


@dataclass(frozen=True, slots=True)
class ArmNet:
    """Move the switch's safety net to `at_seconds` after the answer: the end of what is
    now reserved (so that, with the daemon gone, the call ends where its money does)."""

    at_seconds: int


@dataclass(frozen=True, slots=True)
class CancelTimers:
    pass


@dataclass(frozen=True, slots=True)
class FindRecord:
    """Look for FreeSWITCH's record of this leg (answer RecordFound or NoRecord)."""


@dataclass(frozen=True, slots=True)
class Commit:
    billed_seconds: int
    settlement: SettlementKind
    cause: str
    created_usec: int
    answered_usec: int
    hangup_usec: int


Action = (
    Authorize | Refuse | Admit | Reserve | ScheduleReserve | RetryReserve | HangupAt
    | ArmNet | CancelTimers | FindRecord | Commit
)

# Hang up this much before the paid end so the billed duration (rounded up to whole
# seconds) stays inside what was reserved.
HANGUP_MARGIN = 0.5
# After a failed reservation (Redis unreachable), try again this much later; a call with
# no paid chunk yet is kept this long before it is hung up.
RESERVE_RETRY = 1.0
RESERVE_GRACE = 10.0


class Leg:
    """The state of one rated leg and its decisions."""

    __slots__ = (
        "answered_usec",
        "created_usec",
        "debit_interval",
        "granted",
        "max_seconds",
        "net_at",
        "reserve_ahead",
        "seq",
        "state",
        "uuid",
    )

    def __init__(self, uuid: str, debit_interval: int, reserve_ahead: float) -> None:
        self.uuid = uuid
        self.state = LegState.NEW
        self.debit_interval = debit_interval
        self.reserve_ahead = reserve_ahead
        self.max_seconds = 0
        self.granted = 0
        self.seq = 0
        self.answered_usec = 0
        self.created_usec = 0
        self.net_at = 0  # seconds after the answer the switch's safety net is at

    @property
    def done(self) -> bool:
        return self.state in (LegState.FINISHED, LegState.REFUSED)

    def handle(self, event: Event) -> list[Action]:
        """Apply one event; return what must be done, in order."""
        match event:
            case Parked():
                return self._on_parked(event)
            case AuthDecided():
                return self._on_auth(event)
            case Answered():
                return self._on_answered(event.answered_usec)
            case ReserveDue():
                return self._next_reservation()
            case Reserved():
                return self._on_reserved(event)
            case HungUp():
                return self._on_hungup(event)
            case Adopted():
                return self._on_adopted(event)
            case Vanished():
                return self._on_vanished()
            case RecordFound():
                return self._on_record(event)
            case NoRecord():
                return self._on_no_record()
        raise TypeError(f"not a leg event: {event!r}")  # pragma: no cover

    # --- transitions --------------------------------------------------------------------

    def _on_parked(self, e: Parked) -> list[Action]:
        if self.state is not LegState.NEW:
            return []  # a duplicate PARK (or one after a transfer back to park)
        self.state = LegState.AUTHORIZING
        self.created_usec = e.created_usec
        self.answered_usec = e.answered_usec
        return [Authorize(e.account, e.direction, e.destination, e.caller)]

    def _on_auth(self, e: AuthDecided) -> list[Action]:
        if self.state is not LegState.AUTHORIZING:
            return []
        if not e.allowed:
            self.state = LegState.REFUSED
            refuse = Refuse(e.reason or Reason.INTERNAL_ERROR)
            if not e.may_be_written:
                return [refuse]
            return [refuse, Commit(0, SettlementKind.WITHDRAWN, "", self.created_usec, 0, 0)]
        self.state = LegState.ADMITTED
        self.max_seconds = e.max_seconds
        answered = self.answered_usec
        if not answered:
            return [Admit(e.max_seconds)]
        # Answered before it parked: no CHANNEL_ANSWER will come; paid time runs already.
        return [Admit(e.max_seconds, answered), *self._on_answered(answered)]

    def _on_answered(self, answered_usec: int) -> list[Action]:
        if self.state is not LegState.ADMITTED:
            return []
        self.state = LegState.TALKING
        self.answered_usec = answered_usec
        self.net_at = self.first_net()  # armed by the admit (execute_on_answer)
        return self._next_reservation()

    def first_net(self) -> int:
        """Where the admit puts the safety net: the end of the first chunk."""
        return min(self.debit_interval, self.max_seconds)

    def _next_reservation(self) -> list[Action]:
        if self.state is not LegState.TALKING or self.granted >= self.max_seconds:
            return []
        self.seq += 1
        target = min(self.granted + self.debit_interval, self.max_seconds)
        return [Reserve(self.seq, target)]

    def _on_reserved(self, e: Reserved) -> list[Action]:
        if self.state is not LegState.TALKING:
            return []
        if e.status == "error":
            # Redis did not answer: retry the same operation id (it cannot apply twice) and
            # keep the call only while it is paid for (or for a short grace before any chunk).
            self.seq -= 1
            deadline = self.granted - HANGUP_MARGIN if self.granted else RESERVE_GRACE
            return [RetryReserve(RESERVE_RETRY), HangupAt(max(0.0, deadline))]
        self.granted = max(self.granted, e.granted_seconds)
        arm: list[Action] = []
        if self.granted > self.net_at:
            self.net_at = self.granted
            arm = [ArmNet(self.granted)]
        if e.status == ReservationStatus.OK and self.granted < self.max_seconds:
            return [*arm, HangupAt(None),
                    ScheduleReserve(max(0.0, self.granted - self.reserve_ahead))]
        # short, refused, or the authorized maximum reached: end the call when paid time ends
        return [*arm, HangupAt(max(0.0, self.granted - HANGUP_MARGIN))]

    def _on_hungup(self, e: HungUp) -> list[Action]:
        if self.state in (LegState.FINISHED, LegState.REFUSED, LegState.NEW):
            return []  # NEW: a leg we never rated (no PARK seen) is not ours to bill
        answered = e.answered_usec or self.answered_usec
        billed = 0
        if answered:
            if e.billmsec is not None and e.answered_usec:
                billed = billed_seconds_from_msec(e.billmsec)
            elif e.hangup_usec >= answered:
                billed = billed_seconds_from_usec(answered, e.hangup_usec)
        was_answered = billed > 0 or self.state is LegState.TALKING or bool(self.answered_usec)
        settlement = SettlementKind.FINAL if was_answered else SettlementKind.UNANSWERED
        return self._finish(billed, settlement, e.cause,
                            e.created_usec or self.created_usec, answered, e.hangup_usec)

    def _finish(self, billed: int, settlement: SettlementKind, cause: str, created_usec: int,
                answered_usec: int, hangup_usec: int) -> list[Action]:
        self.state = LegState.FINISHED
        return [CancelTimers(),
                Commit(billed, settlement, cause, created_usec, answered_usec, hangup_usec)]

    def _on_adopted(self, e: Adopted) -> list[Action]:
        if self.state is not LegState.NEW:
            return []
        self.created_usec = e.created_usec
        self.max_seconds = e.max_seconds
        self.granted = e.granted_seconds
        self.seq = e.next_seq - 1
        if not e.answered_usec:
            self.state = LegState.ADMITTED
            return []
        self.state = LegState.TALKING
        self.answered_usec = e.answered_usec
        # the process before this one moved the net with each chunk it reserved
        self.net_at = self.granted or self.first_net()
        if self.granted == 0:
            return self._next_reservation()
        return [ScheduleReserve(max(0.0, self.granted - self.reserve_ahead))]

    def _on_vanished(self) -> list[Action]:
        if self.state not in (LegState.ADMITTED, LegState.TALKING):
            return []
        self.state = LegState.ENDED_UNSEEN
        return [CancelTimers(), FindRecord()]

    def _on_record(self, e: RecordFound) -> list[Action]:
        if self.state is not LegState.ENDED_UNSEEN:
            return []
        answered = e.answered_usec
        billed = billed_seconds_from_msec(e.billmsec) if answered else 0
        settlement = SettlementKind.SWITCH_RECORD if answered else SettlementKind.UNANSWERED
        return self._finish(billed, settlement, e.cause,
                            e.created_usec or self.created_usec, answered, e.hangup_usec)

    def _on_no_record(self) -> list[Action]:
        if self.state is not LegState.ENDED_UNSEEN:
            return []
        # what was reserved, with the times that are known (no hangup time is)
        return self._finish(self.granted, SettlementKind.AS_RESERVED, "", self.created_usec,
                            self.answered_usec, 0)

