"""A real FreeSWITCH with and without rating: what the rater adds to each call.

    RATER_TEST_FREESWITCH=127.0.0.1:8021 RATER_TEST_FREESWITCH_CONF=/path/to/conf \\
    RATER_TEST_SIPP=/path/to/sipp .venv/bin/python benchmarks/bench_freeswitch.py \\
        [--cps 20] [--duration 30] [--calls N] [--hold 2] [--media] [--repeats 1] [--json]

The switch is the real-switch test tier's (same variables, same installed files: see
tests/freeswitch_lab.py and README "Real-switch test tier"); without them the script says
what to set and exits 0. The same sipp load runs in three phases (`--rated` picks the rated
ones; `--repeats` rounds of them, alternating): authenticated callers (digest, as the
tier's users) place bridged calls of `--hold` seconds to a sipp UAS. The switch writes its
own call records (mod_cdr_pg_csv, when shipped) into the rater's database in every phase.

1. without rating: a dialplan extension that bridges at once (the daemon stopped);
2. rated, park: the shipped dialplan without its socket line parks the call, `rater run`
   authorizes it from CHANNEL_PARK and transfers it (uuid_setvar_multi, uuid_transfer) to
   the rated context, which bridges to the same far end; CDRs flushed into PostgreSQL;
3. rated, decision socket: the shipped dialplan; the call asks `rater run` on its decision
   socket, which answers there (multiset, transfer) and the call goes on to the rated
   context at once.

With `--media` each answered call carries audio both ways through the switch, as a real
call does: the caller streams PCMU (sipp rtp_stream) and the far end echoes it (sipp
-rtp_echo); without it the calls are signalling only, the worst case for rating's share.

For each: calls attempted / answered, INVITE->200 p50/p99 (sipp -trace_rtt, from the
authenticated INVITE), and CPU milliseconds per answered call of FreeSWITCH, the daemon,
redis-server and postgres (/proc/<pid>/stat utime+stime of each process and its children,
reaped ones included, from the first call until the rater settled; sipp's, the load, on
the side). Then the differences: added latency, added CPU, and that extra CPU as a share of
FreeSWITCH's own per-call CPU.
Redis and PostgreSQL are private (rater.embedded) unless RATER_BENCH_REDIS_URL and
RATER_BENCH_DATABASE_URL are set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common

import psycopg
from _common import histogram_quantile, machine, percentile, servers

from loader.migrate import migrate
from rater.embedded import free_port
from tests.freeswitch_lab import Lab, LabSettings, exit_cleanly_on_sigterm, wait_until
from tests.freeswitch_sipp import Call
from tests.freeswitch_world import L1, L2, L3, UK, UNKNOWN, RatedWorld, accounts

LOAD = (L1, L2, L3)
DIRECT_EXTENSION = """\
<include>
  <extension name="bench_direct_bridge">
    <condition field="destination_number" expression="^direct(\\d+)$">
      <action application="set" data="hangup_after_bridge=true"/>
      <action application="bridge" data="sofia/internal/$1@{far_end}"/>
    </condition>
  </extension>
</include>
"""
PROCESSES = ("freeswitch", "rater", "redis", "postgres")


def _tree_ticks(root: int) -> int:
    """utime+stime+cutime+cstime (clock ticks) of `root` and its live descendants: children
    that exited and were waited for are in their parent's cutime/cstime."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) "
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = sum(int(f) for f in fields[11:15])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo += [p for p, pp in parent.items() if pp == pid]
    return total


def _busy_ticks() -> int:
    """Ticks this machine's CPUs ran processes (/proc/stat user, nice, system; not idle,
    iowait, interrupts, or the hypervisor's steal)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return f[0] + f[1] + f[2]


def udp_datagrams() -> int:
    """UDP datagrams this machine has received (/proc/net/snmp InDatagrams): SIP and RTP
    on loopback, to check that a phase's calls carried the audio they were meant to."""
    head, values = (line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
                    if line.startswith("Udp:"))
    return int(values[head.index("InDatagrams")])


