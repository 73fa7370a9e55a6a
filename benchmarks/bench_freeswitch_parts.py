"""What each part of a rated call costs a real FreeSWITCH, measured without the daemon.

    RATER_TEST_FREESWITCH=127.0.0.1:8021 RATER_TEST_FREESWITCH_CONF=/path/to/conf \\
    RATER_TEST_SIPP=/path/to/sipp .venv/bin/python benchmarks/bench_freeswitch_parts.py \\
        [--cps 20] [--calls 600] [--rounds 2] [--variants bridge,socket_admit,...]

The real-switch tier's switch, users and sipp (tests/freeswitch_lab.py; without them the
script says what to set and exits 0). Each variant is a dialplan extension of its own
(installed for the run, removed after), reached by a destination prefix; the same sipp load
(authenticated callers, bridged calls of 2 s to a sipp UAS) runs through each, `--rounds`
times, each round starting with another variant (FreeSWITCH's per-call CPU drifts up with
the calls it has carried). Reported per variant: INVITE->200 p50/p99 and FreeSWITCH's CPU
ms per answered call (bench_freeswitch.measure), medians over the rounds, and the
difference from `bridge`. What stands in for the daemon is a few lines in this process,
answering at once; its CPU is not counted.

The `module_*` variants (named in --variants only) use the measuring prototype in
freeswitch_module/ (build it first with its build.sh); it is loaded for those variants only
and unloaded after each, and the run says if a call's datagrams did not all arrive.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_freeswitch, _common

import gevent  # noqa: E402
from bench_freeswitch import freeswitch_pid, load, measure  # noqa: E402
from gevent.server import DatagramServer, StreamServer  # noqa: E402

from rater.esl import commands  # noqa: E402
from tests.freeswitch_lab import EslClient, Lab, LabSettings, exit_cleanly_on_sigterm  # noqa: E402
from tests.freeswitch_world import UK, UNKNOWN, accounts  # noqa: E402

MARK = ('<action application="multiset" data="^^|rater_account=${{accountcode}}|'
        'rater_direction=outbound|rater_destination=$1"/>')
ADMIT = {"rater_max_seconds": "600", "rater_account": "2100000011",
         "execute_on_answer": "sched_hangup +601 ALLOTTED_TIMEOUT"}
BRIDGE = ('<action application="set" data="hangup_after_bridge=true"/>'
          '<action application="bridge" data="sofia/internal/$1@{far}"/>')
# variant -> (what it measures, the extension's actions)
VARIANTS = {
    "bridge": ("bridges at once: the baseline", BRIDGE),
    "transfer": ("marks the call, sets the admit's variables and transfers it to a second "
                 "context that bridges (a decision's dialplan work, with nothing asked)",
                 MARK + '<action application="multiset" data="' + commands.multiset_arg(ADMIT)
                 + '"/><action application="transfer" data="$1 XML bench_parts"/>'),
    "socket_exit": ("marks the call, asks a socket whose listener only says exit, bridges "
                    "(the socket application alone)",
                    MARK + '<action application="socket" data="{sock}"/>' + BRIDGE),
    "socket_admit": ("marks the call, asks a socket answering multiset + transfer as the "
                     "daemon does (the decision socket without the daemon's own work)",
                     MARK + '<action application="socket" data="{sock}"/>'
                     '<action application="park"/>'),
    "park_admit": ("marks the call and parks it; an Event Socket client sets the variables and "
                   "transfers it on CHANNEL_PARK as the daemon does (the park path without "
                   "the daemon's own work)", MARK + '<action application="park"/>'),
    "events": ("bridges at once, marked, with a listener subscribed as the daemon is (its "
               "events filtered to rated legs)", MARK + BRIDGE),
    "marked": ("bridges at once, marked, nothing subscribed (what `events` and "
               "`module_events` add their listener to)", MARK + BRIDGE),
    "module_admit": ("marks the call; mod_rater_probe's rater_ask asks over UDP, sets the "
                     "admit's variables and transfers it (the decision in a module)",
                     MARK + '<action application="rater_ask" data="{udp} bench_parts"/>'
                     '<action application="park"/>'),
    "module_events": ("bridges at once, marked, with mod_rater_probe sending a datagram on "
                      "each rated leg's answer and hangup (the subscription in a module)",
                      MARK + BRIDGE),
}
# module variant -> what the module's rater_probe_events is at load ("" = no event hooks)
MODULE = {"module_admit": "", "module_events": "{udp}"}
EXTENSIONS = """<include>
{extensions}
</include>
"""
CONTEXT = """<include>
  <context name="bench_parts">
    <extension name="bench_parts_bridge">
      <condition field="destination_number" expression="^(\\d+)$">{bridge}</condition>
    </extension>
  </context>
