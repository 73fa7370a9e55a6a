"""Ledger throughput: reserve+commit pairs per second against a local Redis, from one process.

    .venv/bin/python benchmarks/bench_ledger.py [--legs 20000] [--levels 2] [--repeats 3]

Every leg is authorized first (its plan stored in Redis), then gets one reservation and its
commit: the two scripts a call runs per debit interval and at its end. Modes:

- `greenlets N`: N greenlets (gevent, like the daemon's call workers), each running
  `Ledger.reserve` then `Ledger.commit` on its own legs, one script per round trip;
- `pipeline B`: batches of B EVALSHA reserves, then B commits, per round trip
  (redis-py pipeline, no MULTI), for comparison: the daemon does not batch.

Each figure is the median of `--repeats` runs over fresh legs. Redis CPU per script (the
server's own cost, what bounds the figure once the client is fast enough) comes from the
server's process times. Servers are private (rater.embedded) unless RATER_BENCH_REDIS_URL
is set.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # before redis is imported (DESIGN §12), as the daemon does

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common

import _common  # noqa: E402
import gevent  # noqa: E402
import redis  # noqa: E402
from _common import CpuMeter  # noqa: E402

from rater.config import RedisConfig  # noqa: E402
from rater.ledger.client import Ledger, effective_price_per_min  # noqa: E402
from rater.ledger.keys import KeySpace  # noqa: E402
from rater.rating.chain import LegPlan, LevelPlan  # noqa: E402
from rater.rating.tariff import Tariff, paid_cost_parts  # noqa: E402
from rater.redis_client import make_redis  # noqa: E402

SHARDS = 16
TREES = 64          # reseller trees the legs are spread over (hence shards)
RESERVE_TO = 60     # billed seconds held by the reservation
BILLED = 45         # billed seconds committed


def setup_accounts(client: redis.Redis, ks: KeySpace, levels: int) -> list[LegPlan]:
    """One plan per tree: a customer under `levels - 1` resellers, rich enough for anything."""
    plans = []
    tariff = Tariff(100_000, connect_fee_micros=10_000, init_inc=30, inc=6)
    paid_cost_parts(tariff)
    effective_price_per_min(tariff)
    pipe = client.pipeline(transaction=False)
    for t in range(TREES):
        accounts = [f"5{t:04d}{lv:05d}" for lv in range(levels)]
        tag = ks.tag(accounts[-1])
        for a in accounts:
            pipe.hset(ks.account(tag, a), mapping={"bal": 10**15, "held": 0, "ch": 0})
        plans.append(LegPlan(accounts[0], "outbound", "447700900123", tag, tuple(
            LevelPlan(a, f"rg-{i}", "447", "UK mobile", tariff, 0, 0, ())
            for i, a in enumerate(accounts))))
    pipe.execute()
    return plans


def authorize_all(ledger: Ledger, plans: list[LegPlan], legs: int, run: str,
                  workers: int = 64) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []

    def work(i0: int) -> None:
        for i in range(i0, legs, workers):
            uuid = f"{run}-{i:08d}"
            plan = plans[i % len(plans)]
            auth = ledger.authorize(uuid, plan, cap_seconds=14_400, caller="4420", node="fs1")
            assert auth.allowed, auth
            out.append((uuid, ledger.leg_keys(uuid, plan)))

    gevent.joinall([gevent.spawn(work, w) for w in range(workers)], raise_error=True)
    return out


def pairs_greenlets(ledger: Ledger, legs: list[tuple[str, list[str]]], n: int) -> float:
    def work(i0: int) -> None:
        for i in range(i0, len(legs), n):
            uuid, keys = legs[i]
            res = ledger.reserve(keys, 1, RESERVE_TO, 1_800_000_000_000_000)
            assert res.status == "ok", res
            done = ledger.commit(keys, uuid, BILLED, answered_usec=1_800_000_000_000_000,
                                 hangup_usec=1_800_000_045_000_000)
            assert done.ok, done

    start = time.perf_counter()
    gevent.joinall([gevent.spawn(work, w) for w in range(n)], raise_error=True)
    return len(legs) / (time.perf_counter() - start)


def pairs_pipelined(ledger: Ledger, client: redis.Redis, legs: list[tuple[str, list[str]]],
                    batch: int) -> float:
    scripts = ledger._scripts  # the same Lua, batched by hand
    reserve, commit = scripts["reserve"], scripts["commit"]
    start = time.perf_counter()
    for b in range(0, len(legs), batch):
        chunk = legs[b:b + batch]
        pipe = client.pipeline(transaction=False)
        for _uuid, keys in chunk:
            reserve(keys=keys, args=["o:r:1", RESERVE_TO, 1_800_000_000_000_000, 1], client=pipe)
        for r in pipe.execute():
            assert r.startswith(b"ok"), r
        pipe = client.pipeline(transaction=False)
        for uuid, keys in chunk:
            commit(keys=keys, args=["o:c", BILLED, int(time.time() * 1e6), "NORMAL_CLEARING",
                                    0, 1_800_000_000_000_000, 1_800_000_045_000_000, "final",
                                    86_400, uuid], client=pipe)
        for r in pipe.execute():
            assert r.startswith(b"ok"), r
    return len(legs) / (time.perf_counter() - start)


def server_cost(srv: _common.Servers, client: redis.Redis, fn,
                n: int) -> tuple[float, float, float]:
    """(Redis process CPU µs per item, its script execution µs per item (INFO
    commandstats, without the I/O), this process's CPU µs per item) of fn()."""
    client.config_resetstat()
    meter = CpuMeter({"redis": srv.redis_pid}).start()
    cpu = time.process_time()
    fn()
    py = time.process_time() - cpu
    meter.stop()
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return (1e6 * meter.used.get("redis", float("nan")) / n,
            stats.get("usec", float("nan")) / max(stats.get("calls", 1), 1), 1e6 * py / n)


def run(srv: _common.Servers, args: argparse.Namespace) -> dict:
    client = make_redis(RedisConfig(url=srv.redis_url, pool_size=256))
    ks = KeySpace(f"lb{int(time.time()) % 100000}", SHARDS)
    ledger = Ledger(client, ks, 3600)
    plans = setup_accounts(client, ks, args.levels)
    modes = [("greenlets", n) for n in args.greenlets] + [("pipeline", b) for b in args.batch]
    results: dict = {"legs": args.legs, "levels": args.levels, "modes": {}}
    # per-script server cost, measured once on fresh legs
    legs = authorize_all(ledger, plans, args.legs, "cost")
    keys = dict(legs)
    costs = {
        "authorize": server_cost(
            srv, client, lambda: authorize_all(ledger, plans, args.legs, "auth2", 1),
            args.legs),
        "reserve": server_cost(
            srv, client, lambda: [ledger.reserve(k, 1, RESERVE_TO) for _, k in legs],
            len(legs)),
        "commit": server_cost(
            srv, client, lambda: [ledger.commit(keys[u], u, BILLED) for u, _ in legs],
            len(legs)),
    }
    for i, name in enumerate(("redis_process_us", "redis_script_us", "client_us")):
        results[name] = {k: round(v[i], 1) for k, v in costs.items()}
    for mode, n in modes:
        rates = []
        for rep in range(args.repeats):
            legs = authorize_all(ledger, plans, args.legs, f"{mode}{n}r{rep}")
            if mode == "greenlets":
                rates.append(pairs_greenlets(ledger, legs, n))
            else:
                rates.append(pairs_pipelined(ledger, client, legs, n))
        results["modes"][f"{mode} {n}"] = round(statistics.median(rates))
    client.close()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--legs", type=int, default=20_000)
    ap.add_argument("--levels", type=int, default=2, help="accounts in each leg's chain")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--greenlets", type=int, nargs="*", default=[1, 8, 32, 128])
    ap.add_argument("--batch", type=int, nargs="*", default=[100])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with _common.servers() as srv:
        r = run(srv, args)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{r['legs']} legs per run, {r['levels']}-level chains, median of {args.repeats}")
    for mode, rate in r["modes"].items():
        print(f"  {mode:14s} {rate:>9,} reserve+commit pairs/s")
    for key, label in (("redis_script_us", "Redis, running the script"),
                       ("redis_process_us", "Redis process (script + I/O), 1 at a time"),
                       ("client_us", "this process, 1 at a time")):
        print(f"  µs per script, {label}: " + "  ".join(
            f"{k} {v}" for k, v in r[key].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
