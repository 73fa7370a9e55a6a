"""The ASTPP-style baseline, driven by the same simulated load as bench_e2e.py.

    .venv/bin/python benchmarks/bench_astpp.py [--cps 25 50 100] [--duration 20]

What ASTPP does on FreeSWITCH, reduced to its database work: at call setup, one SQL
longest-prefix query per level of the chain on the rates table,

    SELECT ... FROM rates WHERE rate_group_id = $1 AND direction = 'outbound'
      AND $2 LIKE prefix || '%' ORDER BY length(prefix) DESC LIMIT 1

(the same `rates` table and rows the rater's snapshot is built from), a balance read, then
the same `uuid_setvar_multi` + `uuid_transfer`; at hangup, the CDR inserted and a balance
`UPDATE` per level, in PostgreSQL, in one transaction. No reservation while the call runs
(ASTPP has none: concurrent calls can overspend).

The client is a small gevent process (`--client`) using the rater's own Event Socket
connection and dispatcher, so the comparison is between the two designs of the money path,
not between ESL parsers. For each `--cps` it reports the same figures as bench_e2e.py, and
whether the load was sustained (every call transferred and billed, p99 within `--p99-ms`).
Servers are private (rater.embedded) unless RATER_BENCH_* are set.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--client" in sys.argv:
    from gevent import monkey

    monkey.patch_all()  # the client process: before psycopg is imported

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, bench_e2e, world

import _common
import psycopg
from _common import PYTHON, CpuMeter, percentile, servers

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS astpp;
DROP TABLE IF EXISTS astpp.balances, astpp.cdrs;
CREATE TABLE astpp.balances (account text PRIMARY KEY, parent text, rate_group_id bigint,
                             balance bigint NOT NULL);
CREATE TABLE astpp.cdrs (uuid text PRIMARY KEY, account text NOT NULL, destination text,
                         billed_seconds integer NOT NULL, cost bigint NOT NULL,
                         recorded_at timestamptz NOT NULL DEFAULT now());
INSERT INTO astpp.balances (account, parent, rate_group_id, balance)
    SELECT a.number, a.parent, a.rate_group_id, COALESCE(sum(l.amount), 0)
    FROM accounts a LEFT JOIN ledger_entries l ON l.account = a.number
    GROUP BY a.number, a.parent, a.rate_group_id;
"""
RATE_SQL = """
    SELECT prefix, price_per_min, connect_fee, init_inc, inc FROM rates
    WHERE rate_group_id = %s AND direction = 'outbound' AND %s LIKE prefix || '%%'
    ORDER BY length(prefix) DESC LIMIT 1"""


# --- the client (its own process) ---------------------------------------------------------

