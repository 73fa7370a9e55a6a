"""The leg state machine: transitions, duplicates and out-of-order events (no I/O)."""

from __future__ import annotations

from rater.calls.leg import (
    Admit,
    Adopted,
    Answered,
    ArmNet,
    AuthDecided,
    Authorize,
    CancelTimers,
    Commit,
    FindRecord,
    HangupAt,
    HungUp,
    Leg,
    LegState,
    NoRecord,
    Parked,
    RecordFound,
    Refuse,
    Reserve,
    Reserved,
    ReserveDue,
    RetryReserve,
    ScheduleReserve,
    Vanished,
)

PARK = Parked("2000000001", "outbound", "447700900123", "15551230000", 1_000_000)
T0 = 1_795_454_385_000_000  # answered, µs


def admitted(max_seconds: int = 300, interval: int = 60, ahead: float = 5.0) -> Leg:
    leg = Leg("u1", debit_interval=interval, reserve_ahead=ahead)
    assert leg.handle(PARK) == [Authorize("2000000001", "outbound", "447700900123", "15551230000")]
    assert leg.handle(AuthDecided(True, max_seconds)) == [Admit(max_seconds)]
    return leg


def test_full_call_reserves_in_chunks_then_commits_from_timestamps():
    leg = admitted(max_seconds=300)
    assert leg.handle(Answered(T0)) == [Reserve(1, 60)]
    assert leg.handle(Reserved("ok", 60)) == [HangupAt(None), ScheduleReserve(55.0)]
    assert leg.handle(ReserveDue()) == [Reserve(2, 120)]
    # the safety net follows what is reserved (the admit put it at the first chunk's end)
    assert leg.handle(Reserved("ok", 120)) == [ArmNet(120), HangupAt(None),
                                               ScheduleReserve(115.0)]
    # hung up after 65.2 s of talk: billed from billmsec, rounded up → 66
    actions = leg.handle(HungUp(T0, T0 + 65_200_000, 65_200, "NORMAL_CLEARING", 1_000_000))
    assert actions == [
        CancelTimers(),
        Commit(66, "final", "NORMAL_CLEARING", 1_000_000, T0, T0 + 65_200_000),
    ]
    assert leg.state is LegState.FINISHED


def test_billed_from_timestamps_when_billmsec_missing():
    leg = admitted()
    leg.handle(Answered(T0))
    actions = leg.handle(HungUp(T0, T0 + 3_019_000, None, "NORMAL_CLEARING"))
    assert actions[1].billed_seconds == 4  # 3.019 s rounds up


def test_refused_call_is_hung_up_and_its_hangup_ignored():
    leg = Leg("u1", 60, 5.0)
    leg.handle(PARK)
    assert leg.handle(AuthDecided(False, reason="insufficient_funds")) == [
        Refuse("insufficient_funds")
    ]
    assert leg.state is LegState.REFUSED
    assert leg.handle(HungUp(0, T0, None, "CALL_REJECTED")) == []
    assert leg.done


def test_refused_when_redis_did_not_answer_withdraws_what_it_may_have_written():
    leg = Leg("u1", 60, 5.0)
    leg.handle(PARK)
    actions = leg.handle(AuthDecided(False, reason="internal_error", may_be_written=True))
    assert actions == [Refuse("internal_error"),
                       Commit(0, "withdrawn", "", 1_000_000, 0, 0)]
    assert leg.state is LegState.REFUSED
    assert leg.handle(HungUp(0, T0, None, "NORMAL_TEMPORARY_FAILURE")) == []  # nothing more


def test_duplicate_events_change_nothing():
    leg = admitted()
    assert leg.handle(PARK) == []
    assert leg.handle(AuthDecided(True, 999)) == []
    assert leg.max_seconds == 300
    leg.handle(Answered(T0))
    assert leg.handle(Answered(T0 + 5)) == []
    leg.handle(Reserved("ok", 60))
    hangup = HungUp(T0, T0 + 10_000_000, 10_000, "NORMAL_CLEARING")
    assert len(leg.handle(hangup)) == 2
    assert leg.handle(hangup) == []
    assert leg.handle(ReserveDue()) == []
    assert leg.handle(Reserved("ok", 120)) == []


def test_hangup_before_answer_event_bills_from_the_hangup_event():
    leg = admitted()
    actions = leg.handle(HungUp(T0, T0 + 7_500_000, 7_500, "NORMAL_CLEARING"))
    # the hangup event carries no created time: the PARK's is kept
    assert actions[1] == Commit(8, "final", "NORMAL_CLEARING", 1_000_000, T0, T0 + 7_500_000)
    assert leg.handle(Answered(T0)) == []  # the late ANSWER is ignored


def test_never_answered_leg_is_released():
    leg = admitted()
    actions = leg.handle(HungUp(0, T0, 0, "NO_ANSWER"))
    assert actions[1] == Commit(0, "unanswered", "NO_ANSWER", 1_000_000, 0, T0)


def test_hangup_without_park_is_not_ours():
    leg = Leg("u1", 60, 5.0)
    assert leg.handle(HungUp(T0, T0 + 1, None, "NORMAL_CLEARING")) == []


