"""Redis Cluster: ledger throughput from 1, 2 and 3 processes, Redis CPU per script, and
memory per account, per live leg and per finished leg, on a private cluster.

    .venv/bin/python benchmarks/bench_cluster.py [--legs 6000] [--processes 1 2 3] [--json]

The cluster is the tests' (tests/redis_cluster.py): three primaries and three replicas on
loopback. Each process (a daemon's ledger, without the daemon) authorizes its own legs over
64 account trees, then runs reserve + commit for each with 32 greenlets: the scripts a call
runs per debit interval and at its end. The figure is all processes' pairs divided by the
wall time from the common start to the last one done. One process on the single private
Redis is run too, for comparison.

Redis CPU per script is the primaries' `INFO commandstats` (EVALSHA time inside Redis,
without I/O), and their process CPU per script with I/O. Memory is `used_memory` summed over
the primaries before and after creating accounts and legs. These are the per-operation costs
the README's capacity model is built from; end-to-end calls/s with several daemons come from
`bench_e2e.py --redis cluster --daemons N`.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, bench_ledger

import _common  # noqa: E402
import redis  # noqa: E402
from _common import PYTHON, CpuMeter  # noqa: E402
from bench_ledger import authorize_all, pairs_greenlets, setup_accounts  # noqa: E402

from rater.config import RedisConfig  # noqa: E402
from rater.ledger.client import Ledger  # noqa: E402
from rater.ledger.keys import KeySpace  # noqa: E402
from rater.redis_client import make_redis  # noqa: E402

SHARDS = 16
GREENLETS = 32


def worker(url: str, prefix: str, legs: int, run: str, start_at: float) -> dict:
    """One process: authorize `legs`, wait for the common start, reserve + commit them."""
    client = make_redis(RedisConfig(url=url, pool_size=128))
    ks = KeySpace(prefix, SHARDS)
    ledger = Ledger(client, ks, 3600)
    plans = setup_accounts(client, ks, 2)
    mine = authorize_all(ledger, plans, legs, run)
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    cpu = time.process_time()
    pairs_greenlets(ledger, mine, GREENLETS)
    done = time.time()
    client.close()
    return {"started": started, "done": done, "pairs": len(mine),
            "client_cpu_us_per_pair": round(1e6 * (time.process_time() - cpu) / len(mine), 1)}


def processes(url: str, n: int, legs: int, tag: str) -> dict:
    """`n` worker processes at once; pairs/s over the wall time they took together."""
    prefix = f"bc{tag}{int(time.time()) % 100000}"
    start_at = time.time() + 3 + 1.5 * n  # time for each to authorize its legs first
    procs = [subprocess.Popen(
        [PYTHON, __file__, "--worker", url, prefix, str(legs), f"w{i}", str(start_at)],
        stdout=subprocess.PIPE, text=True, cwd=_common.ROOT) for i in range(n)]
    out = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    wall = max(o["done"] for o in out) - min(o["started"] for o in out)
    pairs = sum(o["pairs"] for o in out)
    return {"processes": n, "pairs": pairs, "pairs_per_second": round(pairs / wall),
            "client_cpu_us_per_pair": round(
                sum(o["client_cpu_us_per_pair"] for o in out) / n, 1)}


def primaries(client: redis.RedisCluster) -> list[redis.Redis]:
    return [n.redis_connection for n in client.get_primaries()]


def script_costs(url: str, pids: dict[str, int], legs: int) -> dict:
    """Redis time per script (inside Redis / whole process) over the cluster's primaries."""
    client = make_redis(RedisConfig(url=url, pool_size=128))
    ks = KeySpace(f"bcc{int(time.time()) % 100000}", SHARDS)
    ledger = Ledger(client, ks, 3600)
    plans = setup_accounts(client, ks, 2)
    out = {}
    state: dict = {}

    def authorize() -> None:
        state["legs"] = authorize_all(ledger, plans, legs, "cost", 32)

    def reserve() -> None:
        for _, keys in state["legs"]:
            ledger.reserve(keys, 1, 60)

    def commit() -> None:
        for uuid, keys in state["legs"]:
            ledger.commit(keys, uuid, 45)

    for name, fn in (("authorize", authorize), ("reserve", reserve), ("commit", commit)):
        for node in primaries(client):
            node.config_resetstat()
        meter = CpuMeter(pids).start()
        fn()
        used = meter.stop()
        inside = calls = 0
        for node in primaries(client):
            stat = node.info("commandstats").get("cmdstat_evalsha", {})
            inside += stat.get("usec", 0)
            calls += stat.get("calls", 0)
        out[name] = {"inside_us": round(inside / max(calls, 1), 1),
                     "process_us": round(1e6 * sum(used.values()) / legs, 1)}
    client.close()
    return out


