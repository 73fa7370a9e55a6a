"""Rate-deck import throughput: generate a large CSV deck and time `import_rate_deck_file`.

    .venv/bin/python benchmarks/bench_ratedeck_import.py [--rows 1000000] [--repeats 3] [--json]

Runs against a private PostgreSQL (rater.embedded) unless RATER_BENCH_DATABASE_URL is set;
there it migrates the schema, works in a scratch rate group and deletes it afterwards.
Three passes over the same deck: a fresh group (all inserts), the same deck again (all
rows unchanged) and the deck again with --replace; each pass's figure is the median of
`--repeats` runs, each in its own scratch group.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from loader.migrate import migrate
from loader.ratedeck import import_rate_deck_file
from rater.embedded import EmbeddedServers

COUNTRIES = [("44", "United Kingdom", "GB"), ("1", "United States", "US"),
             ("49", "Germany", "DE"), ("33", "France", "FR"), ("34", "Spain", "ES"),
             ("39", "Italy", "IT"), ("61", "Australia", "AU"), ("91", "India", "IN")]


def write_deck(path: Path, rows: int, seed: int = 7) -> None:
    """A realistic deck: unique prefixes under a few country codes, 4-decimal prices."""
    rnd = random.Random(seed)
    with path.open("w", newline="") as f:
        f.write("prefix,destination,country,call_type,direction,price_per_min,connect_fee,"
                "included_seconds,init_inc,inc\n")
        for i in range(rows):
            cc, name, iso = COUNTRIES[i % len(COUNTRIES)]
            mobile = i % 3 == 0
            prefix = f"{cc}{i // len(COUNTRIES):07d}"
            price = f"0.{rnd.randrange(50, 3000):04d}"
            fee = "0.0100" if i % 5 == 0 else "0"
            inc = "30,6" if i % 2 else "1,1"
            f.write(f"{prefix},{name} {'Mobile' if mobile else 'Fixed'},{iso},"
                    f"{'mobile' if mobile else 'fixed'},outbound,{price},{fee},0,{inc}\n")


PASSES = (("fresh group (insert)", False), ("same deck again (unchanged)", False),
          ("same deck with --replace", True))


def run(url: str, deck: Path, rows: int) -> dict[str, float]:
    """One run of the three passes in a scratch group: seconds per pass."""
    seconds_by_pass: dict[str, float] = {}
    group = f"bench-{os.getpid()}-{time.time_ns()}"
    with psycopg.connect(url) as conn:
        migrate(conn)
        conn.execute("INSERT INTO rate_groups (name) VALUES (%s)", (group,))
        conn.commit()
        try:
            for label, replace in PASSES:
                t0 = time.perf_counter()
                summary = import_rate_deck_file(conn, group, deck, replace=replace)
                seconds = time.perf_counter() - t0
                print(f"{label:30s} {rows:>9,d} rows  {seconds:6.2f} s  "
                      f"{rows / seconds:>10,.0f} rows/s  {summary}", file=sys.stderr, flush=True)
                seconds_by_pass[label] = seconds
        finally:
            conn.rollback()
            conn.execute("DELETE FROM rate_groups WHERE name = %s", (group,))
            conn.commit()
    return seconds_by_pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the result as JSON, last")
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="rater-bench-") as tmp:
        deck = Path(tmp) / "deck.csv"
        t0 = time.perf_counter()
        write_deck(deck, args.rows)
        print(f"generated {args.rows:,d} rows ({deck.stat().st_size / 1e6:.1f} MB) "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        url = os.environ.get("RATER_BENCH_DATABASE_URL")
        if url:
            runs = [run(url, deck, args.rows) for _ in range(args.repeats)]
        else:
            with EmbeddedServers() as servers:
                runs = [run(servers.postgres.url, deck, args.rows) for _ in range(args.repeats)]
    result = {"rows": args.rows, "repeats": args.repeats,
              "pass_seconds": {label: round(statistics.median(r[label] for r in runs), 2)
                          for label, _ in PASSES}}
    print(f"median of {args.repeats}: " + ", ".join(
        f"{label} {sec} s" for label, sec in result["pass_seconds"].items()))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