def test_short_reservation_hangs_up_at_the_paid_end():
    leg = admitted(max_seconds=300)
    leg.handle(Answered(T0))
    assert leg.handle(Reserved("short", 42)) == [HangupAt(41.5)]
    assert leg.handle(ReserveDue()) == [Reserve(2, 102)]  # a late timer may still try


def test_refused_next_chunk_hangs_up_at_the_end_of_the_previous():
    leg = admitted(max_seconds=300)
    leg.handle(Answered(T0))
    leg.handle(Reserved("ok", 60))
    leg.handle(ReserveDue())
    assert leg.handle(Reserved("refused", 60)) == [HangupAt(59.5)]


def test_reservations_stop_at_the_authorized_maximum():
    leg = admitted(max_seconds=90)
    leg.handle(Answered(T0))
    leg.handle(Reserved("ok", 60))
    assert leg.handle(ReserveDue()) == [Reserve(2, 90)]
    assert leg.handle(Reserved("ok", 90)) == [ArmNet(90), HangupAt(89.5)]
    assert leg.handle(ReserveDue()) == []


def test_reservation_error_retries_the_same_operation_until_the_paid_end():
    leg = admitted()
    leg.handle(Answered(T0))
    leg.handle(Reserved("ok", 60))
    assert leg.handle(ReserveDue()) == [Reserve(2, 120)]
    assert leg.handle(Reserved("error", 60)) == [RetryReserve(1.0), HangupAt(59.5)]
    assert leg.handle(ReserveDue()) == [Reserve(2, 120)]  # same seq → same op id
    assert leg.handle(Reserved("ok", 120)) == [ArmNet(120), HangupAt(None),
                                               ScheduleReserve(115.0)]


def test_first_reservation_error_keeps_a_short_grace():
    leg = admitted()
    leg.handle(Answered(T0))
    assert leg.handle(Reserved("error", 0)) == [RetryReserve(1.0), HangupAt(10.0)]


def test_adopted_talking_leg_resumes_reserving():
    leg = Leg("u1", 60, 5.0)
    assert leg.handle(Adopted(T0, max_seconds=600, granted_seconds=120, next_seq=3)) == [
        ScheduleReserve(115.0)
    ]
    assert leg.handle(ReserveDue()) == [Reserve(3, 180)]


def test_adopted_unanswered_leg_waits_for_answer():
    leg = Leg("u1", 60, 5.0)
    assert leg.handle(Adopted(0, max_seconds=600, granted_seconds=0, next_seq=1)) == []
    assert leg.handle(Answered(T0)) == [Reserve(1, 60)]


def test_vanished_leg_waits_for_the_switch_record_then_is_charged_as_reserved():
    leg = admitted()
    leg.handle(Answered(T0))
    leg.handle(Reserved("ok", 60))
    assert leg.handle(Vanished()) == [CancelTimers(), FindRecord()]
    assert leg.state is LegState.ENDED_UNSEEN
    assert leg.handle(Vanished()) == []
    assert leg.handle(ReserveDue()) == []  # an ended leg is never extended
    # no record in time: what was reserved, with the times it knew (created from PARK)
    assert leg.handle(NoRecord()) == [
        CancelTimers(),
        Commit(60, "as_reserved", "", 1_000_000, T0, 0),
    ]
    assert leg.handle(NoRecord()) == []


def test_vanished_leg_settled_from_the_switch_record():
    leg = admitted()
    leg.handle(Answered(T0))
    leg.handle(Reserved("ok", 60))
    leg.handle(Vanished())
    # FreeSWITCH's record: answered T0, hung up 12.3 s later (billmsec 12300) -> 13 s
    record = RecordFound(T0, T0 + 12_300_000, 12_300, "NORMAL_CLEARING", 1_000_000)
    assert leg.handle(record) == [
        CancelTimers(),
        Commit(13, "switch_record", "NORMAL_CLEARING", 1_000_000, T0, T0 + 12_300_000),
    ]
    assert leg.handle(NoRecord()) == []


def test_vanished_before_answer_with_an_unanswered_record_is_released():
    leg = admitted()
    leg.handle(Vanished())
    assert leg.handle(RecordFound(0, T0, 0, "ORIGINATOR_CANCEL", 1_000_000)) == [
        CancelTimers(), Commit(0, "unanswered", "ORIGINATOR_CANCEL", 1_000_000, 0, T0)]


def test_a_late_hangup_settles_a_leg_waiting_for_its_record():
    leg = admitted()
    leg.handle(Answered(T0))
    leg.handle(Reserved("ok", 60))
    leg.handle(Vanished())
    actions = leg.handle(HungUp(T0, T0 + 5_000_000, 5_000, "NORMAL_CLEARING", 1_000_000))
    assert actions == [CancelTimers(),
                       Commit(5, "final", "NORMAL_CLEARING", 1_000_000, T0, T0 + 5_000_000)]


def test_a_leg_answered_before_it_parked_reserves_at_once():
    leg = Leg("u1", 60, 5.0)
    leg.handle(Parked("2000000001", "outbound", "447700900123", "1555", 1_000_000, T0))
    # no CHANNEL_ANSWER will come: the admit carries the answer and the first chunk follows
    assert leg.handle(AuthDecided(True, 300)) == [Admit(300, T0), Reserve(1, 60)]
    assert leg.state is LegState.TALKING and leg.answered_usec == T0
    assert leg.handle(Answered(T0 + 5)) == []  # a late duplicate changes nothing
