"""Flusher throughput: fill the outbox streams with N commit entries, flush them into
PostgreSQL and report CDR rows per second.

    .venv/bin/python benchmarks/bench_flusher.py [--legs 200000] [--batch-size 5000]
                                                 [--flushers 1]

Runs against private servers (rater.embedded) unless RATER_BENCH_DATABASE_URL and
RATER_BENCH_REDIS_URL are set; there it migrates the schema, uses its own key prefix, and
deletes what it wrote afterwards (streams and rows whose ids start with the run's tag).

Entries are built exactly like commit.lua builds them: a CDR, 2-3 charge levels (customer
and one or two resellers), one ledger entry per paying level and, for one leg in five,
package usage. Legs are spread over many reseller trees, hence over every shard's stream.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, world

import _common
import psycopg
import redis
from _common import CpuMeter

from loader.migrate import migrate
from rater.config import FlusherConfig, mask_url
from rater.flusher import Flusher
from rater.ledger.keys import KeySpace

SHARDS = 16
TREES = 2000


def make_entry(rnd: random.Random, run: str, n: int, at_usec: int) -> tuple[str, str]:
    """(top-level account, entry JSON) of one committed leg."""
    tree = rnd.randrange(TREES)
    top = f"1{tree:09d}"
    levels = [f"2{tree:05d}{rnd.randrange(10_000):04d}"]
    if rnd.random() < 0.5:
        levels.append(f"3{tree:09d}")            # a sub-reseller: 3 levels
    levels.append(top)
    uuid = f"{run}-{n:09d}-7d1c-4b0e-9f5a-1c2d3e4f5a6b"
    billed = rnd.randrange(1, 1800)
    charged = 30 + -(-max(0, billed - 30) // 6) * 6
    free = charged if rnd.random() < 0.2 else 0
    price = [100_000, 60_000, 40_000]
    charges, ledger = [], []
    for lvl, acct in enumerate(levels):
        ppm = price[lvl]
        paid = charged - free if lvl == 0 else billed
        cost = 0 if paid == 0 else 50_000 + (ppm * paid * 2 + 60) // 120
        charges.append({"level": lvl, "account": acct, "rate_group": f"rg-{lvl}-{tree}",
                        "prefix": "447", "price_per_min": ppm, "charged_seconds": charged
                        if lvl == 0 else billed, "free_seconds": free if lvl == 0 else 0,
                        "cost": cost})
        if cost:
            ledger.append({"id": f"call:{uuid}:{lvl}", "account": acct, "amount": -cost,
                           "kind": "call", "ref": uuid})
    usage = [{"order": f"{run}-ord-{tree}", "account": levels[0], "period": 0,
              "seconds": free}] if free else []
    hangup = at_usec - rnd.randrange(1_000_000)
    doc = {
        "op": "commit", "id": uuid, "at": at_usec,
        "cdr": {"uuid": uuid, "account": levels[0], "direction": "outbound",
                "caller": f"4420{rnd.randrange(10**7):07d}",
                "destination": f"4477{rnd.randrange(10**8):08d}", "node": "fs1",
                "created_usec": hangup - (billed + 5) * 1_000_000,
                "answered_usec": hangup - billed * 1_000_000, "hangup_usec": hangup,
                "billed_seconds": billed, "hangup_cause": "NORMAL_CLEARING",
                "settlement": "final", "total_cost": charges[0]["cost"]},
        "charges": charges, "usage": usage, "ledger": ledger,
    }
    return top, json.dumps(doc, separators=(",", ":"))


def fill(client: redis.Redis, ks: KeySpace, run: str, legs: int) -> int:
    """XADD `legs` commit entries; returns the bytes written."""
    rnd = random.Random(7)
    at = int(time.time() * 1_000_000)
    size = 0
    pipe = client.pipeline(transaction=False)
    for n in range(legs):
        top, doc = make_entry(rnd, run, n, at + n)
        size += len(doc)
        pipe.xadd(ks.outbox(ks.tag(top)), {"e": doc})
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    return size


def flush_worker(redis_url: str, db_url: str, prefix: str, batch: int, name: str,
                 ready: mp.Barrier, out: mp.Queue) -> None:
    ks = KeySpace(prefix, SHARDS)
    f = Flusher(redis.Redis.from_url(redis_url), lambda: psycopg.connect(db_url), ks,
                FlusherConfig(batch_size=batch, block_ms=1), name)
    f.outbox.ensure_groups()
    ready.wait()
    started = time.perf_counter()
    cpu = time.process_time()
    f.flush_all()
    out.put((name, time.perf_counter() - started, f.stats.entries, f.stats.cdrs,
             sum(f.stats.rows.values()), time.process_time() - cpu))
    f.close()


def run_bench(srv: _common.Servers, legs: int, batch: int, flushers: int) -> dict:
    redis_url, db_url = srv.redis_url, srv.database_url
    run = f"b{os.getpid()}x{int(time.time()) % 100000}"
    prefix = f"bench{run}"
    ks = KeySpace(prefix, SHARDS)
    client = redis.Redis.from_url(redis_url)
    with psycopg.connect(db_url) as conn:
        migrate(conn)
        # package usage needs orders to add to; one per tree
        conn.execute("INSERT INTO rate_groups (name) VALUES (%s) ON CONFLICT DO NOTHING",
                     (f"{run}-rg",))
        rg = conn.execute("SELECT id FROM rate_groups WHERE name = %s", (f"{run}-rg",)
                          ).fetchone()[0]
        prod = conn.execute("INSERT INTO products (name, free_minutes) VALUES (%s, 1000000) "
                            "RETURNING id", (f"{run}-pkg",)).fetchone()[0]
        owner = f"9{os.getpid() % 10**9:09d}"     # orders need an account to belong to
        conn.execute("INSERT INTO accounts (number, kind, rate_group_id) "
                     "VALUES (%s, 'customer', %s)", (owner, rg))
        with conn.cursor().copy("COPY orders (id, account, product_id, ordered_at, period_no, "
                                "period_start, period_end) FROM STDIN") as cp:
            for t in range(TREES):
                cp.write_row((f"{run}-ord-{t}", owner, prod, "2026-01-01", 0, "2026-01-01",
                              "2036-01-01"))
        conn.commit()

    print(f"redis {mask_url(redis_url)}  postgres {mask_url(db_url)}")
    t = time.perf_counter()
    size = fill(client, ks, run, legs)
    print(f"filled {legs} commit entries ({size / legs:.0f} bytes each) in "
          f"{time.perf_counter() - t:.1f} s")

    ctx = mp.get_context("fork")
    ready, out = ctx.Barrier(flushers), ctx.Queue()
    procs = [ctx.Process(target=flush_worker, args=(redis_url, db_url, prefix, batch,
                                                    f"bench-{i}", ready, out))
             for i in range(flushers)]
    meter = CpuMeter({"postgres": srv.postgres_pid, "redis": srv.redis_pid}).start()
    for p in procs:
        p.start()
    results = [out.get(timeout=3600) for _ in procs]
    meter.stop()
    for p in procs:
        p.join()
    wall = max(r[1] for r in results)
    entries = sum(r[2] for r in results)
    cdrs = sum(r[3] for r in results)
    rows = sum(r[4] for r in results)
    left = sum(client.xlen(s) for s in ks.outboxes())
    with psycopg.connect(db_url) as conn:
        in_db = conn.execute("SELECT count(*) FROM cdrs WHERE uuid LIKE %s",
                             (f"{run}-%",)).fetchone()[0]
    python_cpu = sum(r[5] for r in results)
    result = {
        "legs": legs, "batch_size": batch, "flushers": flushers, "seconds": round(wall, 2),
        "cdrs_per_second": round(cdrs / wall), "rows_per_second": round(rows / wall),
        "rows_per_cdr": round(rows / max(cdrs, 1), 2),
        "python_us_per_cdr": round(1e6 * python_cpu / max(cdrs, 1), 1),
        "postgres_us_per_cdr": round(1e6 * meter.used.get("postgres", float("nan"))
                                     / max(cdrs, 1), 1),
        "redis_us_per_cdr": round(1e6 * meter.used.get("redis", float("nan")) / max(cdrs, 1),
                                  1),
    }
    print(f"flushed {entries} entries with {flushers} flusher(s), batch {batch}: "
          f"{cdrs} CDRs, {rows} rows in {wall:.2f} s")
    print(f"  {cdrs / wall:,.0f} CDR rows/s   {rows / wall:,.0f} rows/s (all tables)")
    print(f"  CPU per CDR: flusher (Python) {result['python_us_per_cdr']} us, PostgreSQL "
          f"{result['postgres_us_per_cdr']} us, Redis {result['redis_us_per_cdr']} us")
    assert left == 0 and in_db == legs, (left, in_db)

    for s in ks.outboxes():
        client.delete(s)
    with psycopg.connect(db_url) as conn:
        # no cascade from cdrs (loader/migrations/0005_perf.sql): children first
        conn.execute("DELETE FROM cdr_charges WHERE cdr_uuid LIKE %s", (f"{run}-%",))
        conn.execute("DELETE FROM package_usage WHERE cdr_uuid LIKE %s", (f"{run}-%",))
        conn.execute("DELETE FROM cdrs WHERE uuid LIKE %s", (f"{run}-%",))
        conn.execute("DELETE FROM ledger_entries WHERE ref LIKE %s", (f"{run}-%",))
        conn.execute("DELETE FROM orders WHERE id LIKE %s", (f"{run}-%",))
        conn.execute("DELETE FROM products WHERE name = %s", (f"{run}-pkg",))
        conn.execute("DELETE FROM accounts WHERE rate_group_id = %s", (rg,))
        conn.execute("DELETE FROM rate_groups WHERE id = %s", (rg,))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--legs", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--flushers", type=int, default=1, help="flusher processes at once")
    ap.add_argument("--repeats", type=int, default=1, help="runs; the median one is reported")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with _common.servers() as srv:
        runs = [run_bench(srv, args.legs, args.batch_size, args.flushers)
                for _ in range(args.repeats)]
    runs.sort(key=lambda r: r["cdrs_per_second"])
    result = {**runs[len(runs) // 2], "runs_cdrs_per_second": [r["cdrs_per_second"] for r in runs]}
    if args.repeats > 1:
        print(f"median of {args.repeats} runs: {result['cdrs_per_second']:,} CDR rows/s "
              f"(runs: {result['runs_cdrs_per_second']})")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
