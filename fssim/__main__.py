"""Run the FreeSWITCH simulator on its own: `fssim --cps 50 --count 1000` (the console script)
or `python -m fssim --cps 50 --count 1000`.

Without --cps it only serves connections (and whatever calls a client triggers) until
interrupted; with --cps it places calls and exits once --count calls completed or --duration
ran out. With --decision-socket each call first asks the rater on a connection of its own
there, as the shipped dialplan's `socket` application does, and parks only when it cannot
(or is let go). The password comes from --password, else RATER_ESL_PASSWORD, else ClueCon;
it is never logged.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import gevent
import gevent.event

from fssim.load import CallRecord, LoadGenerator
from fssim.simulator import DEFAULT_PASSWORD, Simulator

log = logging.getLogger("fssim")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(":")
    try:
        pair = (float(low), float(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX seconds, got {text!r}") from None
    if pair[0] < 0 or pair[1] < pair[0]:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX, got {text!r}")
    return pair


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("expected a ratio between 0 and 1")
    return value


def _word_list(text: str) -> list[str]:
    """A file with one item per line (# comments), or a comma-separated list."""
    path = Path(text)
    if path.is_file():
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        items = [line for line in lines if line]
    else:
        items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"no items in {text!r}")
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options."""
    parser.add_argument("--listen", type=_host_port, default=("127.0.0.1", 8021),
                        metavar="HOST:PORT", help="where to listen (port 0: any free port)")
    parser.add_argument("--decision-socket", type=_host_port, default=None, metavar="HOST:PORT",
                        help="ask the rater there for each call before parking it (the "
                             "shipped dialplan's `socket` application; default: park at once)")
    parser.add_argument("--password", default=None,
                        help=f"ESL password (default: $RATER_ESL_PASSWORD or {DEFAULT_PASSWORD})")
    parser.add_argument("--cps", type=float, default=None, help="calls per second to place")
    parser.add_argument("--count", type=int, default=None, help="stop after this many calls")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop placing calls after this many seconds")
    parser.add_argument("--talk", type=_range, default=(1.0, 5.0), metavar="MIN:MAX",
                        help="talk time of answered calls, seconds (default 1:5)")
    parser.add_argument("--answer-after", type=_range, default=(0.05, 0.3), metavar="MIN:MAX",
                        help="ring time after the transfer, seconds (default 0.05:0.3)")
    parser.add_argument("--answer-ratio", type=_ratio, default=1.0,
                        help="share of transferred calls that are answered (default 1)")
    parser.add_argument("--accounts", type=_word_list, default=[None], metavar="FILE|a,b,c",
                        help="accountcodes to draw from (default: none set)")
    parser.add_argument("--destinations", type=_word_list, default=["15557650000"],
                        metavar="FILE|list", help="numbers (or DIDs) to draw from")
    parser.add_argument("--direction", choices=("outbound", "inbound"), default="outbound",
                        help="rater_direction set by the simulated dialplan")
    parser.add_argument("--seed", type=int, default=0, help="seed of the call choices")
    parser.add_argument("--heartbeat", type=float, default=20.0,
                        help="HEARTBEAT interval in seconds (0: none)")
    parser.add_argument("--wait-listener", action="store_true",
                        help="start placing calls once a client subscribed to CHANNEL_PARK")
    parser.add_argument("--history", type=int, default=10_000,
                        help="finished calls and commands kept in memory (default 10000)")
    parser.add_argument("--stats-every", type=float, default=5.0,
                        help="log progress every N seconds (0: never)")
    parser.add_argument("--report", type=Path, default=None, metavar="FILE",
                        help="with --cps: write the counters and every finished call "
                             "(park, transfer, answer and hangup times, billmsec) as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the simulator with parsed arguments until done or interrupted."""
    host, port = args.listen
    password = args.password or os.environ.get("RATER_ESL_PASSWORD") or DEFAULT_PASSWORD
    sim = Simulator(host, port, password, heartbeat=args.heartbeat, history=args.history,
                    decision_socket=args.decision_socket)
    stop = gevent.event.Event()
    handlers = [gevent.signal_handler(signum, stop.set)
                for signum in (signal.SIGINT, signal.SIGTERM)]
    sim.start()
    # What exists now (templates, captured events, modules) lives as long as the process:
    # out of the collector's sight. Young objects are collected every 50000 allocations,
    # not 700: garbage is mostly freed by reference counting, and at 1000 calls/s the
    # default thresholds stalled the simulated switch for tens of ms every second or two.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    print(f"listening on {sim.address[0]}:{sim.port}", flush=True)
    generator = None
    try:
        if args.cps:
            if args.count is None and args.duration is None:
                raise SystemExit("--cps needs --count or --duration")
            if args.wait_listener:
                log.info("waiting for a client subscribed to CHANNEL_PARK")
                while not stop.is_set():
                    try:
                        sim.wait_for_listener(["CHANNEL_PARK"], timeout=1.0)
                        break
                    except TimeoutError:
                        continue
            generator = sim.run_load(
                args.cps, count=args.count, duration=args.duration,
                destinations=args.destinations, accounts=args.accounts,
                talk_seconds=args.talk, answer_ratio=args.answer_ratio,
                answer_after=args.answer_after, direction=args.direction, seed=args.seed,
                record=args.report is not None,
            )
        while not stop.is_set():
            if generator is not None and generator.join(0):
                break
            stop.wait(args.stats_every or 1.0)
            if args.stats_every and generator is not None:
                log.info("load: %s", generator.counters)
        if generator is not None:
            generator.stop()
            log.info("load finished: %s", generator.counters)
            if args.report is not None:
                write_report(args.report, generator)
    finally:
        sim.close()
        for handler in handlers:
            handler.cancel()
    return 0


def write_report(path: Path, generator: LoadGenerator) -> None:
    """The load run as JSON: counters, times, and one row per finished call (the fields
    of `CallRecord`, in order)."""
    doc = {
        "counters": dataclasses.asdict(generator.counters),
        "started_at": generator.started_at,
        "placing_ended_at": generator.placing_ended_at,
        "finished_at": time.time(),
        "cpu_seconds": time.process_time() - generator.started_cpu,
        "fields": list(CallRecord._fields),
        "calls": [list(r) for r in generator.records or ()],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fssim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
