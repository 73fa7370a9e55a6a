"""Real switch: rated calls end to end (sipp -> FreeSWITCH -> rater run -> PostgreSQL).

Amounts worked by hand from the rules (README "How it works", DESIGN §4) for the billed
seconds `b` FreeSWITCH reports (microsecond times rounded up), which must match the call's
length as sipp measured it (answer to BYE) within a second. Hold times end in .5 s, away from
the rounding edge: the switch's own answer-to-hangup time is a few ms longer than sipp's, so
a 3.5 s hold bills 4 s. Dataset: tests/freeswitch_world.py.
"""

from __future__ import annotations

import pytest

from tests import freeswitch_world
from tests.freeswitch_sipp import Call, Outcome
from tests.freeswitch_world import (
    C3,
    CUT,
    DID,
    IN,
    INC,
    MK,
    P1,
    PK,
    PP,
    R1,
    R2,
    Cdr,
    RatedWorld,
)

pytestmark = [pytest.mark.freeswitch, pytest.mark.slow]
switch, rated = freeswitch_world.switch, freeswitch_world.rated  # the tier's fixtures


def only_cdr(cdrs: dict[str, list[Cdr]], caller: str) -> Cdr:
    found = cdrs.get(caller, [])
    assert len(found) == 1, f"call {caller}: expected one CDR, found {found}"
    return found[0]


def billed_matches(cdr: Cdr, seen: Outcome) -> int:
    """The CDR's billed seconds, checked against sipp's answer-to-BYE time (±1 s)."""
    assert seen.answered, f"call {seen.caller} was not answered: {seen}"
    assert abs(cdr.billed_seconds - seen.duration) <= 1.0, (
        f"call {seen.caller}: billed {cdr.billed_seconds} s, sipp saw {seen.duration:.3f} s")
    return cdr.billed_seconds


@pytest.fixture(params=["decision_socket", "park"])
def asking(request: pytest.FixtureRequest, rated: RatedWorld) -> str:
    """How the calls ask the rater: on its decision socket (the shipped dialplan), or by
    parking (the dialplan without its socket line: the path a call takes when the rater
    cannot be asked on the socket)."""
    lab = rated.lab
    if request.param == "park":
        address = lab.decision_socket
        lab.use_decision_socket(None)
        request.addfinalizer(lambda: lab.use_decision_socket(address))
    return request.param


