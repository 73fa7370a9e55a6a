"""Reconcile: Redis balances and buckets against the PostgreSQL ledger, with entries still in
the outbox accounted for (real Redis and PostgreSQL)."""

from __future__ import annotations

import json
import threading

import pytest

from rater.reconcile import Difference, reconcile
from tests.test_flusher import (
    CUSTOMER,
    CUSTOMER3,
    KS,
    OPENING,
    ORDER,
    RESELLER,
    World,
    _rater,
    crash_flusher,
    wait_for,
    world_fixture,  # noqa: F401 - the `world` fixture
)


def check(world: World, rechecks: int = 0):
    return reconcile(world.rds, world.pg, KS, rechecks=rechecks, recheck_pause=0.01)


def some_traffic(world: World) -> None:
    for i in range(12):
        world.call(f"call-{i}", account=(CUSTOMER, CUSTOMER3)[i % 2], bucket=(i % 4 == 0))
    world.topup("topup:1", CUSTOMER3, 1_234_567)


def test_no_difference_before_during_and_after_flushing(world: World) -> None:
    some_traffic(world)
    report = check(world)                   # nothing flushed yet: all of it is pending
    assert report.ok, report.differences
    assert (report.accounts_checked, report.orders_checked) == (len(OPENING), 1)

    crash_flusher(world, "after_commit", consumer="gone")   # in PostgreSQL AND in the streams
    assert world.backlog() > 0
    assert check(world).ok

    f = world.flusher(claim_idle_ms=100)
    wait_for(lambda: (f.flush_all(), world.backlog() == 0)[1], what="the flush")
    report = check(world)
    assert report.ok, report.differences
    assert report.to_dict() == {"differences": [], "accounts_checked": len(OPENING),
                                "orders_checked": 1}


@pytest.mark.also_on_cluster
def test_exact_while_a_flusher_runs(world: World) -> None:
    for i in range(60):
        world.call(f"call-{i}", account=(CUSTOMER, CUSTOMER3)[i % 2], bucket=(i % 10 == 0))
    f = world.flusher(batch_size=2)          # many small commits while we compare
    stop = threading.Event()
    worker = threading.Thread(target=f.run, args=(stop,))
    worker.start()
    checks = 0
    try:
        while world.backlog() > 0:
            report = check(world)
            assert report.ok, report.differences
            checks += 1
    finally:
        stop.set()
        worker.join(10)
    assert checks > 0 and check(world).ok


@pytest.mark.also_on_cluster
def test_a_tampered_balance_is_reported(world: World) -> None:
    some_traffic(world)
    world.rds.hincrby(KS.account(world.tag(CUSTOMER), CUSTOMER), "bal", 7)
    pending_report = check(world, rechecks=1)          # before flushing: pending is counted
    (d,) = pending_report.differences
    assert (d.kind, d.account, d.difference) == ("account", CUSTOMER, 7)
    assert d.pending != 0 and d.redis == d.postgres + d.pending + 7

    f = world.flusher()
    f.flush_all()
    report = check(world, rechecks=1)
    expected_pg = OPENING[CUSTOMER] - 3 * 160_000       # 3 of CUSTOMER's 6 calls paid
    assert report.differences == [
        Difference("account", CUSTOMER, None, expected_pg + 7, expected_pg, 0, 7)]


def test_a_tampered_bucket_is_reported(world: World) -> None:
    some_traffic(world)                      # 3 package calls: 3 * 66 s of 600 used
    bucket = KS.bucket(world.tag(CUSTOMER), ORDER)
    world.rds.hincrby(bucket, "left", -5)
    (d,) = check(world).differences
    assert (d.kind, d.order, d.redis, d.postgres, d.pending, d.difference) == (
        "bucket", ORDER, 600 - 198 - 5, 600, -198, -5)
    world.flusher().flush_all()
    (d,) = check(world).differences
    assert (d.redis, d.postgres, d.pending, d.difference) == (600 - 198 - 5, 600 - 198, 0, -5)


def test_missing_keys_and_period_mismatch_are_reported(world: World) -> None:
    world.flusher().flush_all()
    world.rds.delete(KS.account(world.tag(RESELLER), RESELLER))
    world.rds.hset(KS.bucket(world.tag(CUSTOMER), ORDER), "period", 1)
    diffs = {d.kind: d for d in check(world).differences}
    assert diffs["account"].account == RESELLER and diffs["account"].redis is None
    assert diffs["account"].postgres == OPENING[RESELLER]
    assert (diffs["bucket_period"].redis, diffs["bucket_period"].postgres) == (1, 0)
    world.rds.delete(KS.bucket(world.tag(CUSTOMER), ORDER))
    (bucket,) = [d for d in check(world).differences if d.kind == "bucket"]
    assert bucket.redis is None and bucket.postgres == 600


@pytest.mark.also_on_cluster
@pytest.mark.parametrize("tamper", [False, True])
def test_rater_reconcile_command(world: World, tamper: bool) -> None:
    some_traffic(world)
    if tamper:
        world.rds.hincrby(KS.account(world.tag(CUSTOMER3), CUSTOMER3), "bal", -100)
    proc = _rater(world, "reconcile", "--json")
    out, err = proc.communicate(timeout=60)
    report = json.loads(out)
    assert set(report) == {"differences", "accounts_checked", "orders_checked"}
    assert report["accounts_checked"] == len(OPENING) and report["orders_checked"] == 1
    if tamper:
        assert proc.returncode == 1
        (d,) = report["differences"]
        assert (d["account"], d["difference"]) == (CUSTOMER3, -100)
        assert {"redis", "postgres", "pending", "difference", "order"} <= set(d)
    else:
        assert proc.returncode == 0, err
        assert report["differences"] == []
    text = _rater(world, "reconcile")
    out, _ = text.communicate(timeout=60)
    assert text.returncode == (1 if tamper else 0)
    assert ("difference -100" in out) == tamper