def client_main(esl_port: int, db_url: str, pool_size: int) -> int:
    import math

    import gevent
    import gevent.event
    import gevent.queue

    from rater.esl import commands
    from rater.esl.connection import EslConnection
    from rater.esl.dispatch import KeyedDispatcher

    pool: gevent.queue.Queue = gevent.queue.Queue()
    for _ in range(pool_size):
        pool.put(psycopg.connect(db_url, autocommit=False))
    legs: dict[str, list[tuple[str, tuple]]] = {}  # uuid -> [(account, rate row)] per level
    cmd = EslConnection("127.0.0.1", esl_port, "ClueCon", name="astpp/commands", events=())

    def cost(rate: tuple, billed: int) -> int:
        _prefix, ppm, fee, init, inc = rate
        if billed <= 0:
            return 0
        charged = init + -(-max(0, billed - init) // inc) * inc
        return fee + (2 * ppm * charged + 60) // 120  # half-up of ppm * charged / 60

    def park(uuid: str, ev) -> None:
        cmd.wait_ready(10)
        account = ev.variable("accountcode")
        destination = ev.variable("rater_destination") or ev.destination_number
        conn = pool.get()
        try:
            chain = []
            who = account
            while who:  # the account, then each reseller up the tree
                parent, group, balance = conn.execute(
                    "SELECT parent, rate_group_id, balance FROM astpp.balances "
                    "WHERE account = %s", (who,)).fetchone()
                rate = conn.execute(RATE_SQL, (group, destination)).fetchone()
                chain.append((who, rate, balance))
                who = parent
            conn.commit()
        finally:
            pool.put(conn)
        legs[uuid] = [(who, rate) for who, rate, _ in chain]
        ppm = max(chain[0][1][1], 1)
        max_seconds = min(14_400, math.floor(chain[0][2] * 60 / ppm))
        setvars, transfer = cmd.api_many([
            commands.uuid_setvar_multi(uuid, {"rater_max_seconds": str(max_seconds)}),
            commands.uuid_transfer(uuid, destination, "rated")])
        transfer.result()
        setvars.result()

    def hangup(uuid: str, ev) -> None:
        levels = legs.pop(uuid, None)
        if levels is None:
            return
        billed = -(-(ev.billmsec or 0) // 1000)
        conn = pool.get()
        try:
            costs = [cost(rate, billed) for _, rate in levels]
            conn.execute("INSERT INTO astpp.cdrs (uuid, account, destination, billed_seconds, "
                         "cost) VALUES (%s, %s, %s, %s, %s)",
                         (uuid, levels[0][0], ev.destination_number, billed, costs[0]))
            for (who, _), c in zip(levels, costs, strict=True):
                conn.execute("UPDATE astpp.balances SET balance = balance - %s "
                             "WHERE account = %s", (c, who))
            conn.commit()
        finally:
            pool.put(conn)

    def handle(item) -> None:
        uuid, ev = item
        if ev.name == "CHANNEL_PARK":
            park(uuid, ev)
        elif ev.name == "CHANNEL_HANGUP_COMPLETE":
            hangup(uuid, ev)

    dispatcher = KeyedDispatcher(handle, lambda item: item[0], max_workers=1024)
    events = EslConnection(
        "127.0.0.1", esl_port, "ClueCon", name="astpp/events",
        events=("CHANNEL_PARK", "CHANNEL_HANGUP_COMPLETE"),
        on_event=lambda ev: dispatcher.submit((ev.unique_id, ev)))
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    runners = [gevent.spawn(cmd.run), gevent.spawn(events.run)]
    stop.wait()
    dispatcher.close(5.0)
    events.stop()
    cmd.stop()
    gevent.killall(runners, timeout=2)
    return 0


# --- the driver -----------------------------------------------------------------------------

def run_level(srv: _common.Servers, cps: float, args: argparse.Namespace, workdir: Path,
              world, info: dict) -> dict:
    import bench_e2e as e2e

    with psycopg.connect(srv.database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    report = workdir / f"calls-{cps:g}.json"
    sim = e2e.start_simulator(workdir, info["esl_port"], cps, args.duration, args.talk,
                              args.answer_after, report)
    log = open(workdir / "astpp.log", "ab")  # noqa: SIM115 - the child's
    client = subprocess.Popen(
        [PYTHON, __file__, "--client", "--esl-port", str(info["esl_port"]), "--db",
         srv.database_url, "--pool", str(args.pool)],
        stdout=log, stderr=subprocess.STDOUT, cwd=_common.ROOT)
    meter = CpuMeter({"baseline": client.pid, "postgres": srv.postgres_pid}).start()
    try:
        sim.wait(args.duration + 240)
    finally:
        cpu = meter.stop()
        time.sleep(1.0)
        client.send_signal(signal.SIGTERM)
        client.wait(30)
        e2e.stop(sim)
    doc = json.loads(report.read_text())
    calls = [dict(zip(doc["fields"], row, strict=True)) for row in doc["calls"]]
    c = doc["counters"]
    waits = [(x["transferred_us"] - x["parked_us"]) / 1000 for x in calls if x["transferred_us"]]
    with psycopg.connect(srv.database_url) as conn:
        cdrs = dict(conn.execute("SELECT uuid, cost FROM astpp.cdrs").fetchall())
    wrong = sum(1 for x in calls if x["answered_us"] and cdrs.get(x["uuid"]) != world.costs(
        x["account"], x["destination"], -(-x["billmsec"] // 1000))[0][1])
    placing = doc["placing_ended_at"] - doc["started_at"]
    result = {
        "cps_target": cps, "calls_placed": c["placed"], "answered": c["answered"],
        "abandoned": c["abandoned"], "cps_placed": round(c["placed"] / placing, 1),
        "decision_ms_p50": round(percentile(waits, 50), 2),
        "decision_ms_p99": round(percentile(waits, 99), 2),
        "decision_ms_max": round(max(waits, default=float("nan")), 2),
        "cdrs": len(cdrs), "cdr_differences": wrong,
        "cpu_cores": {**{k: round(v, 2) for k, v in cpu.items()},
                      "simulator": round(doc["cpu_seconds"]
                                         / (doc["finished_at"] - doc["started_at"]), 2)},
    }
    result["sustained"] = bool(c["answered"] == c["placed"] and wrong == 0
                               and len(cdrs) == c["placed"]
                               and result["decision_ms_p99"] <= args.p99_ms)
    return result


def run(srv: _common.Servers, args: argparse.Namespace, workdir: Path) -> dict:
    import bench_e2e as e2e

    world, _cfg, info = e2e.prepare(srv, args.accounts, args.deck, workdir, debit=1, ahead=0.5)
    with psycopg.connect(srv.database_url, autocommit=True) as conn:
        conn.execute("ANALYZE rates")
    levels = []
    for cps in args.cps:
        r = run_level(srv, cps, args, workdir, world, info)
        levels.append(r)
        if not r["sustained"] and not args.all_levels:
            break
    best = max((r["cps_placed"] for r in levels if r["sustained"]), default=0.0)
    return {"deck": args.deck, "accounts": args.accounts, "duration": args.duration,
            "talk": args.talk, "levels": levels, "max_sustained_cps": best}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--esl-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--pool", type=int, default=8, help="PostgreSQL connections of the client")
    ap.add_argument("--cps", type=float, nargs="+", default=[25, 50, 100, 200])
    ap.add_argument("--all-levels", action="store_true", help="go on after a failed level")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--talk", default="1.2:1.8")
    ap.add_argument("--answer-after", default="0.05:0.1")
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--deck", type=int, default=20_000)
    ap.add_argument("--p99-ms", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.client:
        return client_main(args.esl_port, args.db, args.pool)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryDirectory(prefix="rater-astpp-") as tmp, servers() as srv:
        r = run(srv, args, Path(tmp))
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"ASTPP-style baseline: deck {r['deck']} prefixes x 3 groups, {r['accounts']} "
          f"accounts, {r['duration']:g} s per level, talk {r['talk']} s")
    for x in r["levels"]:
        print(f"  {x['cps_target']:>6g} calls/s: placed {x['calls_placed']}, answered "
              f"{x['answered']}, CDRs {x['cdrs']} ({x['cdr_differences']} wrong); park->decision "
              f"p50 {x['decision_ms_p50']} ms p99 {x['decision_ms_p99']} ms; CPU "
              f"{x['cpu_cores']} -> {'sustained' if x['sustained'] else 'NOT sustained'}")
    print(f"  max sustained: {r['max_sustained_cps']:g} calls/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
