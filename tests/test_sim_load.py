"""The load generator and the simulator's command line."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from fssim import Simulator
from fssim.__main__ import main
from tests.sim_client import SimClient

PASSWORD = "ClueCon"
DEADLINE = 20.0


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(port=0, password=PASSWORD, heartbeat=0) as s:
        yield s


def _rater(sim: Simulator, action: str) -> tuple[SimClient, gevent.Greenlet]:
    """A stand-in for the daemon: transfers (or kills) every parked call."""
    client = SimClient(*sim.address, timeout=DEADLINE)
    client.login(PASSWORD)
    client.subscribe("CHANNEL_PARK")

    def loop() -> None:
        while True:
            uuid = client.next_event("CHANNEL_PARK", timeout=3600).unique_id
            if action == "transfer":
                client.send(f"bgapi uuid_transfer {uuid} 15557650000 XML rated")
            else:
                client.send(f"bgapi uuid_kill {uuid} CALL_REJECTED")

    return client, gevent.spawn(loop)


def _choices(sim: Simulator, uuids: list[str]) -> list[tuple]:
    return [(c.account, c.destination, c.caller, c.duration, c.answer, c.answer_after)
            for c in (sim.call(u) for u in uuids)]


def test_load_is_placed_and_completed(sim: Simulator) -> None:
    client, rater = _rater(sim, "transfer")
    gen = sim.run_load(200, count=40, talk_seconds=(0.01, 0.05), answer_after=(0.01, 0.02),
                       accounts=["1000000001", "1000000002"],
                       destinations=["15557650001", "3225550000"], seed=7)
    assert gen.join(DEADLINE), gen.counters
    c = gen.counters
    assert (c.placed, c.completed, c.answered, c.in_progress) == (40, 40, 40, 0)
    assert {sim.call(u).account for u in gen.uuids} == {"1000000001", "1000000002"}
    assert all(sim.call(u).cause == "NORMAL_CLEARING" for u in gen.uuids)
    rater.kill()
    client.close()


def test_same_seed_same_calls() -> None:
    runs = []
    for seed in (3, 3, 4):
        with Simulator(port=0, heartbeat=0) as s:
            gen = s.run_load(500, count=15, talk_seconds=(0.01, 0.02), answer_ratio=0.5,
                             accounts=["a", "b", "c"], destinations=["1", "2", "3"], seed=seed)
            assert gen.join(DEADLINE)
            runs.append(_choices(s, gen.uuids))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_counters_by_outcome(sim: Simulator) -> None:
    # nobody takes the calls out of park: the callers give up
    gen = sim.run_load(500, count=5, talk_seconds=lambda rng: 0.01)
    assert gen.join(DEADLINE)
    assert (gen.counters.abandoned, gen.counters.completed) == (5, 5)
    # the rater refuses every call
    client, rater = _rater(sim, "kill")
    gen = sim.run_load(500, count=5, talk_seconds=(0.5, 1.0))
    assert gen.join(DEADLINE)
    assert gen.counters.rejected == 5
    assert all(sim.call(u).cause == "CALL_REJECTED" for u in gen.uuids)
    rater.kill()
    client.close()
    # transferred, half of them answered
    client, rater = _rater(sim, "transfer")
    # (a caller waits in park as long as it would talk: 0.5 s leaves the stand-in time to
    # transfer it on a loaded machine; 0.01 s did not always)
    gen = sim.run_load(500, count=20, talk_seconds=(0.5, 0.6), answer_ratio=0.5, seed=1)
    assert gen.join(DEADLINE)
    expected = sum(sim.call(u).answer for u in gen.uuids)
    assert 0 < expected < 20
    assert (gen.counters.answered, gen.counters.unanswered) == (expected, 20 - expected)
    rater.kill()
    client.close()


def test_duration_bound_and_stop(sim: Simulator) -> None:
    gen = sim.run_load(50, duration=0.0, talk_seconds=(0.01, 0.01))
    assert gen.join(DEADLINE) and gen.counters.placed == 0
    gen = sim.run_load(50, count=10_000, talk_seconds=(0.01, 0.01))
    gen.stop()
    assert gen.join(DEADLINE)
    assert gen.counters.placed < 10_000


def test_load_arguments_are_checked(sim: Simulator) -> None:
    with pytest.raises(ValueError):
        sim.run_load(0, count=1)
    with pytest.raises(ValueError):
        sim.run_load(10)
    with pytest.raises(ValueError):
        sim.run_load(10, count=1, accounts=[])


def test_command_line_runs_a_load_and_hides_the_password(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("# accounts\n1000000001\n1000000002  # a reseller's customer\n\n")
    caplog.set_level(logging.DEBUG)
    rc = main(["--listen", "127.0.0.1:0", "--password", "hunter2-secret", "--cps", "200",
               "--count", "5", "--talk", "0.01:0.02", "--accounts", str(accounts),
               "--destinations", "15557650001,15557650002", "--heartbeat", "0",
               "--stats-every", "0", "--seed", "5"])
    assert rc == 0
    out = capsys.readouterr()
    assert "listening on 127.0.0.1:" in out.out
    assert "hunter2-secret" not in out.out + out.err + caplog.text
    assert "placed=5" in caplog.text and "completed=5" in caplog.text


@pytest.mark.parametrize("bad", [["--talk", "5:1"], ["--listen", "nowhere"],
                                 ["--answer-ratio", "2"], ["--accounts", ","]])
def test_command_line_rejects_bad_arguments(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(bad)
    assert exc.value.code == 2


def test_module_is_runnable() -> None:
    result = subprocess.run([sys.executable, "-m", "fssim", "--help"], capture_output=True,
                            text=True, timeout=60, check=True)
    assert "--cps" in result.stdout and "--answer-ratio" in result.stdout
