"""End to end: simulated FreeSWITCH over TCP -> daemon -> real Redis -> flusher -> PostgreSQL.

Every amount is worked out by hand from tests/e2e_world.py (retail = 10000 micros/second).
Talk times are whole seconds plus a little, so the billed duration (rounded up) is known:
a call that talks 3.2 s is billed 4 s.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e_world import (
    C3,
    CC,
    DID_IN,
    IN,
    P1,
    PK,
    PP,
    R1,
    R2,
    SH,
    UK,
    dataset,
    running_world,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def world(cfg, database_url):
    with running_world(cfg, database_url) as w:
        yield w


@pytest.mark.also_on_cluster
def test_plain_prepaid_call(world):
    uuid = world.call(P1, UK, duration=3.2)
    ch = world.wait(uuid)
    assert ch.cause == "NORMAL_CLEARING"
    # the variables and the safety net, then the transfer (1.00 at 10000/s = 100 s
    # allowed; the net at the end of the first 2 s chunk, +1 s)
    commands = [c for _, c in ch.commands]
    moved_at = ch.commands[-1][0]  # when the switch got the move (µs)
    assert commands[:2] == [
        f"uuid_setvar_multi {uuid} rater_max_seconds=100;rater_account={P1};"
        f"execute_on_answer=sched_hangup +3 ALLOTTED_TIMEOUT",
        f"uuid_transfer {uuid} {UK} XML rated"]
    assert ch.transfers == [(UK, "XML", "rated")]
    commands = commands[1:]
    assert ch.executed_on_answer == ["sched_hangup +3 ALLOTTED_TIMEOUT"]
    # the second chunk (2-4 s, reserved 0.5 s before the first ends) moves the net to 4 s
    # after the answer, +1 (2.5 s from then on a quick machine, rounded up, +1 = 4)
    # (the daemon counts from a moment before the switch got it: maybe one more)
    net = -(-(ch.answered_us + 4_000_000 - moved_at) // 1_000_000) + 1
    assert commands[1] == f"sched_del {uuid}"
    assert commands[2] in {f"sched_hangup +{n} {uuid} ALLOTTED_TIMEOUT" for n in (net, net + 1)}
    assert len(commands) == 3
    world.settle()
    # 4 s billed at 10000/s = 40000
    assert world.balance(P1) == 1_000_000 - 40_000
    assert world.pg_balance(P1) == 1_000_000 - 40_000
    doc = world.cdr(uuid)
    assert doc["cdr"]["billed_seconds"] == 4
    assert doc["cdr"]["total_cost"] == 40_000
    assert doc["cdr"]["settlement"] == "final"
    assert [(c["account"], c["charged_seconds"], c["cost"]) for c in doc["charges"]] == [
        (P1, 4, 40_000)]


def test_postpaid_call_down_to_its_credit_limit(cfg, database_url):
    # 0 balance, 0.06 of credit: 6 s at 10000/s; the call wants 60 s
    data = dataset()
    [account] = [a for a in data["accounts"] if a["number"] == PP]
    account["credit_limit"] = "0.06"
    with running_world(cfg, database_url, data=data) as world:
        uuid = world.call(PP, UK, duration=60)
        ch = world.wait(uuid)
        talk = (ch.hangup_us - ch.answered_us) / 1e6
        assert ch.hangup_by == "switch"
        assert 5.0 <= talk <= 6.0  # hung up within a second of the paid end
        world.settle()
        assert world.balance(PP) == world.pg_balance(PP) == -60_000
        assert world.cdr(uuid)["cdr"]["billed_seconds"] == 6


@pytest.mark.also_on_cluster
def test_customer_under_two_resellers_pays_three_levels(world):
    uuid = world.call(C3, UK, duration=5.3)
    world.wait(uuid)
    world.settle()
    # 6 s billed: C3 at r2-sell 5000/s = 30000; R2 at r1-sell 2000/s = 12000;
    # R1 at wholesale 1000/s = 6000
    assert world.balance(C3) == 10_000_000 - 30_000
    assert world.balance(R2) == 10_000_000 - 12_000
    assert world.balance(R1) == 10_000_000 - 6_000
    charges = world.cdr(uuid)["charges"]
    assert [(c["level"], c["account"], c["cost"]) for c in charges] == [
        (0, C3, 30_000), (1, R2, 12_000), (2, R1, 6_000)]
    assert world.pg_balance(R1) == 10_000_000 - 6_000


@pytest.mark.also_on_cluster
def test_package_minutes_then_balance(cfg, database_url):
    # PK's order has 55 of its 60 free seconds on 44 used: a 7.2 s call -> 8 billed,
    # the last 5 free, then 3 paid at 10000/s
    data = dataset()
    [order] = [o for o in data["orders"] if o["account"] == PK]
    order["used_seconds"] = 55
    with running_world(cfg, database_url, data=data) as world:
        uuid = world.call(PK, UK, duration=7.2)
        world.wait(uuid)
        world.settle()
        assert world.balance(PK) == 1_000_000 - 30_000
        [charge] = world.cdr(uuid)["charges"]
        assert (charge["free_seconds"], charge["cost"]) == (5, 30_000)
        assert world.sql("SELECT used_seconds FROM orders WHERE id = 'ord-pk'") == [(60,)]


@pytest.mark.also_on_cluster
def test_call_cut_off_when_money_runs_out(world):
    # 0.05 buys 5 s
    uuid = world.call(SH, UK, duration=30)
    ch = world.wait(uuid, timeout=30)
    talk = (ch.hangup_us - ch.answered_us) / 1e6
    assert ch.hangup_by == "switch"
    assert 4.0 <= talk <= 5.0
    world.settle()
    assert world.balance(SH) == 0
    assert world.cdr(uuid)["cdr"]["billed_seconds"] == 5


@pytest.mark.also_on_cluster
def test_unanswered_call_charges_nothing(world):
    uuid = world.call(P1, UK, answer=False, duration=1.0)
    ch = world.wait(uuid)
    assert ch.answered_us == 0
    world.settle()
    assert world.balance(P1) == 1_000_000
    doc = world.cdr(uuid)
    assert (doc["cdr"]["billed_seconds"], doc["cdr"]["settlement"]) == (0, "unanswered")
    assert world.sql("SELECT count(*) FROM ledger_entries WHERE ref = %s", uuid) == [(0,)]


@pytest.mark.also_on_cluster
def test_inbound_did_call_uses_the_inbound_only_package(world):
    # no account given: found through the DID; 60 inbound free seconds
    uuid = world.call(None, DID_IN, direction="inbound", duration=10.4)
    world.wait(uuid)
    world.settle()
    assert world.balance(IN) == 1_000_000
    [charge] = world.cdr(uuid)["charges"]
    assert (charge["account"], charge["free_seconds"], charge["cost"]) == (IN, 11, 0)
    # the inbound-only package never serves an outbound call: 3 s paid
    out = world.call(IN, UK, duration=2.2)
    world.wait(out)
    world.settle()
    assert world.balance(IN) == 1_000_000 - 30_000
    assert world.sql("SELECT used_seconds FROM orders WHERE id = 'ord-in'") == [(11,)]


@pytest.mark.also_on_cluster
def test_refusals_hang_up_with_the_configured_cause(world):
    blocked = world.call(P1, "449012345", duration=5)
    unknown = world.call("2999999999", UK, duration=5)
    no_rate = world.call(P1, "3312345678", duration=5)
    assert world.wait(blocked).cause == "OUTGOING_CALL_BARRED"
    assert world.wait(unknown).cause == "CALL_REJECTED"
    assert world.wait(no_rate).cause == "NO_ROUTE_DESTINATION"
    world.settle()
    assert world.balance(P1) == 1_000_000


@pytest.mark.also_on_cluster
def test_fifty_concurrent_calls_never_take_more_than_the_balance(world):
    # CC can afford 600 s (6.00 at 10000/s); 50 calls each want 20 s = 1000 s
    uuids = [world.call(CC, UK, duration=20) for _ in range(50)]
    for uuid in uuids:
        world.wait(uuid, timeout=60)
    world.settle(timeout=60)
    billed = world.sql("SELECT sum(billed_seconds), sum(total_cost) FROM cdrs "
                       "WHERE account = %s", CC)
    total_seconds, total_cost = billed[0]
    assert total_cost <= 6_000_000
    assert total_seconds <= 600
    assert world.balance(CC) >= 0
    assert world.balance(CC) == 6_000_000 - total_cost
    assert world.pg_balance(CC) == world.balance(CC)


@pytest.mark.also_on_cluster
def test_rate_change_applies_to_calls_authorized_after_the_reload(world):
    before = world.call(P1, UK, duration=6.3)
    deadline = time.monotonic() + 10
    while world.sim.call(before).answered_us == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    version = world.daemon.snapshots.version
    world.sql("UPDATE rates SET price_per_min = 1200000 WHERE prefix = '44' AND "
              "rate_group_id = (SELECT id FROM rate_groups WHERE name = 'retail')")
    world.sync()
    world.wait_snapshot(version)
    after = world.call(P1, UK, duration=2.3)
    world.wait(before)
    world.wait(after)
    world.settle()
    # in flight: 7 s at the old 10000/s; after the reload: 3 s at 20000/s
    assert world.cdr(before)["cdr"]["total_cost"] == 70_000
    assert world.cdr(after)["cdr"]["total_cost"] == 60_000
    assert world.balance(P1) == 1_000_000 - 130_000


def test_a_call_answered_before_it_parked_is_billed_and_netted_from_its_answer(world):
    """An IVR answered the call, then parked it for rating: no CHANNEL_ANSWER will come,
    so the daemon starts reserving at once and arms the safety net itself."""
    uuid = world.call(P1, UK, duration=2.6, answer_first=True)
    ch = world.wait(uuid)
    admit = [c for _, c in ch.commands][:3]
    # the net at the end of the first 2 s chunk from the answer, +1 s, minus the whole
    # seconds already talked when it was armed (0, or 1 across a second boundary)
    assert re.fullmatch(rf"sched_hangup \+(3|2) {uuid} ALLOTTED_TIMEOUT", admit[1]), admit
    assert "execute_on_answer" not in admit[0]
    assert admit[2] == f"uuid_transfer {uuid} {UK} XML rated"
    world.settle()
    doc = world.cdr(uuid)
    billed = -(-ch.billmsec // 1000)  # from its answer (billmsec), rounded up
    assert (doc["cdr"]["settlement"], doc["cdr"]["billed_seconds"]) == ("final", billed)
    assert world.balance(P1) == 1_000_000 - billed * 10_000


def test_a_call_answered_before_it_parked_is_cut_when_its_money_ends(world):
    # SH has 0.05: 5 s at 10000/s, counted from the answer that came before the park
    uuid = world.call(SH, UK, duration=30, answer_first=True)
    ch = world.wait(uuid, timeout=30)
    talk = (ch.hangup_us - ch.answered_us) / 1e6
    assert ch.hangup_by == "switch" and talk <= 5.0
    world.settle()
    assert world.cdr(uuid)["cdr"]["billed_seconds"] == 5
    assert world.balance(SH) == 0