class ProcCpu:
    """CPU milliseconds used by named process trees between start() and stop(), and what
    the rest of the machine used meanwhile ("other", in cores): everything but the switch
    and this script's own tree (the daemon, sipp and private servers are its children)."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self._hz = os.sysconf("SC_CLK_TCK")
        self._ours = {"freeswitch": self.pids.get("freeswitch"), "self": os.getpid()}

    def _sample(self) -> tuple[dict[str, int], dict[str, int], int, float]:
        named = {k: _tree_ticks(p) for k, p in self.pids.items()}
        # children this script waited for (the sipp callers of a phase) count as "reaped"
        reaped = os.times()
        named["reaped"] = round((reaped.children_user + reaped.children_system) * self._hz)
        ours = {k: _tree_ticks(p) for k, p in self._ours.items() if p}
        return named, ours, _busy_ticks(), time.monotonic()

    def start(self) -> ProcCpu:
        self._t0 = self._sample()
        return self

    def stop(self) -> dict[str, float]:
        named, ours, busy, wall = self._sample()
        named0, ours0, busy0, wall0 = self._t0
        out = {k: 1000 * (named[k] - named0[k]) / self._hz for k in named}
        other = busy - busy0 - sum(ours[k] - ours0[k] for k in ours)
        out["other_cores"] = other / self._hz / (wall - wall0)
        return out


def freeswitch_pid(lab: Lab) -> int:
    run_dir = lab.esl.api("global_getvar run_dir").strip()
    return int((Path(run_dir) / "freeswitch.pid").read_text().split()[0])


def load(lab: Lab, n: int, first: int, destination: str, hold: float) -> list[Call]:
    return [Call(lab.caller(first + i), destination, hold, lab.users[LOAD[i % len(LOAD)]])
            for i in range(n)]


def measure(lab: Lab, calls: list[Call], cps: float, workdir: Path, name: str,
            pids: Mapping[str, int | None], settle: Callable[[], None] | None = None) -> dict:
    """Place `calls`, then wait for `settle` (the rater's CDRs); CPU over the whole of it,
    per answered call."""
    meter = ProcCpu(pids).start()
    datagrams = udp_datagrams()
    run = lab.place(calls, workdir, name, rate=cps, limit=2000)
    outcomes = run.wait(len(calls) / cps + calls[0].hold + 120)
    if settle is not None:
        settle()
    cpu = meter.stop()
    datagrams = udp_datagrams() - datagrams
    answered = sum(1 for o in outcomes.values() if o.answered)
    rtt = run.invite_response_ms()
    per_call = {k: round(cpu.get(k, 0.0) / max(1, answered), 2) for k in PROCESSES}
    sipp = cpu.get("sipp_uas", 0.0) + cpu["reaped"]
    return {"attempted": len(calls), "answered": answered,
            "other_load_cores": round(cpu["other_cores"], 2),
            "sipp_cpu_ms_per_call": round(sipp / max(1, answered), 2),
            # 4 audio streams (caller->switch->far end->switch->caller) of 50 packets/s
            "udp_datagrams_per_call_second": round(
                datagrams / max(1, answered) / calls[0].hold, 1),
            "invite_200_ms_p50": round(percentile(rtt, 50), 1),
            "invite_200_ms_p99": round(percentile(rtt, 99), 1),
            "cpu_ms_per_call": per_call,
            "cpu_ms_per_call_total": round(sum(per_call.values()), 2)}


RATED_MODES = ("park", "decision_socket")


def run(settings: LabSettings, args: argparse.Namespace, workdir: Path) -> dict:
    """`args.repeats` rounds of the phases (without rating, then the rated ways of
    `args.rated`: through park, through the decision socket), in turn; medians reported."""
    n = args.calls or int(args.cps * args.duration)
    runs: dict[str, list[dict]] = {"without_rating": [], **{m: [] for m in args.rated}}
    with servers() as srv:
        with psycopg.connect(srv.database_url) as conn:
            migrate(conn)
        socket_address = f"127.0.0.1:{free_port()}"
        lab = Lab(settings, workdir, [*accounts(), UNKNOWN], decision_socket=socket_address,
                  media=args.media)
        try:
            lab.files.put("dialplan/default/00_bench_direct.xml",
                          DIRECT_EXTENSION.format(far_end=lab.uas.address))
            lab.files.reload()
            pids = {"freeswitch": freeswitch_pid(lab), "redis": srv.redis_pid,
                    "postgres": srv.postgres_pid, "sipp_uas": lab.uas.proc.pid}
            world = RatedWorld(lab, srv.database_url, srv.redis_url, workdir,
                               debit_interval=60).start()
            try:
                world.daemon.stop()      # without rating: no daemon at all
                phases = ("without_rating", *args.rated)
                for i in range(args.repeats):
                    # FreeSWITCH's per-call CPU drifts up with the calls it has carried:
                    # each round starts with another phase, so none is always the last
                    for j in range(len(phases)):
                        mode = phases[(i + j) % len(phases)]
                        first = (len(phases) * i + j) * n
                        runs[mode].append(phase(lab, world, mode, socket_address, pids, args,
                                                workdir, first, n, i))
            finally:
                world.close()
        finally:
            lab.close()
    direct = median_run(runs["without_rating"])
    rated_runs = {m: median_run(runs[m]) for m in args.rated}
    return {"machine": machine(), "cps": args.cps, "calls": n, "hold_s": args.hold,
            "media": args.media,
            "repeats": args.repeats, "command": " ".join(sys.argv),
            "without_rating": direct, **rated_runs,
            "difference": {m: difference(direct, rated_runs[m]) for m in args.rated},
            "runs": runs}


def phase(lab: Lab, world: RatedWorld, mode: str, socket_address: str,
          pids: Mapping[str, int], args: argparse.Namespace, workdir: Path, first: int,
          n: int, round_no: int) -> dict:
    """One phase: n calls numbered from `first`, placed the way `mode` says."""
    if mode == "without_rating":
        return measure(lab, load(lab, n, first, f"direct{UK}", args.hold), args.cps, workdir,
                       f"direct{round_no}", pids)
    lab.use_decision_socket(socket_address if mode == "decision_socket" else None)
    world.daemon.start()
    try:
        calls = load(lab, n, first, UK, args.hold)
        rated = measure(lab, calls, args.cps, workdir, f"{mode}{round_no}",
                        {**pids, "rater": world.daemon.proc.pid}, lambda: settled(world))
        rated["cdrs"] = sum(map(len, world.cdrs([c.caller for c in calls]).values()))
        rated.update(decision_ms(world.daemon.metrics()))
    finally:
        world.daemon.stop()
    return rated


def settled(world: RatedWorld) -> None:
    wait_until(lambda: not world.live_legs() and not world.outbox_backlog(), 120,
               "the rater settled", 0.2)


def decision_ms(samples: dict[str, float]) -> dict[str, float]:
    """The daemon's own question -> decision time (rater_park_decision_seconds: from
    CHANNEL_PARK, or from the channel data on the decision socket)."""
    name = "rater_park_decision_seconds"
    return {f"decision_ms_p{q}": round(1000 * histogram_quantile(samples, name, q / 100), 1)
            for q in (50, 99)}


def median_run(runs: list[dict]) -> dict:
    """Each figure's median over the runs (attempted, answered and CDRs: their sums)."""
    out: dict = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = {k: round(statistics.median(r[key][k] for r in runs), 2) for k in value}
        elif key in ("attempted", "answered", "cdrs"):
            out[key] = sum(r[key] for r in runs)
        else:
            out[key] = round(statistics.median(r[key] for r in runs), 2)
    return out


