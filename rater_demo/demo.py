"""One demo run: the whole product on one machine with nothing installed but Python.

Private Redis and PostgreSQL in a temporary directory, the example dataset, the FreeSWITCH
simulator placing calls, the daemon rating them: each call asks the daemon on its decision
socket (FreeSWITCH's `socket` application, as the shipped dialplan does; any free port) and
parks only when it is not decided there. Live progress every second, a summary from
PostgreSQL at the end (checked against the live Redis balances), and nothing left running.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import gevent
import psycopg
from gevent.event import Event

from fssim import LoadCounters, Simulator
from loader.dataset import import_dataset_file
from loader.migrate import migrate
from loader.sync import redis_client, sync_once
from rater.config import Config, FreeSwitchNode, load_config
from rater.daemon import Daemon
from rater.db import one_row
from rater.embedded import EmbeddedServers
from rater.money import format_micros
from rater.reconcile import reconcile

log = logging.getLogger(__name__)

EXAMPLE_DATASET = Path(__file__).resolve().parents[1] / "config" / "example-dataset.json"

# Who calls where (config/example-dataset.md), drawn uniformly: mostly good calls from
# prepaid, postpaid and three-level-chain customers, and a few that are refused (a
# suspended and an unknown account, a blocked prefix, a destination with no rate; 2000000004
# has max_channels 2).
DEMO_ACCOUNTS = ("2000000001", "2000000002", "2000000003", "2000000021", "2000000022",
                 "2000000001", "2000000002", "2000000003", "2000000021", "2000000022",
                 "2000000003", "2000000004", "2000000005", "2999999999")
DEMO_DESTINATIONS = ("447700900123", "447911123456", "442071230000", "442079460000",
                     "4915112345678", "4930123456", "12125550123", "13055550199",
                     "447700900456", "449012345678", "3312345678")


# Where the daemon listens for the calls' questions (any free port of it); a --config file
# says its own (`decision_socket.listen`, "" = off: calls park).
DECISION_SOCKET = "127.0.0.1:0"


@dataclasses.dataclass
class DemoOptions:
    cps: float = 20.0
    duration: float = 30.0
    talk: tuple[float, float] = (2.0, 12.0)
    metrics_port: int = 9464
    dataset: Path = EXAMPLE_DATASET
    config: Path | None = None


class Demo:
    """One demo run; `run()` returns the exit status."""

    def __init__(self, opts: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.opts = opts
        self.out = out
        self.stop = Event()
        self.interrupted = False
        self.load: LoadCounters | None = None

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run(self) -> int:
        handlers = [gevent.signal_handler(s, self._interrupt)
                    for s in (signal.SIGINT, signal.SIGTERM)]
        try:
            with EmbeddedServers() as servers:
                self.say(f"private Redis and PostgreSQL started in {servers.root}")
                return self._with_servers(servers)
        finally:
            for h in handlers:
                h.cancel()

    def _interrupt(self) -> None:
        if self.interrupted:  # a second Ctrl-C: stop waiting for calls to end
            self.stop.set()
        self.interrupted = True
        self.stop.set()

    def _with_servers(self, servers: EmbeddedServers) -> int:
        cfg = self._config(servers)
        with psycopg.connect(cfg.database.url) as conn:
            migrate(conn)
            summary = import_dataset_file(conn, self.opts.dataset)
        self.say(f"example dataset imported: {summary['accounts']} accounts, "
                 f"{summary['rates']} rates, {summary['products']} products")
        rds = redis_client(cfg)
        try:
            self.say(f"loader sync: {sync_once(cfg, rds).describe()}")
        finally:
            rds.close()
        sim = Simulator(heartbeat=20).start()
        node = FreeSwitchNode(name="sim", host="127.0.0.1", port=sim.port,
                              password=sim.password)
        cfg = dataclasses.replace(cfg, freeswitch=(node,))
        daemon = Daemon(cfg)
        try:
            daemon.start()
            host, port = daemon.status.address if daemon.status else ("-", 0)
            self.say(f"simulated FreeSWITCH on 127.0.0.1:{sim.port}; metrics on "
                     f"http://{host}:{port}/metrics, health on http://{host}:{port}/health")
            if daemon.decisions is not None:
                sim.decision_socket = where = daemon.decisions.address
                self.say(f"calls ask the daemon on its decision socket, {where[0]}:{where[1]}, "
                         "before they would park")
            sim.wait_for_listener(["CHANNEL_PARK"], timeout=10)
            self._drive(sim, daemon)
        finally:
            daemon.stop()
            sim.close()
        return self._summary(cfg, daemon)

    def _config(self, servers: EmbeddedServers) -> Config:
        env = {"RATER_DATABASE_URL": servers.postgres.url, "RATER_REDIS_URL": servers.redis.url}
        cfg = load_config(self.opts.config, env=env)
        return dataclasses.replace(
            cfg,
            rating=dataclasses.replace(cfg.rating, debit_interval=5, reserve_ahead=1.0),
            metrics=dataclasses.replace(cfg.metrics, port=_free_or_any(self.opts.metrics_port)),
            flusher=dataclasses.replace(cfg.flusher, block_ms=100),
            renewal=dataclasses.replace(cfg.renewal, enabled=False),
            decision_socket=dataclasses.replace(cfg.decision_socket, listen=_any_port(
                cfg.decision_socket.listen if self.opts.config else DECISION_SOCKET)),
        )

    def _drive(self, sim: Simulator, daemon: Daemon) -> None:
        gen = sim.run_load(self.opts.cps, duration=self.opts.duration,
                           destinations=DEMO_DESTINATIONS, accounts=DEMO_ACCOUNTS,
                           talk_seconds=self.opts.talk, answer_ratio=0.9, seed=7)
        self.load = gen.counters
        self.say(f"placing {self.opts.cps:g} calls/s for {self.opts.duration:g} s "
                 "(Ctrl-C to stop early)")
        self.say(" time  placed   cps  live  refused  charged (level 0 / 1 / 2)")
        started = last_t = time.monotonic()
        last_placed = 0
        while not gen.join(0) and not self.stop.wait(1.0):
            now = time.monotonic()
            placed = gen.counters.placed
            cps = (placed - last_placed) / max(1e-6, now - last_t)
            last_placed, last_t = placed, now
            self.say(self._progress_line(now - started, placed, cps, daemon))
        if not gen.join(0):
            gen.stop()
            self.stop.clear()
            self.say("stopping: no new calls; letting the calls in progress end "
                     "(Ctrl-C again to hang them up)")
            while not gen.join(0) and not self.stop.wait(1.0):
                self.say(self._progress_line(time.monotonic() - started, gen.counters.placed,
                                             0.0, daemon))
            for uuid in list(sim.live):
                sim.hangup(uuid)
        self._settle(daemon)

    def _progress_line(self, elapsed: float, placed: int, cps: float, daemon: Daemon) -> str:
        m = daemon.metrics
        refused = sum(s.value for s in _samples(m.calls_refused))
        charged = {s.labels["level"]: s.value for s in _samples(m.charged)}
        levels = " / ".join(format_micros(int(charged.get(str(i), 0))) for i in range(3))
        return (f"{elapsed:5.0f}s {placed:7d} {cps:5.1f} {len(daemon.handler.legs):5d} "
                f"{int(refused):8d}  {levels}")

    def _settle(self, daemon: Daemon, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lag = daemon.flusher.lag()[0] if daemon.flusher else 0
            if not daemon.handler.legs and not daemon.dispatcher.pending and lag == 0:
                return
            gevent.sleep(0.1)

    def _summary(self, cfg: Config, daemon: Daemon) -> int:
        with psycopg.connect(cfg.database.url) as conn:
            calls, answered, seconds, revenue = one_row(conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE billed_seconds > 0), "
                "COALESCE(sum(billed_seconds), 0), COALESCE(sum(total_cost), 0) FROM cdrs"
            ))
            by_level = conn.execute(
                "SELECT level, count(*), COALESCE(sum(cost), 0), "
                "COALESCE(sum(free_seconds), 0) FROM cdr_charges GROUP BY level ORDER BY level"
            ).fetchall()
            ledger: dict[str, int] = dict(conn.execute(
                "SELECT account, sum(amount) FROM ledger_entries GROUP BY account").fetchall())
            rds = redis_client(cfg)
            try:
                report = reconcile(rds, conn, daemon.keys)
            finally:
                rds.close()
        refused = Counter({s.labels["reason"]: int(s.value)
                           for s in _samples(daemon.metrics.calls_refused)})
        self.say()
        self.say("summary (from PostgreSQL)")
        self.say(f"  rated legs (CDRs)    {calls}")
        self.say(f"  answered             {answered}")
        self.say(f"  refused              {sum(refused.values())}  "
                 + ", ".join(f"{k}: {v}" for k, v in sorted(refused.items())))
        if self.load is not None:
            self.say(f"  decision socket      {self.load.on_socket} of {self.load.placed} "
                     f"calls decided there, {self.load.parked} parked")
        self.say(f"  billed seconds       {seconds}")
        self.say(f"  customer revenue     {format_micros(int(revenue))}")
        self.say("  level  legs  charged         package seconds")
        for level, legs, cost, free in by_level:
            self.say(f"  {level:5d} {legs:5d}  {format_micros(int(cost)):>14}  {free:>10}")
        self.say("  account      balance (ledger)")
        for account in sorted(ledger):
            self.say(f"  {account}  {format_micros(int(ledger[account])):>14}")
        diffs = len(report.differences)
        self.say(f"reconcile Redis vs PostgreSQL: {diffs} difference(s)")
        return 0 if diffs == 0 else 1


def _any_port(listen: str) -> str:
    """`host:0` (any free port) for a configured `host:port`; "" (off) stays off."""
    host, sep, _port = listen.rpartition(":")
    return f"{host}:0" if sep and host else listen


def _free_or_any(port: int) -> int:
    """`port` if nothing listens on it, else 0 (any free port)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def _samples(metric: Any) -> list[Any]:  # the samples of a labelled counter's "_total" series
    return [s for fam in metric.collect() for s in fam.samples if s.name.endswith("_total")]


def run_demo(opts: DemoOptions, out: TextIO = sys.stdout,
             log_setup: Callable[[], None] | None = None) -> int:
    """Run the demo; returns the exit status."""
    if log_setup:
        log_setup()
    return Demo(opts, out).run()
