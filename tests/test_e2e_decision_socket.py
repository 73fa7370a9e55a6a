"""End to end through the decision socket: the simulator's calls ask the daemon on FreeSWITCH's
`socket` application (fssim.outbound) before they would park; the daemon answers there.

Amounts from tests/e2e_world.py: `retail` is 0.6000/min = 10000 micro-units a second, billed
per second (a 3.2 s call is billed 4 s); C3's chain pays 5000/s (C3, r2-sell), 2000/s (R2,
r1-sell), 1000/s (R1, wholesale); PK has 60 free outbound seconds on 44 (order "UK 1").
"""

from __future__ import annotations

import pytest

from fssim.channel import CallState
from tests.e2e_world import C3, P1, PK, R1, R2, UK, running_world
from tests.test_e2e_faults import wait_until
from tests.test_e2e_restart import restart

pytestmark = pytest.mark.slow
PARKING = {"CHANNEL_PARK", "CHANNEL_UNPARK"}


@pytest.fixture
def world(cfg, database_url):
    with running_world(cfg, database_url, decision_socket=True) as w:
        yield w


def event_names(world, uuid: str) -> set[str]:
    return {name for name, _seq in world.sim.call(uuid).events}


def asked(world, result: str = "asked") -> float:
    return world.daemon.metrics.decision_socket.labels(result)._value.get()


def test_calls_decided_on_the_socket_are_billed_to_the_micro_unit(world):
    plain = world.call(P1, UK, duration=3.2)
    chain = world.call(C3, UK, duration=5.3)
    package = world.call(PK, UK, duration=2.2)
    for uuid in (plain, chain, package):
        call = world.wait(uuid)
        assert call.cause == "NORMAL_CLEARING" and call.socket_decided
        assert call.transfers == [(UK, "XML", "rated")]
        assert not event_names(world, uuid) & PARKING  # it never parked
    # 1.00 at 10000/s allows 100 s; the net at the end of the first 2 s chunk, +1 s: armed
    # on answer, then the transfer, both on the call's own connection
    first = [line for _t, line in world.sim.call(plain).commands][:2]
    assert first == [
        f"sendmsg multiset ^^|rater_max_seconds=100|rater_account={P1}|"
        "execute_on_answer=sched_hangup +3 ALLOTTED_TIMEOUT",
        f"sendmsg transfer {UK} XML rated"]
    assert world.sim.call(plain).executed_on_answer == ["sched_hangup +3 ALLOTTED_TIMEOUT"]
    world.settle()
    # P1: 3.2 s -> 4 s billed x 10000 = 40000
    assert world.balance(P1) == world.pg_balance(P1) == 1_000_000 - 40_000
    assert world.cdr(plain)["cdr"]["total_cost"] == 40_000
    # C3: 5.3 s -> 6 s: C3 6 x 5000 = 30000, R2 6 x 2000 = 12000, R1 6 x 1000 = 6000
    charges = world.cdr(chain)["charges"]
    assert [(c["account"], c["cost"]) for c in charges] == [
        (C3, 30_000), (R2, 12_000), (R1, 6_000)]
    assert world.balance(C3) == 10_000_000 - 30_000
    # PK: 2.2 s -> 3 s, all from the package's 60 free seconds: 0 paid
    [charge] = world.cdr(package)["charges"]
    assert (charge["free_seconds"], charge["cost"]) == (3, 0)
    assert world.balance(PK) == 1_000_000
    assert (asked(world), asked(world, "released")) == (3, 0)


def test_a_refusal_hangs_up_on_the_socket_with_its_cause_and_never_parks(world):
    blocked = world.call(P1, "449012345", duration=5)  # retail blocks 4490
    unknown = world.call("2999999999", UK, duration=5)
    assert world.wait(blocked).cause == "OUTGOING_CALL_BARRED"
    assert world.wait(unknown).cause == "CALL_REJECTED"
    for uuid, cause in ((blocked, "OUTGOING_CALL_BARRED"), (unknown, "CALL_REJECTED")):
        call = world.sim.call(uuid)
        assert [line for _t, line in call.commands] == [f"sendmsg hangup {cause}"]
        assert call.socket_decided and call.hangup_by == "switch"
        assert not event_names(world, uuid) & PARKING
    world.settle()
    assert world.balance(P1) == 1_000_000
    assert asked(world) == 2


def test_with_the_daemon_down_calls_park_and_are_decided_when_it_is_back(world):
    world.daemon.stop()  # its socket closed: the switch's connect is refused
    parked = world.call(P1, UK, duration=1.2, park_timeout=30)
    wait_until(lambda: world.sim.call(parked).state is CallState.PARKED, what="the park")
    assert world.sim.call(parked).get_var("socket_host") == "127.0.0.1"  # it tried first
    restart(world)  # on the same port (world.cfg)
    world.wait(parked)
    # decided from CHANNEL_PARK (the channel check at connection): uuid_transfer, unparked
    call = world.sim.call(parked)
    assert not call.socket_decided and call.transfers == [(UK, "XML", "rated")]
    assert event_names(world, parked) >= PARKING
    later = world.call(P1, UK, duration=1.2)  # and the socket is asked again
    assert world.wait(later).socket_decided
    world.settle()
    # 1.2 s -> 2 s billed x 10000 = 20000, each
    assert world.cdr(parked)["cdr"]["total_cost"] == world.cdr(later)["cdr"]["total_cost"] \
        == 20_000
    assert world.balance(P1) == 1_000_000 - 2 * 20_000
    assert asked(world) == 1


def test_a_caller_who_hangs_up_while_the_daemon_decides_costs_nothing(world):
    """The switch sent the call's data; before the decision is written the caller gives up:
    the switch's disconnect notice answers it, the hangup settles the leg unanswered."""
    sockets = world.daemon.decisions
    submit = sockets._submit  # how the socket hands a question to the call handler

    def question_then_caller_gone(item):
        submit(item)
        world.sim.hangup(item[0])  # the caller gives up before the handler decides

    sockets._submit = question_then_caller_gone
    uuid = world.call(P1, UK, duration=5)
    call = world.wait(uuid)
    assert call.cause == "ORIGINATOR_CANCEL" and not call.answered
    assert not call.socket_decided and not call.transfers
    world.settle()
    assert world.balance(P1) == 1_000_000
    doc = world.cdr(uuid)
    assert (doc["cdr"]["settlement"], doc["cdr"]["total_cost"]) == ("unanswered", 0)
    tag = world.daemon.snapshots.current.account(P1).tag
    state = world.daemon.ledger.account_state(tag, P1)
    assert (state.held_micros, state.live_legs) == (0, 0)
    assert not world.daemon.redis.sismember(world.daemon.keys.live(tag), uuid)
    assert world.sql("SELECT count(*) FROM ledger_entries WHERE ref = %s", uuid) == [(0,)]


def test_a_call_the_daemon_does_not_rate_is_released_to_park_and_counted(world):
    """Asked about a call its dialplan did not mark for rating, the daemon lets it go: the
    call parks (where nobody decides it: the caller gives up) and `released` counts it."""
    uuid = world.call(P1, UK, duration=1.0, variables={"rater_direction": "none"})
    wait_until(lambda: world.sim.call(uuid).state is CallState.PARKED, 10)
    assert (asked(world), asked(world, "released")) == (1, 1)
    assert world.sim.call(uuid).commands == []
