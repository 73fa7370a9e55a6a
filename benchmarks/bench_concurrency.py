"""Concurrency: many live legs at once, each reserving the next 30 s while it talks.

    .venv/bin/python benchmarks/bench_concurrency.py [--legs 50000] [--cps 1000]
        [--hold 60] [--debit-interval 30]

The same processes as bench_e2e.py (simulator, `rater run`, `rater flush`). The simulator
places `--legs` calls at `--cps`; every call talks until all of them have been up together
for `--hold` seconds, then they all hang up. Reported:

- live legs at the peak, and the daemon's resident memory per live leg: what the second half
  of the legs added to the RSS, divided by their number (start-up, warm-up and the
  allocator's pools do not count; the plain (peak - idle) / legs is printed too);
- whether reservations kept up: during the hold, the reservations made against those due
  (each leg reserves its next chunk `reserve_ahead` before its paid time ends, every
  `debit_interval`), with no reservation refused or failed and no call cut off;
- the same end-of-run check as bench_e2e.py (every CDR, every balance, reconcile).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, bench_e2e, world

import _common
import bench_e2e as e2e
import psutil
import redis
from _common import http_get, prometheus_samples, servers, wait_for

from rater.ledger.keys import KeySpace


def reservations(mport: int) -> dict[str, float]:
    samples = prometheus_samples(http_get(f"http://127.0.0.1:{mport}/metrics"))
    return {k.split('"')[1]: v for k, v in samples.items()
            if k.startswith("rater_reservations_total{")}


def run(srv: _common.Servers, args: argparse.Namespace, workdir: Path) -> dict:
    world, cfg_paths, info = e2e.prepare(srv, args.accounts, args.deck, workdir,
                                        debit=args.debit_interval, ahead=args.reserve_ahead,
                                        flusher_in_daemon=False)
    cfg_path = cfg_paths[0]
    placing = args.legs / args.cps
    talk = placing + args.hold + 10  # the last call still has `hold` seconds together
    report = workdir / "calls.json"
    sim = e2e.start_simulator(workdir, info["esl_port"], args.cps, placing, f"{talk}:{talk}",
                              "0.05:0.1", report, ["--heartbeat", "20"])
    daemon = e2e.start_daemon(srv, cfg_path, workdir)
    flusher = e2e.start_flusher(srv, cfg_path, workdir)
    mport = info["metrics_port"]
    proc = psutil.Process(daemon.pid)
    result: dict = {"legs": args.legs, "cps": args.cps, "hold": args.hold,
                    "debit_interval": args.debit_interval}
    try:
        wait_for(lambda: e2e.health(mport).get("status") == "ok", 30, what="daemon healthy")
        rss_idle = proc.memory_info().rss
        # every leg placed and answered; on the way, RSS at half of them (the marginal cost
        # of a leg is what the second half added: start-up and warm-up excluded)
        half, rss_half, deadline = args.legs // 2, 0, time.monotonic() + placing + 120
        while (live := e2e.health(mport).get("live_legs", 0)) < args.legs:
            if not rss_half and live >= half:
                half, rss_half = live, proc.memory_info().rss
            if time.monotonic() > deadline:
                raise TimeoutError("not every leg went live")
            time.sleep(0.5)
        time.sleep(min(5.0, args.debit_interval))  # the last answers' first reservations
        t0, r0, wall0 = time.monotonic(), reservations(mport), time.time()
        cpu0 = proc.cpu_times()
        peak_rss = peak_legs = 0
        while time.monotonic() - t0 < args.hold:
            h = e2e.health(mport)
            peak_legs = max(peak_legs, h.get("live_legs", 0))
            peak_rss = max(peak_rss, proc.memory_info().rss)
            time.sleep(2.0)
        t1, r1, wall1 = time.monotonic(), reservations(mport), time.time()
        cpu1 = proc.cpu_times()
        wait_for(lambda: sim.poll() is not None, talk + 120, every=1.0, what="simulator done")
        rds = redis.Redis.from_url(srv.redis_url)
        streams = KeySpace(f"bench{world.run}", e2e.SHARDS).outboxes()
        wait_for(lambda: e2e.health(mport).get("live_legs") == 0
                 and sum(rds.xlen(s) for s in streams) == 0, 180, every=1.0,
                 what="daemon settled")
        rds.close()
        rss_settled = proc.memory_info().rss
        samples = prometheus_samples(http_get(f"http://127.0.0.1:{mport}/metrics"))
    finally:
        e2e.stop(sim)
        e2e.stop(daemon)
        e2e.stop(flusher)
    window = t1 - t0
    ok = r1.get("ok", 0) - r0.get("ok", 0)
    bad = sum(r1.get(k, 0) - r0.get(k, 0) for k in ("short", "refused", "error"))
    doc = json.loads(report.read_text())
    calls = [dict(zip(doc["fields"], row, strict=True)) for row in doc["calls"]]
    # reservations due in the window: each leg's next chunk at answer + n*interval - ahead
    step, lead = args.debit_interval, args.debit_interval - args.reserve_ahead
    due = 0
    for c in calls:
        answered = c["answered_us"] / 1e6
        if not answered:
            continue
        first = answered + lead
        n0 = max(0, -int(-(wall0 - first) // step))   # first k with due time >= wall0
        n1 = max(0, -int(-(wall1 - first) // step))   # first k with due time >= wall1
        due += max(0, n1 - n0)
    result.update({
        "peak_live_legs": peak_legs,
        "rss_idle_mb": round(rss_idle / 2**20, 1), "rss_peak_mb": round(peak_rss / 2**20, 1),
        "rss_settled_mb": round(rss_settled / 2**20, 1),
        "bytes_per_leg": round((peak_rss - rss_half) / max(peak_legs - half, 1)),
        "bytes_per_leg_vs_idle": round((peak_rss - rss_idle) / max(peak_legs, 1)),
        "reservations_in_window": ok, "reservations_due": due,
        "reservations_per_second": round(ok / window, 1),
        "expected_per_second": round(peak_legs / args.debit_interval, 1),
        "reservations_not_ok": bad,
        "cut_off": samples.get("rater_calls_cut_off_total", 0),
        "daemon_cpu_cores_during_hold": round(
            (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / window, 3),
        "calls_completed": doc["counters"]["completed"],
        "answered": doc["counters"]["answered"],
    })
    result["check"] = e2e.check(srv, world, calls, f"bench{world.run}")
    result["kept_up"] = bool(bad == 0 and result["cut_off"] == 0 and ok >= 0.98 * due)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--legs", type=int, default=50_000)
    ap.add_argument("--cps", type=float, default=1000)
    ap.add_argument("--hold", type=float, default=65, help="seconds with every leg live")
    ap.add_argument("--debit-interval", type=int, default=30)
    ap.add_argument("--reserve-ahead", type=float, default=5.0)
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--deck", type=int, default=20_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rater-conc-") as tmp, servers() as srv:
        r = run(srv, args, Path(tmp))
    if args.json:
        print(json.dumps(r))
        return 0 if r["check"]["ok"] else 1
    print(f"{r['legs']} legs placed at {r['cps']:g}/s, all live together for {r['hold']:g} s, "
          f"debit interval {r['debit_interval']} s")
    print(f"  peak live legs {r['peak_live_legs']}; daemon RSS idle {r['rss_idle_mb']} MB, "
          f"peak {r['rss_peak_mb']} MB, settled {r['rss_settled_mb']} MB")
    print(f"  memory per live leg: {r['bytes_per_leg']} bytes (what the second half of the "
          f"legs added), {r['bytes_per_leg_vs_idle']} bytes (peak - idle, warm-up included)")
    print(f"  reservations during the hold: {r['reservations_in_window']:.0f} made, "
          f"{r['reservations_due']} due ({r['reservations_per_second']}/s), not ok "
          f"{r['reservations_not_ok']:.0f}, cut off {r['cut_off']:.0f}, daemon CPU "
          f"{r['daemon_cpu_cores_during_hold']} cores -> "
          f"{'kept up' if r['kept_up'] else 'DID NOT KEEP UP'}")
    c = r["check"]
    print(f"  check: {c['calls_checked']} calls, {c['cdrs']} CDRs, {c['cdr_differences']} CDR "
          f"differences, {c['balance_differences']} balance differences, "
          f"{c['reconcile_differences']} reconcile differences -> "
          f"{'OK' if c['ok'] else 'FAILED'}")
    for p in c["problems"]:
        print(f"    {p}")
    return 0 if c["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