def test_mixed_calls_are_billed_to_the_micro_unit(rated: RatedWorld, asking: str):
    lab = rated.lab
    spoofed_from = lab.users[MK].user_id         # From says MK; the digest is P1's
    outbound = [
        rated.outbound(1, P1, hold=3.5),
        rated.outbound(2, PK, hold=8.5),         # 5 package seconds left, then money
        rated.outbound(3, MK, hold=3.5),
        rated.outbound(4, INC, hold=3.5),
        rated.outbound(5, C3, hold=3.5),         # three levels
        rated.outbound(6, PP, hold=3.5),         # postpaid: goes below zero
        rated.outbound(7, P1, hold=2.5, as_user=spoofed_from),
    ]
    did = [Call(lab.caller(8), DID, 3.5)]        # carrier call, public context
    runs = [rated.place(outbound, rate=5), rated.place(did)]
    seen = {**runs[0].wait(90), **runs[1].wait(90)}
    callers = [c.caller for c in outbound + did]
    assert sorted(seen) == sorted(callers), f"sipp failures: {runs[0].errors()}"
    cdrs = rated.wait_cdrs(callers)

    def check(n: int, account: str, direction: str, charges) -> None:
        caller = callers[n - 1]
        cdr = only_cdr(cdrs, caller)
        b = billed_matches(cdr, seen[caller])
        want = charges(b)
        assert (cdr.account, cdr.direction, cdr.settlement) == (account, direction, "final")
        assert cdr.charges == want, f"call {n} ({caller}), {b} s billed"
        assert cdr.total_cost == want[0][3]

    # P1, retail 0.6000/min per second: b s -> 10000·b (3.5 s held, 4 billed -> 40000)
    check(1, P1, "outbound", lambda b: ((P1, b, 0, 10_000 * b),))
    # PK: 5 free seconds left in "UK 1", the rest at 10000/s: 9 s -> 5 free, 4 paid = 40000
    check(2, PK, "outbound", lambda b: ((PK, b, 5, 10_000 * (b - 5)),))
    # MK: 0.6000/min with a 20 % markup = 0.72/min = 12000/s: 4 s -> 48000
    check(3, MK, "outbound", lambda b: ((MK, b, 0, 12_000 * b),))
    # INC: 0.10/min, connect 0.05, 30 s then 6 s: 4 s -> 30 charged s; 50000 connect +
    # round(100000·30/60) = 50000 -> 100000, whatever b is up to 30 s
    check(4, INC, "outbound", lambda b: ((INC, 30, 0, 100_000),))
    # C3 -> R2 -> R1: 5000/s, 2000/s, 1000/s: 4 s -> 20000, 8000, 4000
    check(5, C3, "outbound",
          lambda b: ((C3, b, 0, 5_000 * b), (R2, b, 0, 2_000 * b), (R1, b, 0, 1_000 * b)))
    # PP postpaid at retail: 4 s -> 40000, balance -40000 (credit limit 5.00)
    check(6, PP, "outbound", lambda b: ((PP, b, 0, 10_000 * b),))
    # authenticated as P1, From header naming MK's user: P1 pays retail (3 s -> 30000),
    # not MK's 12000/s
    caller7 = callers[6]
    assert caller7 == spoofed_from
    check(7, P1, "outbound", lambda b: ((P1, b, 0, 10_000 * b),))
    # DID 15550001111 owned by IN, inbound 1555 at 0.6000/min: 4 s -> 40000
    check(8, IN, "inbound", lambda b: ((IN, b, 0, 10_000 * b),))

    assert rated.settled(30), f"legs still live: {rated.live_legs()}"
    spent: dict[str, int] = {}
    for caller in callers:
        for account, _, _, cost in only_cdr(cdrs, caller).charges:
            spent[account] = spent.get(account, 0) + cost
    opening = {P1: 10_000_000, PK: 10_000_000, MK: 10_000_000, INC: 10_000_000,
               C3: 10_000_000, R2: 100_000_000, R1: 100_000_000, PP: 0, IN: 10_000_000}
    for account, start in opening.items():
        want = start - spent.get(account, 0)
        assert rated.account(account) == (want, 0, 0), account
        assert rated.ledger_balance(account) == want, account
    assert rated.account(PP)[0] < 0
    assert rated.reconcile().returncode == 0
    # every call was decided the way the dialplan asked: on the socket, or from its park
    metrics = rated.daemon.metrics()
    asked = metrics['rater_decision_socket_calls_total{result="asked"}']
    released = metrics['rater_decision_socket_calls_total{result="released"}']
    assert (asked, released) == ((len(callers), 0) if asking == "decision_socket" else (0, 0))
    assert metrics["rater_calls_authorized_total"] == len(callers)


def test_call_is_cut_at_its_paid_time(rated: RatedWorld):
    # CUT has 0.30 at 10000/s: exactly 30 paid seconds; the caller would talk for 60
    call = rated.outbound(1, CUT, hold=60)
    seen = rated.place([call]).wait(120)[call.caller]
    assert seen.answered
    assert seen.ended_by == "switch", seen
    assert seen.cause == "ALLOTTED_TIMEOUT", seen
    # the rater hangs up at the paid end (within a second), never after it
    assert 29.0 <= seen.duration <= 31.0, seen
    cdr = only_cdr(rated.wait_cdrs([call.caller]), call.caller)
    # 30 s billed at 10000/s = 300000: the whole balance
    assert (cdr.billed_seconds, cdr.total_cost, cdr.hangup_cause) == (
        30, 300_000, "ALLOTTED_TIMEOUT")
    assert rated.settled(30)
    assert rated.account(CUT) == (0, 0, 0)
    assert rated.ledger_balance(CUT) == 0
