"""`rater run` as a real process against the simulator (in this process, over TCP), real
Redis and PostgreSQL: for fault runs that kill the daemon for real.

The world is tests/e2e_world.py's (retail = 10000 micro-units a second); the simulator writes
FreeSWITCH's per-call records (mod_cdr_pg_csv) into the test database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from fssim.records import RecordWriter
from fssim.simulator import Simulator
from loader.dataset import import_dataset
from loader.sync import redis_client, sync_once
from rater.config import Config
from tests.e2e_world import dataset

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "ClueCon"

CONFIG = """\
[redis]
shards = 16
[database]
connect_timeout = 3.0
[[freeswitch]]
name = "fs1"
port = {port}
command_timeout = 5.0
[rating]
debit_interval = {debit_interval}
reserve_ahead = 0.5
channel_sync_interval = 1.0
[switch_records]
wait_seconds = 30.0
[flusher]
block_ms = 50
max_backoff = 1.0
[metrics]
port = 0
[renewal]
enabled = false
[snapshot]
poll_interval = 0.2
"""


@dataclass
class ProcessWorld:
    cfg: Config
    sim: Simulator
    database_url: str
    redis_url: str
    config_path: Path
    log_path: Path
    daemon: subprocess.Popen | None = None

    def start_daemon(self) -> None:
        env = {**os.environ, "RATER_DATABASE_URL": self.database_url,
               "RATER_REDIS_URL": self.redis_url, "RATER_ESL_PASSWORD": PASSWORD}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "rater.cli", "run", "--config", str(self.config_path)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill_daemon(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGKILL)
        self.daemon.wait(10)
        self.daemon = None

    def stop_daemon(self, timeout: float = 60) -> int:
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGTERM)
        code = self.daemon.wait(timeout)
        self.daemon = None
        return code

    def sql(self, query: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def wait_for(self, cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; daemon log:\n"
                                   + self.log_path.read_text()[-3000:])
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text()


@contextmanager
def process_world(cfg: Config, database_url: str, redis_url: str, tmp: Path, *,
                  data: dict[str, Any] | None = None,
                  debit_interval: int = 2) -> Iterator[ProcessWorld]:
    with psycopg.connect(database_url) as conn:
        import_dataset(conn, data or dataset())
    rds = redis_client(cfg)
    try:
        sync_once(cfg, rds)
    finally:
        rds.close()
    writer = RecordWriter(database_url)
    sim = Simulator(password=PASSWORD, heartbeat=20, record_writer=writer,
                    max_sessions=5000).start()
    config_path = tmp / "rater.toml"
    config_path.write_text(CONFIG.format(port=sim.port, debit_interval=debit_interval))
    world = ProcessWorld(cfg, sim, database_url, redis_url, config_path, tmp / "daemon.log")
    try:
        yield world
    finally:
        if world.daemon is not None:
            world.daemon.kill()
            world.daemon.wait(10)
        sim.close()
        writer.close()