def memory(url: str, count: int) -> dict:
    """Bytes per account, per live leg (authorized, 2-level chain) and per finished leg
    (committed; kept `leg_ttl_seconds` so a replay stays a no-op), over the primaries."""
    client = make_redis(RedisConfig(url=url, pool_size=128))

    def used() -> int:
        return sum(int(node.info("memory")["used_memory"]) for node in primaries(client))

    ks = KeySpace(f"bcm{int(time.time()) % 100000}", SHARDS)
    ledger = Ledger(client, ks, 3600)
    before = used()
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        acct = f"7{i:09d}"
        pipe.hset(ks.account(ks.tag(acct), acct), mapping={"bal": 10**12, "held": 0, "ch": 0})
        if i % 1000 == 999:
            pipe.execute()
            pipe = client.pipeline(transaction=False)
    pipe.execute()
    accounts = used()
    plans = setup_accounts(client, ks, 2)
    base = used()
    legs = authorize_all(ledger, plans, count, "mem", 32)
    for _, keys in legs:
        ledger.reserve(keys, 1, 60)
    live = used()
    for uuid, keys in legs:
        ledger.commit(keys, uuid, 45)
    # the outbox entries are the flusher's to delete: count the legs alone
    for stream in ks.outboxes():
        client.delete(stream)
    finished = used()
    client.close()
    return {"account_bytes": round((accounts - before) / count),
            "live_leg_bytes": round((live - base) / count),
            "finished_leg_bytes": round((finished - base) / count)}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, prefix, legs, run, start_at = sys.argv[2:7]
        print(json.dumps(worker(url, prefix, int(legs), run, float(start_at))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--legs", type=int, default=6000, help="legs per process")
    ap.add_argument("--processes", type=int, nargs="*", default=[1, 2, 3])
    ap.add_argument("--memory-legs", type=int, default=10_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result: dict = {}
    with _common.servers() as srv:
        result["single_redis"] = processes(srv.redis_url, 1, args.legs, "s")
        with _common.with_cluster(srv) as csrv:
            result["cluster"] = [processes(csrv.redis_url, n, args.legs, f"c{n}")
                                 for n in args.processes]
            result["script_costs"] = script_costs(csrv.redis_url, csrv.redis_pids or {},
                                                  args.legs)
            result["memory"] = memory(csrv.redis_url, args.memory_legs)
    if args.json:
        print(json.dumps(result))
        return 0
    s = result["single_redis"]
    print(f"single Redis, 1 process: {s['pairs_per_second']} reserve+commit pairs/s "
          f"(client CPU {s['client_cpu_us_per_pair']} µs/pair)")
    for c in result["cluster"]:
        print(f"cluster, {c['processes']} process(es): {c['pairs_per_second']} pairs/s "
              f"(client CPU {c['client_cpu_us_per_pair']} µs/pair per process)")
    for name, c in result["script_costs"].items():
        print(f"Redis per {name}: {c['inside_us']} µs inside, {c['process_us']} µs of Redis "
              f"process CPU (all six nodes, replication included)")
    m = result["memory"]
    print(f"memory: {m['account_bytes']} B per account, {m['live_leg_bytes']} B per live leg, "
          f"{m['finished_leg_bytes']} B per finished leg (kept leg_ttl_seconds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
