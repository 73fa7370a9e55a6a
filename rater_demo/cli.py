"""`rater-demo`: private Redis and PostgreSQL, the example data, the simulator and the daemon.

gevent patches the standard library before anything else is imported: psycopg and redis
pick their waiting strategy at import time (DESIGN §12), as in `rater.cli`.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from rater.config import LogConfig  # noqa: E402
from rater.errors import RaterError  # noqa: E402
from rater.logs import setup_logging  # noqa: E402
from rater_demo.demo import DemoOptions, run_demo  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rater-demo",
        description="Run everything on embedded servers with simulated calls: private Redis "
                    "and PostgreSQL, the example dataset, the FreeSWITCH simulator and the "
                    "daemon rating its calls. Ctrl-C stops it (twice: hangs up the calls).")
    p.add_argument("--cps", type=float, default=20.0, help="calls per second (default 20)")
    p.add_argument("--duration", type=float, default=30.0,
                   help="seconds of new calls (default 30); calls in progress then end")
    p.add_argument("--metrics-port", type=int, default=9464,
                   help="port of /metrics and /health (default 9464; any free one if taken)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="dataset to load (default: config/example-dataset.json)")
    p.add_argument("--config", type=Path, default=None,
                   help="configuration to start from (URLs are replaced by the private servers)")
    p.add_argument("--log-level", default="WARNING", help="daemon log level (default WARNING)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = DemoOptions(cps=args.cps, duration=args.duration, metrics_port=args.metrics_port,
                       config=args.config)
    if args.dataset:
        opts = dataclasses.replace(opts, dataset=args.dataset)
    try:
        return run_demo(
            opts, log_setup=lambda: setup_logging(LogConfig(level=args.log_level.upper())))
    except RaterError as exc:
        print(f"rater-demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

