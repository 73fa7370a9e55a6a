"""Rating snapshot at scale: build, size, load, memory and lookup rate.

    .venv/bin/python benchmarks/bench_lookup.py [--prefixes 1000000] [--groups 6] [--json]

Builds a snapshot of `--prefixes` random E.164-like rate prefixes spread over `--groups`
rate groups (every group prices the same destinations, as rate decks do, plus a small
inbound deck), with a 3-level reseller chain customer -> R2 -> R1 whose customer holds two
packages. The load and the lookups run in a fresh child process (like a daemon that only
loads), so its resident memory is not inflated by the build.

Prints: build time (rows -> blob, no PostgreSQL), blob size, load time (`from_bytes`,
median), resident memory of the child before and after the load, `snap.rate(...)` lookups/s
cold (fresh numbers each run, the snapshot's answer caches emptied: every answer built from
the columns) and warm (the same numbers again), and `resolve_leg(...)` resolutions/s on the
3-level chain (medians of `--repeats`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loader.snapshot import ReferenceData, encode_snapshot
from rater.ledger.keys import KeySpace
from rater.rating.chain import LegPlan, resolve_leg
from rater.rating.snapshot import Snapshot

COUNTRY_CODES = (
    "1", "7", "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44",
    "45", "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
    "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95",
    "98", "212", "213", "216", "218", "220", "221", "233", "234", "254", "255", "256", "263",
    "351", "352", "353", "354", "355", "358", "359", "370", "371", "372", "373", "374", "375",
    "380", "381", "385", "386", "420", "421", "852", "853", "855", "856", "880", "886", "960",
    "961", "962", "963", "964", "965", "966", "971", "972", "973", "974", "975", "976", "977",
)
KINDS = ("Fixed", "Mobile", "Premium", "Special")
SHARDS = 16
CUSTOMER, R2, R1 = "2000000001", "1000000002", "1000000001"
LOOKUPS = 200_000


def make_reference(n_prefixes: int, n_groups: int, seed: int,
                   distinct: bool = False) -> ReferenceData:
    """Rate groups 1..n_groups over the same destinations; the chain pays groups 3, 2, 1.

    `distinct`: the worst case for size, every rate with its own price and destination name.
    """
    rng = random.Random(seed)
    per_group = n_prefixes // n_groups
    base: dict[str, tuple[str, int]] = {}
    while len(base) < per_group:
        cc = rng.choice(COUNTRY_CODES)
        prefix = cc + str(rng.randrange(10**7)).zfill(7)[: rng.choice((1, 2, 3, 3, 4, 4, 5, 6))]
        if prefix not in base:
            name = f"Country {cc} {KINDS[rng.randrange(len(KINDS))]}"
            base[prefix] = (name, rng.choice((500, 1000, 2500, 5000, 12_000, 40_000, 150_000)))
    groups = [(g, f"group-{g}", (g % 3) * 500, None) for g in range(1, n_groups + 1)]

    def rates():
        for g in range(1, n_groups + 1):
            factor = 100 + 10 * g
            for prefix, (name, price) in base.items():
                if distinct:
                    name, price = f"{name} {g}/{prefix}", rng.randrange(1, 10**6)
                yield (g, "outbound", prefix, name, price * factor // 100, 0, 0,
                       rng.choice((1, 1, 30, 60)), rng.choice((1, 6, 60)))
            yield (g, "outbound", "", "Rest of world", 500_000, 0, 0, 60, 60)
            for cc in COUNTRY_CODES:
                yield (g, "inbound", cc, f"DID {cc}", 1000 * g, 0, 0, 1, 1)

    accounts = [
        (R1, None, "reseller", "margin", "prepaid", 0, 1, 0, "active"),
        (R2, R1, "reseller", "commission", "prepaid", 0, 2, 0, "active"),
        (CUSTOMER, R2, "customer", None, "postpaid", 10_000_000, 3, 10, "active"),
    ]
    accounts += [(str(3000000000 + i), R2, "customer", None, "prepaid", 0, 3, 0, "active")
                 for i in range(10_000)]
    now = int(time.time())
    return ReferenceData(
        version=1, rate_groups=groups, accounts=accounts, rates=rates(),
        blocked=[(1, "8819"), (2, "979")],
        dids=[(f"1555{i:07d}", CUSTOMER) for i in range(1000)],
        products=[(1, "UK 100", None, "outbound", 100, "active"),
                  (2, "World 10", None, "both", 10, "active")],
        product_prefixes=[(1, "44"), (2, "")],
        orders=[("o-1", CUSTOMER, 1, 0, now - 86400, now + 86400 * 29),
                ("o-2", CUSTOMER, 2, 0, now - 86400, now + 86400 * 29)],
    )


def queries(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(COUNTRY_CODES) + str(rng.randrange(10**9, 10**10)) for _ in range(n)]


def rate_per_second(fn, items: list[str], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(items)
        rates.append(len(items) / (time.perf_counter() - start))
    return statistics.median(rates)


def child(blob_path: str, repeats: int) -> dict:
    """The daemon's side: load the blob, then look up."""
    import psutil

    proc = psutil.Process()
    gc.collect()
    rss_before = proc.memory_info().rss
    blob = Path(blob_path).read_bytes()
    loads = []
    for _ in range(repeats):
        start = time.perf_counter()
        snap = Snapshot.from_bytes(blob)
        loads.append(time.perf_counter() - start)
        if _ < repeats - 1:
            del snap
    del blob
    gc.collect()
    rss_after = proc.memory_info().rss

    numbers = queries(LOOKUPS, seed=99)
    rate = snap.rate

    def lookups(items: list[str]) -> None:
        for number in items:
            rate(3, "outbound", number)

    def cold_rate() -> float:
        """Fresh numbers every run and the snapshot's caches emptied first: every answer
        is built from the columns (the worst case, with --distinct above all)."""
        rates = []
        for r in range(repeats):
            items = queries(LOOKUPS, seed=1000 + r)
            snap._match_cache.clear()
            snap._tariff_cache.clear()
            start = time.perf_counter()
            lookups(items)
            rates.append(len(items) / (time.perf_counter() - start))
        return statistics.median(rates)

    now = time.time()

    def resolutions(items: list[str]) -> None:
        for number in items:
            resolve_leg(snap, CUSTOMER, "outbound", number, now)

    sample = resolve_leg(snap, CUSTOMER, "outbound", "447700900123", now)
    assert isinstance(sample, LegPlan) and len(sample.levels) == 3, sample
    assert [len(lv.buckets) for lv in sample.levels] == [2, 0, 0], sample
    hits = sum(rate(3, "outbound", n) is not None for n in numbers[:10_000])
    return {
        "load_seconds_median": statistics.median(loads),
        "rss_before_load_mb": rss_before / 2**20,
        "rss_after_load_mb": rss_after / 2**20,
        "rate_lookups_per_second_cold": cold_rate(),
        "rate_lookups_per_second": rate_per_second(lookups, numbers, repeats),
        "resolve_leg_per_second": rate_per_second(resolutions, numbers[:50_000], repeats),
        "lookup_hit_ratio": hits / 10_000,
        "counts": snap.counts(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--distinct", action="store_true",
                        help="worst case: every rate has its own price and destination name")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.repeats)))
        return 0

    ref = make_reference(args.prefixes, args.groups, args.seed, args.distinct)
    start = time.perf_counter()
    blob = encode_snapshot(ref, KeySpace(shards=SHARDS))
    build = time.perf_counter() - start
    del ref
    with tempfile.NamedTemporaryFile(suffix=".snap", delete=False) as f:
        f.write(blob)
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", f.name, "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True,
        ).stdout
    finally:
        os.unlink(f.name)
    result = {"prefixes": args.prefixes, "groups": args.groups, "distinct": args.distinct,
              "build_seconds": build,
              "blob_mb": len(blob) / 1e6, **json.loads(out)}
    if args.json:
        print(json.dumps(result))
        return 0
    counts = result["counts"]
    print(f"rates in snapshot      {counts['rates']:,} in {args.groups} groups "
          f"({counts['rate_records']:,} distinct (price, terms, name) records, "
          f"{counts['terms']:,} terms, {counts['destinations']:,} destination names)")
    print(f"build (rows -> blob)   {build:.2f} s")
    print(f"blob size              {result['blob_mb']:.1f} MB")
    print(f"load (from_bytes)      {result['load_seconds_median'] * 1000:.0f} ms (median)")
    print(f"RSS before / after     {result['rss_before_load_mb']:.0f} MB / "
          f"{result['rss_after_load_mb']:.0f} MB")
    print(f"snap.rate() cold       {result['rate_lookups_per_second_cold']:,.0f} lookups/s "
          "(new numbers each run, caches emptied)")
    print(f"snap.rate() warm       {result['rate_lookups_per_second']:,.0f} lookups/s "
          f"(the same {LOOKUPS:,} numbers again; hit ratio {result['lookup_hit_ratio']:.2f})")
    print(f"resolve_leg (3 levels) {result['resolve_leg_per_second']:,.0f} legs/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
