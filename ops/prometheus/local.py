#!/usr/bin/env python3
"""A private Prometheus beside a rater (the demo, the tests): scrapes the given targets as
job "rater" with rater.rules.yml loaded, keeps its data in a temporary directory, prints its
URL once ready, and on SIGTERM or SIGINT stops and removes that directory.

    python3 ops/prometheus/local.py --target 127.0.0.1:9464 [--port 9090] [--interval 5s]

Needs the `prometheus` binary (Debian: `apt-get install prometheus`); without it, exits 2
saying so. Standard library only: it runs under any Python 3.11.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RULES = Path(__file__).resolve().parent / "rater.rules.yml"
READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(targets: list[str], interval: str, rules: Path) -> str:
    """prometheus.yml (JSON is YAML): one job, "rater", as in prometheus.example.yml."""
    return json.dumps({
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "rater", "scrape_interval": interval,
                            "static_configs": [{"targets": targets}]}],
    }, indent=2)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as reply:
                if reply.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def run(args: argparse.Namespace) -> int:
    binary = args.prometheus or shutil.which("prometheus")
    if binary is None:
        print("prometheus is not installed (Debian: apt-get install prometheus)",
              file=sys.stderr)
        return 2
    port = args.port or free_port()
    root = Path(tempfile.mkdtemp(prefix="rater-prometheus-"))
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, on_signal)
    try:
        (root / "prometheus.yml").write_text(config(args.target, args.interval, args.rules))
        # A session of its own: a Ctrl-C meant for the demo does not reach Prometheus.
        proc = subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--storage.tsdb.retention.time=1d", f"--log.level={args.log_level}"],
            start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            if not wait_ready(url, proc, READY_TIMEOUT):
                print(f"prometheus did not become ready on {url}", file=sys.stderr)
                return 1
            print(f"prometheus on {url} (scraping {', '.join(args.target)} every "
                  f"{args.interval})", flush=True)
            while not stop["signal"] and proc.poll() is None:
                time.sleep(0.2)
            return 0 if stop["signal"] else 1
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", action="append", required=True, help="HOST:PORT of /metrics")
    p.add_argument("--port", type=int, default=0, help="listen port (default: any free one)")
    p.add_argument("--interval", default="5s", help="scrape and rule evaluation interval")
    p.add_argument("--rules", type=Path, default=RULES)
    p.add_argument("--prometheus", help="the prometheus binary (default: from PATH)")
    p.add_argument("--log-level", default="error")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