</include>
"""


def extension(name: str, actions: str) -> str:
    return (f'  <extension name="bench_parts_{name}">\n'
            f'    <condition field="destination_number" expression="^{name}_(\\d+)$">'
            f'{actions}</condition>\n  </extension>')


class StandIn:
    """The daemon's two ways of answering, at once and with nothing rated."""

    def __init__(self, settings: LabSettings) -> None:
        self.settings = settings
        self.server = StreamServer(("127.0.0.1", 0), self._socket_call)
        self.server.start()
        self.address = f"127.0.0.1:{self.server.server_port}"
        self._watchers: list[gevent.Greenlet] = []
        self.udp = DatagramServer(("127.0.0.1", 0), self._datagram)
        self.udp.start()
        self.udp_address = f"127.0.0.1:{self.udp.server_port}"
        self.datagrams: dict[str, int] = {}

    def _datagram(self, data: bytes, address: tuple[str, int]) -> None:
        """mod_rater_probe's datagrams: `ask` is admitted at once, the others counted."""
        fields = data.decode().split()
        if not fields:
            return
        self.datagrams[fields[0]] = self.datagrams.get(fields[0], 0) + 1
        if fields[0] == "ask" and len(fields) > 2:
            self.udp.sendto(f"ok 600 {fields[2]}\n".encode(), address)

    def _socket_call(self, sock, _address) -> None:
        data = b""
        sock.sendall(commands.connect())
        while b"\n\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        dest = _header(data, b"Caller-Destination-Number")
        if dest.startswith("socket_exit_"):
            sock.sendall(commands.exit())
        else:
            number = dest.rpartition("_")[2]
            sock.sendall(commands.execute("multiset", commands.multiset_arg(ADMIT))
                         + commands.execute("transfer", f"{number} XML bench_parts")
                         + commands.exit())
        while sock.recv(65536):
            pass

    def subscribe(self, *, answer_parks: bool) -> EslClient:
        """An inbound listener subscribed as the daemon is; with `answer_parks`, it admits
        each parked call (uuid_setvar_multi, then uuid_transfer, on a second connection)."""
        events = EslClient(self.settings.esl, self.settings.password)
        events._sock.sendall(b"event plain CHANNEL_PARK CHANNEL_ANSWER "
                             b"CHANNEL_HANGUP_COMPLETE HEARTBEAT\n\n"
                             b"filter variable_rater_direction outbound\n\n")
        api = EslClient(self.settings.esl, self.settings.password) if answer_parks else None
        self._watchers.append(gevent.spawn(self._watch, events, api))
        return events

    def _watch(self, events: EslClient, api: EslClient | None) -> None:
        try:
            while True:
                _headers, body = events._frame()
                if api is None or "CHANNEL_PARK" not in body[:200]:
                    continue
                uuid = _header(body.encode(), b"Unique-ID")
                number = _header(body.encode(), b"Caller-Destination-Number").rpartition("_")[2]
                api.api(commands.uuid_setvar_multi(uuid, ADMIT))
                api.api(commands.uuid_transfer(uuid, number, "bench_parts"))
        except (OSError, ConnectionError):
            pass
        finally:
            if api is not None:
                api.close()


def _header(data: bytes, name: bytes) -> str:
    start = data.find(b"\n" + name + b": ")
    if start < 0:
        return ""
    start += len(name) + 3
    return data[start:data.find(b"\n", start)].decode()


def load_module(lab: Lab, events: str) -> None:
    """Load mod_rater_probe, its event hooks on (`events`: host:port) or off ("")."""
    lab.esl.api(f"global_setvar rater_probe_events={events or 'off'}")
    reply = lab.esl.api("load mod_rater_probe")
    if "+OK" not in reply:
        raise RuntimeError(f"load mod_rater_probe: {reply.strip()} (run "
                           "benchmarks/freeswitch_module/build.sh first)")


