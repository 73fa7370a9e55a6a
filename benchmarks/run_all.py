"""The benchmark suite: every stage, one table.

    .venv/bin/python benchmarks/run_all.py            # the full suite (about 40 minutes)
    .venv/bin/python benchmarks/run_all.py --quick    # a smoke run of every stage (~1 min)
    .venv/bin/python benchmarks/run_all.py --only esl lookup --json results.json

Each stage is its own script (bench_*.py, runnable alone, `--help` for its options), run
here as a child process with `--json`; this collects the answers and prints the table. One
pair of private servers (rater.embedded) serves every stage, unless RATER_BENCH_REDIS_URL
and RATER_BENCH_DATABASE_URL are set (then they must be scratch servers). Figures are
medians over repeated runs inside each stage; ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

HERE = Path(__file__).resolve().parent

# stage -> (script, full-run arguments, --quick arguments)
STAGES: dict[str, tuple[str, list[str], list[str]]] = {
    "ratedeck": ("bench_ratedeck_import.py", ["--rows", "1000000", "--repeats", "3"],
                 ["--rows", "20000"]),
    "esl": ("bench_esl_parse.py", ["--repeats", "7"], ["--repeats", "1"]),
    "lookup": ("bench_lookup.py", ["--distinct", "--repeats", "5"],
               ["--distinct", "--prefixes", "60000", "--repeats", "1"]),
    "ledger": ("bench_ledger.py", ["--legs", "20000", "--repeats", "3"],
               ["--legs", "1000", "--repeats", "1", "--greenlets", "8", "--batch", "100"]),
    "flusher": ("bench_flusher.py", ["--legs", "200000", "--flushers", "1", "--repeats", "3"],
                ["--legs", "3000", "--repeats", "1"]),
    "e2e": ("bench_e2e.py", ["--cps", "1000", "--duration", "60", "--repeats", "3",
                             "--flusher", "separate",
                             "--ramp", "300", "400", "500", "600", "700", "800"],
            ["--cps", "50", "--duration", "3", "--accounts", "100", "--deck", "500",
             "--flusher", "separate"]),
    "concurrency": ("bench_concurrency.py", ["--legs", "50000", "--cps", "1000", "--hold", "65"],
                    ["--legs", "200", "--cps", "200", "--hold", "2", "--debit-interval", "2",
                     "--reserve-ahead", "1", "--accounts", "100", "--deck", "500"]),
    "astpp": ("bench_astpp.py", ["--cps", "25", "50", "75", "100", "150", "--duration", "30"],
              ["--cps", "20", "--duration", "3", "--accounts", "100", "--deck", "500"]),
}


def run_stage(name: str, quick: bool, env: dict[str, str]) -> dict:
    script, full, short = STAGES[name]
    cmd = [sys.executable, str(HERE / script), *(short if quick else full), "--json"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=_common.ROOT)
    took = time.monotonic() - started
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        return {"error": (proc.stderr or proc.stdout).strip()[-2000:], "seconds": round(took)}
    result = json.loads(proc.stdout.strip().splitlines()[-1])  # --json: the last line
    result["seconds"] = round(took)
    return result


def table(results: dict[str, dict]) -> list[str]:
    """One line per figure: stage, figure, value, goal."""
    rows: list[tuple[str, str, str, str]] = []
    r = results.get("ratedeck")
    if r and "error" not in r:
        for label, seconds in r["pass_seconds"].items():
            rows.append(("Rate deck", f"import {r['rows']:,} rows, {label}",
                         f"{seconds:.1f} s ({r['rows'] / seconds:,.0f} rows/s)",
                         "< 60 s" if label.startswith("fresh") else ""))
    r = results.get("esl")
    if r and "error" not in r:
        for label in ("daemon", "fields", "all"):
            h = r[label]
            rows.append(("ESL parse", f"CHANNEL_HANGUP_COMPLETE ({r['event_bytes']} B), "
                         f"reads: {label}",
                         f"{h['ours_us']} µs vs stock {h['stock_us']} µs = {h['ratio']}x",
                         ">= 8x" if label == "daemon" else ""))
    r = results.get("lookup")
    if r and "error" not in r:
        rows.append(("Lookup", f"longest prefix, {r['prefixes']:,} prefixes"
                     f"{' (all distinct)' if r.get('distinct') else ''}, cold",
                     f"{r['rate_lookups_per_second_cold']:,.0f} /s", ">= 300,000/s"))
        rows.append(("Lookup", "same, warm", f"{r['rate_lookups_per_second']:,.0f} /s", ""))
        rows.append(("Lookup", "resolve_leg, 3 levels", f"{r['resolve_leg_per_second']:,.0f} /s",
                     ""))
        rows.append(("Lookup", "snapshot build / size / load / RSS",
                     f"{r['build_seconds']:.1f} s / {r['blob_mb']:.1f} MB / "
                     f"{r['load_seconds_median'] * 1000:.0f} ms / "
                     f"+{r['rss_after_load_mb'] - r['rss_before_load_mb']:.0f} MB", ""))
    r = results.get("ledger")
    if r and "error" not in r:
        for mode, rate in r["modes"].items():
            rows.append(("Ledger", f"reserve+commit pairs, {mode}", f"{rate:,} /s",
                         ">= 10,000/s"))
        rows.append(("Ledger", "Redis µs per script (authorize/reserve/commit)",
                     " / ".join(str(v) for v in r["redis_script_us"].values()), ""))
    r = results.get("flusher")
    if r and "error" not in r:
        rows.append(("Flusher", f"CDRs/s, {r['flushers']} flusher, batch {r['batch_size']}",
                     f"{r['cdrs_per_second']:,} /s ({r['rows_per_second']:,} rows/s)",
                     ">= 50,000/s"))
        rows.append(("Flusher", "CPU µs per CDR: flusher / PostgreSQL",
                     f"{r['python_us_per_cdr']} / {r['postgres_us_per_cdr']}", ""))
    r = results.get("e2e")
    if r and "error" not in r:
        c = r["check"]
        rows.append(("End to end", f"calls/s, {r['duration']:g} s, "
                     f"{r['reservations_per_call']} reservations/call, flusher "
                     f"{r['flusher']}",
                     f"{r['cps_placed']:g} /s ({'sustained' if r['sustained'] else 'NOT'} "
                     f"sustained)", ">= 1,000/s"))
        rows.append(("End to end", f"park -> decision p50 / p99 at {r['cps_target']:g}/s "
                     "(simulator side, median run)",
                     f"{r['decision_ms_p50']} / {r['decision_ms_p99']} ms "
                     f"(runs: {', '.join(str(x['decision_ms_p99']) for x in r['runs'])})",
                     "p99 <= 20 ms"))
        best = r.get("max_sustained")
        if "ramp" in r:
            rows.append(("End to end", "highest rate with p99 <= 20 ms (median of runs)",
                         "none" if best is None else
                         f"{best['cps_placed']:g} /s: p50 {best['decision_ms_p50']} / p99 "
                         f"{best['decision_ms_p99']} ms", ""))
        rows.append(("End to end", "differences (CDRs, balances, reconcile)",
                     f"{c['cdr_differences'] + c['missing_cdrs']} / "
                     f"{c['balance_differences']} / {c['reconcile_differences']}", "0"))
        rows.append(("End to end", "CPU, cores", ", ".join(
            f"{k} {v}" for k, v in r["cpu_cores"].items()), ""))
    r = results.get("astpp")
    if r and "error" not in r:
        rows.append(("ASTPP-style", "max calls/s with p99 <= 20 ms",
                     f"{r['max_sustained_cps']:g} /s", ""))
        e = results.get("e2e")
        if e and "error" not in e and r["max_sustained_cps"]:
            best = e.get("max_sustained") or (e if e["sustained"] else None)
            if best is not None:
                rows.append(("ASTPP-style", "ratio: rater / baseline (sustained calls/s)",
                             f"{best['cps_placed'] / r['max_sustained_cps']:.1f}x", ""))
    r = results.get("concurrency")
    if r and "error" not in r:
        rows.append(("Concurrency", f"live legs, debit every {r['debit_interval']} s",
                     f"{r['peak_live_legs']:,} ({'kept up' if r['kept_up'] else 'NOT'})",
                     ">= 50,000"))
        rows.append(("Concurrency", "daemon memory per live leg",
                     f"{r['bytes_per_leg']:,} B", "<= 2 KB"))
    for name, res in results.items():
        if "error" in res:
            rows.append((name, "FAILED", res["error"].splitlines()[-1][:80], ""))
    widths = [max(len(row[i]) for row in [*rows, ("stage", "figure", "value", "goal")])
              for i in range(4)]
    line = " | ".join
    out = [line(h.ljust(w) for h, w in zip(("stage", "figure", "value", "goal"), widths,
                                          strict=True)),
           line("-" * w for w in widths)]
    out += [line(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run of every stage")
    ap.add_argument("--only", nargs="+", choices=list(STAGES), default=list(STAGES))
    ap.add_argument("--json", type=Path, help="also write every stage's result here")
    args = ap.parse_args()
    env = dict(os.environ)
    results: dict[str, dict] = {}
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    with _common.servers() as srv:
        env["RATER_BENCH_REDIS_URL"] = srv.redis_url
        env["RATER_BENCH_DATABASE_URL"] = srv.database_url
        for name, pid in (("REDIS", srv.redis_pid), ("POSTGRES", srv.postgres_pid)):
            if pid:
                env[f"RATER_BENCH_{name}_PID"] = str(pid)
        for name in args.only:
            print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
            results[name] = run_stage(name, args.quick, env)
    machine = _common.machine()
    print(f"rater benchmark suite{' (--quick)' if args.quick else ''}: {started}")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    print()
    for line in table(results):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "started": started,
                                         "quick": args.quick, "results": results}, indent=2))
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
