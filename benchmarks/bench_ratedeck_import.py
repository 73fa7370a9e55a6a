"""Rate-deck import throughput: generate a large CSV deck and time `import_rate_deck_file`.

    .venv/bin/python benchmarks/bench_ratedeck_import.py [--rows 1000000]

Runs against a private PostgreSQL (rater.embedded) unless RATER_BENCH_DATABASE_URL is set;
there it migrates the schema, works in a scratch rate group and deletes it afterwards.
Three passes over the same deck: a fresh group (all inserts), the same deck again (all
rows unchanged) and the deck again with --replace.
"""

from __future__ import annotations

import argparse
import os
import random
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


def run(url: str, deck: Path, rows: int) -> None:
    group = f"bench-{os.getpid()}-{int(time.time())}"
    with psycopg.connect(url) as conn:
        migrate(conn)
        conn.execute("INSERT INTO rate_groups (name) VALUES (%s)", (group,))
        conn.commit()
        try:
            for label, replace in (("fresh group (insert)", False),
                                   ("same deck again (unchanged)", False),
                                   ("same deck with --replace", True)):
                t0 = time.perf_counter()
                summary = import_rate_deck_file(conn, group, deck, replace=replace)
                seconds = time.perf_counter() - t0
                print(f"{label:30s} {rows:>9,d} rows  {seconds:6.2f} s  "
                      f"{rows / seconds:>10,.0f} rows/s  {summary}", flush=True)
        finally:
            conn.rollback()
            conn.execute("DELETE FROM rate_groups WHERE name = %s", (group,))
            conn.commit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rater-bench-") as tmp:
        deck = Path(tmp) / "deck.csv"
        t0 = time.perf_counter()
        write_deck(deck, args.rows)
        print(f"generated {args.rows:,d} rows ({deck.stat().st_size / 1e6:.1f} MB) "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)
        url = os.environ.get("RATER_BENCH_DATABASE_URL")
        if url:
            run(url, deck, args.rows)
        else:
            with EmbeddedServers() as servers:
                run(servers.postgres.url, deck, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