def unload_module(lab: Lab) -> None:
    lab.esl.api("unload mod_rater_probe")
    lab.esl.api("global_setvar rater_probe_events=off")


def datagrams_missing(variant: str, seen: dict[str, int], answered: int) -> str:
    """What the module failed to send for `answered` calls ("" when nothing)."""
    wanted = {"module_admit": ("ask",), "module_events": ("answer", "hangup")}[variant]
    return ", ".join(f"{kind} {seen.get(kind, 0)}/{answered}" for kind in wanted
                     if seen.get(kind, 0) < answered)


def run(settings: LabSettings, args: argparse.Namespace, workdir: Path) -> dict:
    stand_in = StandIn(settings)
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    lab = Lab(settings, workdir, [*accounts(), UNKNOWN])
    try:
        far = lab.uas.address
        lab.files.put("dialplan/default/00_bench_parts.xml", EXTENSIONS.format(
            extensions="\n".join(extension(name, actions.format(far=far, sock=stand_in.address,
                                                                 udp=stand_in.udp_address))
                                 for name, (_what, actions) in VARIANTS.items())))
        lab.files.put("dialplan/bench_parts.xml", CONTEXT.format(bridge=BRIDGE.format(far=far)))
        lab.files.reload()
        pids = {"freeswitch": freeswitch_pid(lab)}
        first = 0
        for r in range(args.rounds):
            for j in range(len(args.variants)):
                variant = args.variants[(r + j) % len(args.variants)]
                listener = (stand_in.subscribe(answer_parks=variant == "park_admit")
                            if variant in ("events", "park_admit") else None)
                if variant in MODULE:
                    load_module(lab, MODULE[variant].format(udp=stand_in.udp_address))
                    stand_in.datagrams.clear()
                calls = load(lab, args.calls, first, f"{variant}_{UK}", 2.0)
                first += args.calls
                missing = ""
                try:
                    result = measure(lab, calls, args.cps, workdir, f"{variant}{r}", pids)
                    if variant in MODULE:  # the last hangups' datagrams may still be on the way
                        deadline = time.monotonic() + 5
                        while (missing := datagrams_missing(variant, stand_in.datagrams,
                                                            result["answered"])) \
                                and time.monotonic() < deadline:
                            gevent.sleep(0.1)
                finally:
                    if listener is not None:
                        listener.close()
                    if variant in MODULE:
                        unload_module(lab)
                results[variant].append(result)
                print(f"  round {r + 1} {variant:13} answered {result['answered']:4}  "
                      f"FreeSWITCH {result['cpu_ms_per_call']['freeswitch']:6.2f} ms/call  "
                      f"other load {result['other_load_cores']:.2f} cores"
                      + (f"  MISSING datagrams: {missing}" if missing else ""), flush=True)
    finally:
        lab.close()
        stand_in.server.stop()
        stand_in.udp.stop()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cps", type=float, default=20)
    ap.add_argument("--calls", type=int, default=600, help="calls per variant and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", type=lambda s: s.split(","),
                    default=[v for v in VARIANTS if v not in MODULE],
                    help="default: all but the module_* ones (they need the module built)")
    args = ap.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown or "bridge" not in args.variants:
        ap.error(f"variants are {', '.join(VARIANTS)} (bridge included); not {unknown or ''}")
    exit_cleanly_on_sigterm()
    settings = LabSettings.from_env()
    if isinstance(settings, str):
        print(f"bench_freeswitch_parts: skipped: {settings}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-fs-parts-") as tmp:
        results = run(settings, args, Path(tmp))
    base = statistics.median(x["cpu_ms_per_call"]["freeswitch"] for x in results["bridge"])
    print(f"\n{'variant':14}{'answered':>9}{'p50 ms':>8}{'p99 ms':>8}{'FS ms/call':>12}"
          f"{'vs bridge':>11}  what it measures")
    for name in args.variants:
        runs = results[name]
        cpu = statistics.median(x["cpu_ms_per_call"]["freeswitch"] for x in runs)
        print(f"{name:14}{sum(x['answered'] for x in runs):>9}"
              f"{statistics.median(x['invite_200_ms_p50'] for x in runs):>8.0f}"
              f"{statistics.median(x['invite_200_ms_p99'] for x in runs):>8.0f}"
              f"{cpu:>12.2f}{cpu - base:>+11.2f}  {VARIANTS[name][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