def difference(direct: dict, rated: dict) -> dict:
    fs = direct["cpu_ms_per_call"]["freeswitch"]
    added = rated["cpu_ms_per_call_total"] - direct["cpu_ms_per_call_total"]
    return {
        "added_ms_p50": round(rated["invite_200_ms_p50"] - direct["invite_200_ms_p50"], 1),
        "added_ms_p99": round(rated["invite_200_ms_p99"] - direct["invite_200_ms_p99"], 1),
        "added_cpu_ms_per_call": round(added, 2),
        "added_freeswitch_cpu_ms_per_call": round(
            rated["cpu_ms_per_call"]["freeswitch"] - fs, 2),
        "added_cpu_share_of_freeswitch": f"{100 * added / fs:.0f} %" if fs else "n/a",
    }


def print_result(r: dict) -> None:
    m = r["machine"]
    print(f"{m.get('Model name', '?')}, {m['nproc']} CPUs, {m.get('memory', '?')}, "
          f"Python {m['python']}, {m['date']}")
    audio = "with audio both ways" if r["media"] else "signalling only"
    print(f"{r['calls']} calls per phase at {r['cps']:g}/s, bridged, {r['hold_s']:g} s each "
          f"{audio}; "
          f"{r['repeats']} run(s) of each phase, alternating (medians; calls summed)\n")
    head = f"{'':26}{'attempted':>10}{'answered':>9}{'p50 ms':>8}{'p99 ms':>8}"
    head += "".join(f"{p:>11}" for p in PROCESSES) + f"{'all':>8}"
    print(head + f"{'sipp':>7}{'UDP/s':>9}\n" + " " * 60 + "CPU ms per answered call"
          + " " * 40 + "(datagrams per call-second)")
    labels = {"without_rating": "without rating", "park": "rated, park",
              "decision_socket": "rated, decision socket"}
    labels = {k: v for k, v in labels.items() if k in r}
    for key, label in labels.items():
        x = r[key]
        line = (f"{label:26}{x['attempted']:>10}{x['answered']:>9}"
                f"{x['invite_200_ms_p50']:>8}{x['invite_200_ms_p99']:>8}")
        line += "".join(f"{x['cpu_ms_per_call'][p]:>11}" for p in PROCESSES)
        print(line + f"{x['cpu_ms_per_call_total']:>8}{x['sipp_cpu_ms_per_call']:>7}"
              f"{x['udp_datagrams_per_call_second']:>9}")
    for mode in r["difference"]:
        d, w = r["difference"][mode], r[mode]
        print(f"\nadded by rating ({labels[mode]}): INVITE->200 p50 +{d['added_ms_p50']} ms, "
              f"p99 +{d['added_ms_p99']} ms; CPU +{d['added_cpu_ms_per_call']} ms per call "
              f"(FreeSWITCH +{d['added_freeswitch_cpu_ms_per_call']}), "
              f"{d['added_cpu_share_of_freeswitch']} of FreeSWITCH's own per-call CPU; the "
              f"daemon's question->decision time p50 {w['decision_ms_p50']} ms, p99 "
              f"{w['decision_ms_p99']} ms (its histogram, bucketed); rated CDRs in "
              f"PostgreSQL: {w['cdrs']} for {w['answered']} answered calls")
    busy = {labels[k]: r[k]["other_load_cores"] for k in labels}
    print(f"other processes on the machine meanwhile (cores): {busy}")
    if max(busy.values()) > 0.1:
        print("WARNING: other processes were busy during the run: these figures are not clean")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cps", type=float, default=20, help="calls per second (default 20)")
    ap.add_argument("--duration", type=float, default=30,
                    help="seconds of new calls (default 30)")
    ap.add_argument("--calls", type=int, default=0, help="calls per phase (default cps×duration)")
    ap.add_argument("--hold", type=float, default=2.0, help="talk time of each call, s")
    ap.add_argument("--media", action="store_true",
                    help="audio both ways through the switch (sipp rtp_stream, -rtp_echo)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="rounds of the phases, alternating; medians reported")
    ap.add_argument("--rated", type=lambda v: tuple(v.split(",")), default=RATED_MODES,
                    help=f"the rated phases, comma-separated (default {','.join(RATED_MODES)})")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    if not args.rated or set(args.rated) - set(RATED_MODES):
        ap.error(f"--rated: one or more of {', '.join(RATED_MODES)}, comma-separated")
    exit_cleanly_on_sigterm()
    settings = LabSettings.from_env()
    if isinstance(settings, str):
        print(f"bench_freeswitch: skipped: {settings}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-fs-") as tmp:
        result = run(settings, args, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        print_result(result)
    ok = all(result[m]["cdrs"] == result[m]["answered"] for m in args.rated)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
