"""Package renewals on real PostgreSQL and Redis: billing types across month ends and leap
years, catch-up, both release settings, chains, crash replay, and renewal races between
threads and between processes (charged exactly once).

The world is test_lifecycle's plus a few products (all admin's, no setup fee unless said):

    Monthly 2   monthly, 2.00, 10 free minutes
    Every 10    recurring every 10 days, 1.00 (buy cost 0.50); RM sells at 1.50, RMM at 2.00
    Once 10     one_time for 10 days, 0.50
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis

from rater.config import Config
from rater.packages import store
from rater.packages.context import Env, open_env
from rater.packages.orders import place_order
from rater.packages.renewals import renew_due, run_renewals
from tests.test_lifecycle import (
    CA,
    CM,
    CMM,
    KS,
    RM,
    RMM,
    UK,
    WORLD,
    M,
    balance,
    bucket,
    ledger_entries,
    load_world,
    outbox,
    product,
    set_balance,
    top_of,
)

REPO = Path(__file__).resolve().parents[1]
EXTRA = [
    product("Monthly 2", billing_type="monthly", price="2.00", setup_fee="0", free_minutes=10),
    product("Every 10", billing_days=10, buy_cost="0.50", price="1.00", setup_fee="0"),
    product("Once 10", billing_type="one_time", billing_days=10, price="0.50", setup_fee="0"),
]
RENEWAL_WORLD = {
    **WORLD,
    "products": WORLD["products"] + EXTRA,
    "reseller_products": [*WORLD["reseller_products"],
                          {"reseller": RM, "product": "Every 10", "price": "1.50"},
                          {"reseller": RMM, "product": "Every 10", "price": "2.00"}],
}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def world(cfg: Config, rds: redis.Redis) -> None:
    load_world(cfg, rds, RENEWAL_WORLD)


@pytest.fixture
def env(cfg: Config) -> Iterator[Env]:
    with open_env(cfg) as e:
        yield e


def row(pg: psycopg.Connection, order_id: str) -> store.OrderRow:
    found = store.order(pg, order_id)
    assert found is not None
    return found


def ops(rds: redis.Redis) -> list[str]:
    return [op["id"] for op in outbox(rds)]


# --- billing types ---------------------------------------------------------------------------

def test_recurring_renews_every_billing_days_across_a_leap_day(
    world: None, env: Env, cfg: Config, rds: redis.Redis, pg: psycopg.Connection,
):
    place_order(env, CA, UK, now=utc("2028-02-01T00:00"), order_id="ord-r")
    rds.hincrby(KS.bucket(KS.tag(CA), "ord-r"), "left", -1200)   # 20 minutes used
    assert run_renewals(cfg, utc("2028-02-28T23:59")).renewed == []
    summary = renew_due(env, utc("2028-02-29T00:00"))
    assert summary.renewed == [("ord-r", 1)]
    o = row(pg, "ord-r")
    # 28 days from Feb 1 of a leap year: Feb 29, then Mar 28
    assert (o.period_no, o.period_start, o.period_end, o.used_seconds) == (
        1, utc("2028-02-29T00:00"), utc("2028-03-28T00:00"), 0)
    assert bucket(rds, CA, "ord-r") == {"left": "6000", "cap": "6000", "period": "1",
                                         "held": "0"}
    # 6.00 at the order (5.00 + setup 1.00), 5.00 at the renewal, no setup again
    assert balance(rds, CA) == 100 * M - 6 * M - 5 * M
    assert ledger_entries(rds)["order:ord-r:p1:0:price"] == (CA, -5 * M)
    assert "order:ord-r:p1:0:setup" not in ledger_entries(rds)


@pytest.mark.parametrize("ordered, steps", [
    # leap year: Jan 31 -> Feb 29 -> Mar 31 -> Apr 30, anchored on the 31st
    ("2028-01-31T10:00", [("2028-02-29T10:00", "2028-03-31T10:00"),
                          ("2028-03-31T10:00", "2028-04-30T10:00"),
                          ("2028-04-30T10:00", "2028-05-31T10:00")]),
    # common year: Jan 31 -> Feb 28 -> Mar 31
    ("2027-01-31T10:00", [("2027-02-28T10:00", "2027-03-31T10:00"),
                          ("2027-03-31T10:00", "2027-04-30T10:00")]),
    # Feb 29 -> Mar 29 -> ... -> Feb 28 of the next year
    ("2028-02-29T00:00", [("2028-03-29T00:00", "2028-04-29T00:00")]),
])
def test_monthly_renews_on_the_order_day(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection, ordered: str,
    steps: list[tuple[str, str]],
):
    place_order(env, CA, "Monthly 2", now=utc(ordered), order_id="ord-m")
    for n, (start, end) in enumerate(steps, start=1):
        before = utc(start) - timedelta(seconds=1)
        assert renew_due(env, before).renewed == []                 # not due a second early
        assert renew_due(env, utc(start)).renewed == [("ord-m", n)]
        o = row(pg, "ord-m")
        assert (o.period_no, o.period_start, o.period_end) == (n, utc(start), utc(end))
    assert balance(rds, CA) == 100 * M - 2 * M * (1 + len(steps))  # 2.00 per period


def test_monthly_year_end_from_the_29th_of_february(
    world: None, env: Env, pg: psycopg.Connection,
):
    place_order(env, CA, "Monthly 2", now=utc("2028-02-29T00:00"), order_id="ord-f")
    renew_due(env, utc("2029-03-01T00:00"))                  # 12 periods caught up
    o = row(pg, "ord-f")
    assert (o.period_no, o.period_start, o.period_end) == (
        12, utc("2029-02-28T00:00"), utc("2029-03-29T00:00"))


def test_one_time_is_released_at_its_end_without_charge(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
):
    place_order(env, CA, "Once 10", now=utc("2028-01-01T00:00"), order_id="ord-o")
    assert renew_due(env, utc("2028-01-10T23:59")).released == []
    summary = renew_due(env, utc("2028-01-12T00:00"))
    assert summary.released == [("ord-o", "expired")] and summary.renewed == []
    o = row(pg, "ord-o")
    assert (o.status, o.end_reason, o.ended_at) == ("released", "expired",
                                                    utc("2028-01-11T00:00"))
    assert bucket(rds, CA, "ord-o") == {}
    assert balance(rds, CA) == 100 * M - 500_000                  # only the order's 0.50
    assert ops(rds) == ["order:ord-o:p0", "release:ord-o"]
    assert outbox(rds)[1]["ledger"] == []
    assert renew_due(env, utc("2028-03-01T00:00")).released == []  # once


def test_catch_up_charges_every_missed_period_in_order(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
):
    place_order(env, CA, "Every 10", now=utc("2028-01-01T00:00"), order_id="ord-c")
    summary = renew_due(env, utc("2028-02-05T00:00"))
    # periods start Jan 11, Jan 21, Jan 31; the next (Feb 10) is not due yet
    assert summary.renewed == [("ord-c", 1), ("ord-c", 2), ("ord-c", 3)]
    assert ops(rds) == ["order:ord-c:p0", "order:ord-c:p1", "order:ord-c:p2", "order:ord-c:p3"]
    o = row(pg, "ord-c")
    assert (o.period_no, o.period_start, o.period_end) == (
        3, utc("2028-01-31T00:00"), utc("2028-02-10T00:00"))
    assert balance(rds, CA) == 100 * M - 4 * M                    # 4 periods of 1.00
    assert [c.price for c in store.period_charges(pg, "ord-c", 3)] == [M]


# --- chains and funds ------------------------------------------------------------------------

def test_renewal_charges_each_level_its_price_without_setup(
    world: None, env: Env, rds: redis.Redis,
):
    place_order(env, CMM, UK, now=utc("2028-01-01T00:00"), order_id="ord-k")
    renew_due(env, utc("2028-01-29T00:00"))
    p1 = {k: v for k, v in ledger_entries(rds).items() if ":p1:" in k}
    # CMM pays RMM's 8.00, RMM pays RM's 6.00, RM pays the buy cost 3.00
    assert p1 == {"order:ord-k:p1:0:price": (CMM, -8 * M),
                  "order:ord-k:p1:1:price": (RMM, -6 * M),
                  "order:ord-k:p1:2:price": (RM, -3 * M)}


@pytest.mark.parametrize("short", [CM, RM])
def test_short_of_funds_releases_when_release_if_no_balance(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection, short: str,
):
    pg.execute("UPDATE products SET email_notification = true")
    place_order(env, CM, UK, now=utc("2028-01-01T00:00"), order_id="ord-s")
    set_balance(rds, short, 2 * M)          # CM needs 6.00, RM 3.00
    before = {a: balance(rds, a) for a in (CM, RM)}
    summary = renew_due(env, utc("2028-01-30T00:00"))
    assert summary.released == [("ord-s", "no_balance")]
    o = row(pg, "ord-s")
    assert (o.status, o.end_reason, o.ended_at, o.period_no) == (
        "released", "no_balance", utc("2028-01-29T00:00"), 0)
    assert {a: balance(rds, a) for a in (CM, RM)} == before      # nothing charged
    assert bucket(rds, CM, "ord-s") == {}
    assert ops(rds) == ["order:ord-s:p0", "release:ord-s"]
    note = outbox(rds)[1]["extra"]["notifications"][0]
    assert (note["id"], note["account"], note["kind"], note["payload"]["reason"]) == (
        "release:ord-s", CM, "release", "no_balance")


def test_short_of_funds_renews_into_debt_when_not_releasing(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
):
    pg.execute("UPDATE products SET release_if_no_balance = false, email_notification = true")
    place_order(env, CM, UK, now=utc("2028-01-01T00:00"), order_id="ord-d")
    set_balance(rds, CM, 1 * M)
    set_balance(rds, RM, 0)
    summary = renew_due(env, utc("2028-01-29T00:00"))
    assert summary.renewed == [("ord-d", 1)]
    assert balance(rds, CM) == 1 * M - 6 * M      # -5.00, below the prepaid floor of 0
    assert balance(rds, RM) == -3 * M
    assert row(pg, "ord-d").status == "active"
    note = outbox(rds)[1]["extra"]["notifications"][0]
    assert (note["id"], note["kind"], note["payload"]["price_micros"]) == (
        "order:ord-d:p1", "renewal", 6 * M)


def test_a_product_made_inactive_is_released_at_its_period_end(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
):
    place_order(env, CM, UK, now=utc("2028-01-01T00:00"), order_id="ord-i")
    pg.execute("UPDATE products SET status = 'inactive'")
    assert renew_due(env, utc("2028-01-29T00:00")).released == [("ord-i", "product_inactive")]
    # a suspension, by contrast, does not stop a renewal
    pg.execute("UPDATE products SET status = 'active'")
    place_order(env, RM, UK, now=utc("2028-01-01T00:00"), order_id="ord-j")
    pg.execute("UPDATE accounts SET status = 'suspended' WHERE number = %s", (RM,))
    assert renew_due(env, utc("2028-01-29T00:00")).renewed == [("ord-j", 1)]


# --- exactly once ----------------------------------------------------------------------------

def test_a_crash_before_the_commit_replays_as_a_no_op(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
):
    place_order(env, CM, UK, now=utc("2028-01-01T00:00"), order_id="ord-x")
    real = store.set_period
    calls = []

    def crash(*args, **kwargs):
        calls.append(args)
        raise redis.ConnectionError("lost the connection mid-way")

    monkeypatch.setattr(store, "set_period", crash)
    summary = renew_due(env, utc("2028-01-29T00:00"))
    assert [o for o, _ in summary.failed] == ["ord-x"]
    assert row(pg, "ord-x").period_no == 0                 # rolled back in PostgreSQL
    assert balance(rds, CM) == 100 * M - 7_500_000 - 6 * M  # charged in Redis

    monkeypatch.setattr(store, "set_period", real)
    assert renew_due(env, utc("2028-01-29T00:01")).renewed == [("ord-x", 1)]
    assert row(pg, "ord-x").period_no == 1
    assert balance(rds, CM) == 100 * M - 7_500_000 - 6 * M  # still once
    assert ops(rds) == ["order:ord-x:p0", "order:ord-x:p1"]


RACE_ORDERS = [(CA, "ord-1"), (CM, "ord-2"), (CMM, "ord-3")]


def _race_world(env: Env) -> None:
    for account, oid in RACE_ORDERS:
        place_order(env, account, "Every 10", now=utc("2028-01-01T00:00"), order_id=oid)


def _assert_charged_once(rds: redis.Redis, pg: psycopg.Connection) -> None:
    # 3 periods due each (Jan 11, 21, 31); one ledger entry per level per period
    entries = ledger_entries(rds)                    # raises on a duplicate id
    for account, oid in RACE_ORDERS:
        levels = {CA: 1, CM: 2, CMM: 3}[account]
        for n in (1, 2, 3):
            for level in range(levels):
                assert f"order:{oid}:p{n}:{level}:price" in entries
        assert row(pg, oid).period_no == 3
    renewal_ops = [i for i in ops(rds) if not i.endswith(":p0")]
    assert len(renewal_ops) == len(set(renewal_ops)) == 9
    # 4 periods each: CA 1.00; CMM 2.00, RMM 1.50, RM 0.50 (buy cost) for CMM and CM's
    # orders, CM 1.50
    assert balance(rds, CA) == 100 * M - 4 * M
    assert balance(rds, CM) == 100 * M - 4 * 1_500_000
    assert balance(rds, CMM) == 100 * M - 4 * 2_000_000
    assert balance(rds, RMM) == 100 * M - 4 * 1_500_000
    assert balance(rds, RM) == 100 * M - 2 * 4 * 500_000


def test_renewal_race_between_threads_charges_once(
    world: None, env: Env, cfg: Config, rds: redis.Redis, pg: psycopg.Connection,
):
    _race_world(env)
    now = utc("2028-02-05T00:00")
    barrier = threading.Barrier(4)
    results, errors = [], []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(run_renewals(cfg, now))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 4
    renewed = sorted(r for s in results for r in s.renewed)
    assert renewed == sorted((oid, n) for _, oid in RACE_ORDERS for n in (1, 2, 3))
    assert all(not s.failed for s in results)
    _assert_charged_once(rds, pg)


@pytest.mark.also_on_cluster
def test_renewal_race_between_processes_charges_once(
    world: None, env: Env, cfg: Config, rds: redis.Redis, pg: psycopg.Connection,
):
    _race_world(env)
    environ = {**os.environ, "RATER_DATABASE_URL": cfg.database.url,
               "RATER_REDIS_URL": cfg.redis.url}
    cmd = [sys.executable, "-m", "rater.cli", "renew", "--now", "2028-02-05T00:00:00Z",
           "--json", "--config", str(REPO / "config" / "rater.toml")]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=environ, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    renewed = sorted((r["order"], r["period_no"])
                     for out, _ in outputs for r in json.loads(out)["renewed"])
    assert renewed == sorted((oid, n) for _, oid in RACE_ORDERS for n in (1, 2, 3))
    _assert_charged_once(rds, pg)


def test_top_of_helper_matches_the_database(world: None, pg: psycopg.Connection):
    for a in RENEWAL_WORLD["accounts"]:
        assert store.account_path(pg, a["number"])[-1].number == top_of(a["number"])
