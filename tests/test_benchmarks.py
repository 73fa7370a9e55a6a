"""The benchmark suite's smoke run: every stage starts, runs a little and checks itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_benchmark_suite_runs_quick(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAILED" not in proc.stdout
    for stage in ("Rate deck", "ESL parse", "Lookup", "Ledger", "Flusher", "End to end",
                  "ASTPP-style", "Concurrency"):
        assert stage in proc.stdout, stage
    results = json.loads(out.read_text())["results"]
    for stage in ("e2e", "concurrency"):  # every call checked: CDRs, balances, reconcile
        assert results[stage]["check"]["ok"], results[stage]["check"]


@pytest.mark.parametrize("script", ["bench_freeswitch.py", "bench_freeswitch_parts.py"])
def test_the_real_switch_benchmarks_say_what_to_set_without_a_switch(script: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATER_TEST_FREESWITCH")}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped: real-switch tier: set RATER_TEST_FREESWITCH=" in proc.stdout
