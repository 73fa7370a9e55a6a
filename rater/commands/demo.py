"""`rater demo`: private Redis and PostgreSQL, the example data, the simulator and the daemon."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run everything on embedded servers with simulated calls")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rater.config import LogConfig
    from rater.demo import DemoOptions, run_demo
    from rater.logs import setup_logging

    opts = DemoOptions(cps=args.cps, duration=args.duration, metrics_port=args.metrics_port,
                       config=args.config)
    if args.dataset:
        opts = dataclasses.replace(opts, dataset=args.dataset)
    return run_demo(opts, log_setup=lambda: setup_logging(LogConfig(level=args.log_level.upper())))
