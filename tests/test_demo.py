"""The demo (`rater-demo`, what `./scripts/demo` runs) as a user runs it: a subprocess that
must exit 0, print a summary whose totals match PostgreSQL (its reconcile line), and leave
nothing running on exit or on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faketime import libfaketime

REPO = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, "-m", "rater_demo"]


def started_dir(output: str) -> str:
    match = re.search(r"started in (\S+)", output)
    assert match, output
    return match.group(1)


def processes_using(path: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if path in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def package_seconds_of_customers(output: str) -> int:
    """The 'package seconds' figure of level 0 in the demo's summary."""
    match = re.search(r"^\s+0\s+\d+\s+-?[\d.]+\s+(\d+)$", output, re.MULTILINE)
    assert match, output
    return int(match.group(1))


def run_demo(env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([*DEMO, "--duration", "4", "--cps", "8", "--metrics-port", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "summary (from PostgreSQL)" in out
    assert "reconcile Redis vs PostgreSQL: 0 difference(s)" in out
    legs = int(re.search(r"rated legs \(CDRs\)\s+(\d+)", out).group(1))
    assert legs > 0
    root = started_dir(out)
    assert processes_using(root) == []
    assert not Path(root).exists()
    return out


def test_the_demo_command_and_the_script_agree_on_its_options():
    """`./scripts/demo` runs `.venv/bin/rater-demo` and passes options through (adding
    --metrics-port with --prometheus): that command exists and takes them."""
    script = (REPO / "scripts" / "demo").read_text()
    assert 'exec .venv/bin/rater-demo "$@"' in script
    assert '.venv/bin/rater-demo "$@" --metrics-port "$port"' in script
    proc = subprocess.run([*DEMO, "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--cps", "--duration", "--metrics-port", "--dataset", "--config",
                   "--log-level"):
        assert option in proc.stdout
    assert proc.stdout.startswith("usage: rater-demo")


@pytest.mark.slow
def test_demo_runs_and_its_summary_matches_postgres():
    out = run_demo()
    assert package_seconds_of_customers(out) > 0


@pytest.mark.slow
@pytest.mark.parametrize("shift", ["+365d", "+1000d"])
def test_demo_uses_package_minutes_on_a_later_date(shift):
    """The example dataset's orders are dated; import moves recurring ones to the current
    period, so the demo still spends package seconds years later."""
    lib = libfaketime()
    if lib is None:
        pytest.skip("libfaketime is not installed (apt install libfaketime); CI installs it")
    env = {**os.environ, "LD_PRELOAD": lib, "FAKETIME": shift}
    assert package_seconds_of_customers(run_demo(env)) > 0


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_cleanly():
    proc = subprocess.Popen([*DEMO, "--duration", "600", "--cps", "5", "--metrics-port", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if re.match(r"\s+\d+s\s+\d+", line) and int(line.split()[1]) >= 5:
            break
    proc.send_signal(signal.SIGINT)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)  # the second Ctrl-C hangs up the calls in progress
    rest, _ = proc.communicate(timeout=120)
    out = "".join(lines) + rest
    assert proc.returncode == 0, out
    assert "summary (from PostgreSQL)" in out
    assert "reconcile Redis vs PostgreSQL: 0 difference(s)" in out
    root = started_dir(out)
    assert processes_using(root) == []
    assert not Path(root).exists()
