"""Operations: /metrics counted against the calls made, /health, JSON logs with the call
uuid, and `rater run` as a process (the example config, a simulator, SIGTERM)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loader.dataset import import_dataset_file
from loader.sync import redis_client, sync_once
from rater.config import LogConfig
from rater.logs import setup_logging
from tests.e2e_world import P1, SH, UK, running_world

REPO = Path(__file__).resolve().parents[1]


def scrape(world) -> dict[tuple[str, tuple], float]:
    host, port = world.daemon.status.address
    text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values


@pytest.mark.slow
def test_metrics_count_the_calls_made(cfg, database_url):
    with running_world(cfg, database_url) as world:
        good = [world.call(P1, UK, duration=1.2) for _ in range(3)]
        short = world.call(SH, UK, duration=30)           # cut off after its 5 paid seconds
        blocked = world.call(P1, "449012345", duration=5)
        unknown = world.call("2999999999", UK, duration=5)
        for uuid in [*good, short, blocked, unknown]:
            world.wait(uuid, timeout=30)
        world.settle()
        m = scrape(world)
        assert m[("rater_calls_authorized_total", ())] == 4
        assert m[("rater_calls_refused_total", (("reason", "blocked_destination"),))] == 1
        assert m[("rater_calls_refused_total", (("reason", "unknown_account"),))] == 1
        assert m[("rater_park_decision_seconds_count", ())] == 6
        assert m[("rater_calls_cut_off_total", ())] == 1
        assert m[("rater_commits_total", (("settlement", "final"),))] == 4
        # 3 x 2 s + 5 s at 10000 micros/s
        assert m[("rater_charged_micros_total", (("level", "0"),))] == 110_000
        assert m[("rater_esl_connected", (("node", "fs1"),))] == 1
        assert m[("rater_live_legs", ())] == 0
        assert m[("rater_esl_events_total", (("node", "fs1"),))] >= 4 * 3 + 2 * 2
        assert m[("rater_outbox_lag_entries", ())] == 0
        assert m[("rater_snapshot_version", ())] == world.daemon.snapshots.version
        assert m[("rater_reservations_total", (("result", "ok"),))] >= 3
        host, port = world.daemon.status.address
        health = json.loads(urllib.request.urlopen(
            f"http://{host}:{port}/health", timeout=5).read())
        assert (health["healthy"], health["status"], health["redis"]) == (True, "ok", "ok")
        assert health["freeswitch"] == {"fs1": "ready"}


@pytest.mark.slow
def test_health_names_the_failing_dependency(cfg, database_url):
    with running_world(cfg, database_url) as world:
        world.sim.stop()  # FreeSWITCH goes away
        deadline = time.monotonic() + 10
        while "freeswitch:fs1" not in world.daemon.health()["problems"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        host, port = world.daemon.status.address
        report = json.loads(urllib.request.urlopen(
            f"http://{host}:{port}/health", timeout=5).read())
        assert report["status"] == "degraded"  # still rating-capable: Redis and snapshot
        world.daemon.snapshots.current = None
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://{host}:{port}/health", timeout=5)
        assert err.value.code == 503
        assert "snapshot" in json.loads(err.value.read())["problems"]


@pytest.mark.slow
def test_json_logs_carry_the_call_uuid(cfg, database_url):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    setup_logging(LogConfig(format="json", level="INFO"), stream)
    try:
        with running_world(cfg, database_url, password="Pa55-w0rd-xyz") as world:
            uuid = world.call(P1, "449012345", duration=3)  # refused: logged with its reason
            world.wait(uuid)
            world.settle()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    refused = [r for r in lines if "refused" in r["message"]]
    assert refused and all(r["call_uuid"] == uuid for r in refused)
    assert all(r["level"] in {"DEBUG", "INFO", "WARNING", "ERROR"} for r in lines)
    assert "Pa55-w0rd-xyz" not in stream.getvalue()


@pytest.mark.slow
def test_rater_run_with_the_example_config_rates_calls_and_stops_on_sigterm(
        servers, database_url, redis_url, tmp_path):
    from rater.config import load_config

    env = {**os.environ, "RATER_DATABASE_URL": database_url, "RATER_REDIS_URL": redis_url,
           "RATER_ESL_PASSWORD": "s3cret-pass"}
    cfg = load_config(REPO / "config" / "rater.toml", env=env)
    with psycopg.connect(database_url) as conn:
        import_dataset_file(conn, REPO / "config" / "example-dataset.json")
    rds = redis_client(cfg)
    sync_once(cfg, rds)
    rds.close()
    sim = subprocess.Popen(
        [sys.executable, "-m", "fssim", "--listen", "127.0.0.1:0", "--cps", "5",
         "--count", "10", "--talk", "1:2", "--accounts", "2000000022",
         "--destinations", "447700900123", "--wait-listener"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = int(sim.stdout.readline().strip().rsplit(":", 1)[1])
    config = tmp_path / "rater.toml"
    text = (REPO / "config" / "rater.toml").read_text()
    text = text.replace("port = 8021", f"port = {port}").replace("port = 9464", "port = 0")
    text = text.replace('listen = "127.0.0.1:8084"', 'listen = "127.0.0.1:0"')  # any free one
    assert 'listen = "127.0.0.1:0"' in text
    config.write_text(text)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "rater.cli", "run", "--config", str(config)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        sim_out, _ = sim.communicate(timeout=120)
        assert sim.returncode == 0, sim_out
        deadline = time.monotonic() + 60
        with psycopg.connect(database_url, autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM cdrs").fetchone()[0] < 10:
                assert time.monotonic() < deadline, "the daemon did not rate the calls"
                time.sleep(0.2)
            (cost,) = conn.execute("SELECT min(total_cost) FROM cdrs").fetchone()
        assert cost > 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, out
    assert "rater stopped" in out
    assert "s3cret-pass" not in out + sim_out
