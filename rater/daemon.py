"""The rating daemon: wires the parts together and runs them under one supervisor.

Start-up fails fast (Redis reachable and seeded for this shard count, a snapshot published,
PostgreSQL reachable when the flusher runs here); readiness does not wait for FreeSWITCH.
Shutdown (SIGTERM/SIGINT) under one deadline: stop taking new calls, finish the work
already queued, settle what can be settled, flush the outbox, stop. Live calls keep their
safety net in FreeSWITCH and their state in Redis: the next start adopts them.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
from typing import Any

import gevent
import psycopg
import redis

from rater import sdnotify
from rater.calls.adoption import NodeCheck
from rater.calls.decision_socket import DecisionSocket
from rater.calls.handler import CallHandler
from rater.calls.switch import NodeLink, switch_event
from rater.calls.switch_records import NoSwitchRecords, PostgresSwitchRecords
from rater.clock import Clock, SystemClock
from rater.config import Config, mask_url
from rater.errors import RaterError, SwitchError
from rater.esl.dispatch import KeyedDispatcher
from rater.flusher.flusher import Flusher
from rater.flusher.writer import postgres_connector
from rater.http import StatusServer
from rater.ledger.client import Ledger
from rater.logs import call_uuid
from rater.metrics import Metrics
from rater.redis_client import keyspace_of, make_redis
from rater.snapshot_watcher import SnapshotHolder
from rater.supervisor import Supervisor

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 10.0        # seconds for queued call work and commits at shutdown
ADOPTION_TIMEOUT = 10.0      # seconds to list a node's channels after a (re)connect


class StartupError(RaterError):
    """A dependency the daemon cannot start without (the message says which)."""


class Daemon:
    """One `rater run` process."""

    def __init__(self, cfg: Config, *, clock: Clock | None = None,
                 metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.redis = make_redis(cfg.redis)
        self.keys = keyspace_of(cfg.redis)
        self.ledger = Ledger(self.redis, self.keys, cfg.rating.leg_ttl_seconds, self.clock)
        self.snapshots = SnapshotHolder(self.redis, self.keys, cfg.snapshot.poll_interval,
                                        self.metrics)
        self.supervisor = Supervisor(self.clock)
        self.dispatcher: KeyedDispatcher[tuple[str, object]] = KeyedDispatcher(
            self._work, _first, max_workers=1024, name="calls")
        self.nodes = {n.name: NodeLink(n, self.dispatcher.submit, self._node_connected,
                                       self.metrics, self.clock) for n in cfg.freeswitch}
        self.records = (
            PostgresSwitchRecords(cfg.database.url, cfg.switch_records.table,
                                  cfg.database.connect_timeout)
            if cfg.switch_records.source == "postgres" else NoSwitchRecords())
        self.handler = CallHandler(
            cfg, self.ledger, lambda: self.snapshots.current, self.nodes,
            lambda uuid, event: self.dispatcher.submit((uuid, event)), self.metrics, self.clock,
            self.records)
        self.decisions: DecisionSocket | None = None
        address = cfg.decision_socket.address()
        if address is not None:
            self.handler.keep_unclaimed = True
            self.decisions = DecisionSocket(
                *address, self.nodes, self.dispatcher.submit, self.metrics,
                timeout=max(n.command_timeout for n in cfg.freeswitch),
                decide_within=cfg.decision_socket.decide_within, clock=self.clock)
        self.checks = {name: NodeCheck(self.handler, link, ADOPTION_TIMEOUT,
                                       busy=self.dispatcher.busy)
                       for name, link in self.nodes.items()}
        self.flusher: Flusher | None = None
        if cfg.flusher.enabled:
            consumer = f"{socket.gethostname()}:{os.getpid()}:daemon"
            self.flusher = Flusher(
                self.redis, postgres_connector(cfg.database.url, cfg.database.connect_timeout),
                self.keys, cfg.flusher, consumer, self.clock)
        self.status: StatusServer | None = None
        self._flusher_seen = (0, 0, 0)  # entries, db failures, redis failures already counted
        self.started = False

    # --- per-call work (in the dispatcher, one uuid at a time) ------------------------------

    def _work(self, item: tuple[str, object]) -> None:
        uuid, payload = item
        token = call_uuid.set(uuid)
        try:
            if isinstance(payload, tuple):  # (node, ChannelEvent) straight from a reader
                payload = switch_event(*payload)
            self.handler.handle(uuid, payload)
        finally:
            call_uuid.reset(token)  # event_queue_depth: set by _gauges every second

    def _node_connected(self, link: NodeLink) -> None:
        self.metrics.esl_connected.labels(link.name).set(1)
        self.checks[link.name].run(after_connect=True)

    def _channel_sync(self, stop: gevent.event.Event) -> None:
        """Every rating.channel_sync_interval: each connected node's channels against
        the legs rated on it (rater.calls.adoption)."""
        while not stop.wait(self.cfg.rating.channel_sync_interval):
            for name, link in self.nodes.items():
                if not link.ready:
                    continue  # its reconnection checks it
                try:
                    self.checks[name].run(after_connect=False)
                except (SwitchError, ValueError) as exc:
                    log.warning("node %s: channel check failed: %s", name, exc)

    # --- life cycle -------------------------------------------------------------------------

    def check_dependencies(self) -> None:
        """Fail fast with a message naming what is missing."""
        try:
            self.redis.ping()
            shards = self.redis.hget(self.keys.meta, "shards")
        except redis.RedisError as exc:
            raise StartupError(f"Redis at {mask_url(self.cfg.redis.url)}: {exc}") from None
        if shards is None:
            raise StartupError("Redis holds no accounts yet: run `loader sync` first")
        if int(shards) != self.keys.shards:
            raise StartupError(f"Redis was seeded for {int(shards)} shards, redis.shards is "
                               f"{self.keys.shards}")
        if not self.snapshots.refresh() and self.snapshots.current is None:
            raise StartupError("no rating snapshot is published: run `loader sync` first")
        if self.flusher is not None:
            try:
                with psycopg.connect(self.cfg.database.url,
                                     connect_timeout=int(self.cfg.database.connect_timeout)):
                    pass
            except psycopg.OperationalError as exc:
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreachable"
                raise StartupError(
                    f"PostgreSQL at {mask_url(self.cfg.database.url)}: {reason}") from None

    def start(self) -> None:
        """Check dependencies and start every part (returns at once)."""
        self.check_dependencies()
        sup, stop = self.supervisor, self.supervisor.stop_requested
        sup.spawn("snapshot-watcher", lambda: self.snapshots.run(stop))
        for link in self.nodes.values():
            sup.spawn(f"{link.name}/commands", link.commands.run)
            sup.spawn(f"{link.name}/events", link.events.run)
        flusher = self.flusher
        if flusher is not None:
            sup.spawn("flusher", lambda: flusher.run(stop))
        if self.cfg.renewal.enabled:
            sup.spawn("renewals", lambda: self._renewals(stop))
        sup.spawn("gauges", lambda: self._gauges(stop))
        sup.spawn("channel-sync", lambda: self._channel_sync(stop))
        if self.decisions is not None:
            try:
                self.decisions.start()
            except OSError as exc:
                raise StartupError(f"decision_socket.listen {self.cfg.decision_socket.listen}: "
                                   f"{exc.strerror or exc}") from None
            log.info("decision socket on %s:%d", *self.decisions.address)
        if self.cfg.metrics.enabled:
            self.status = StatusServer(self.cfg.metrics.host, self.cfg.metrics.port,
                                       self.metrics, self.health)
            self.status.start()
            log.info("metrics and health on http://%s:%d/metrics", *self.status.address)
        self.started = True
        # Modules, config and the loaded snapshot live as long as the process: out of the
        # collector's sight. And collect young objects every 50000 allocations, not 700: at
        # 1000 calls/s the default thresholds ran ~100 collections a second (5% of the CPU)
        # and a full one every second or two (~45 ms each, stalling every call in flight).
        # Garbage here is mostly freed by reference counting; cycles wait a little longer.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        sdnotify.notify("READY=1")
        log.info("rater started: %d FreeSWITCH node(s), snapshot v%s",
                 len(self.nodes), self.snapshots.version)

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT (or a fatal failure), stop. Exit status."""
        self.supervisor.install_signal_handlers()
        self.start()
        watchdog = sdnotify.watchdog_interval()
        while not self.supervisor.wait(watchdog or 3600):
            if watchdog and self.health()["healthy"]:
                sdnotify.notify("WATCHDOG=1")
        self.stop()
        if self.supervisor.failure:
            log.error("stopped: %s", self.supervisor.failure)
            return 1
        return 0

    def stop(self) -> None:
        """Graceful stop under one deadline; a second signal skips the grace period."""
        sdnotify.notify("STOPPING=1")
        self.supervisor.stop_requested.set()
        self.handler.accepting = False
        if self.decisions is not None:
            self.decisions.stop()  # the switch cannot connect now: its dialplan parks calls
        grace = 0.0 if self.supervisor.signals > 1 else SHUTDOWN_GRACE
        deadline = time.monotonic() + grace
        self.dispatcher.join(max(0.0, deadline - time.monotonic()))
        for uuid in self.handler.legs.uuids():
            live = self.handler.legs.get(uuid)
            if live is not None:
                self.handler.legs.cancel_timers(live)  # their safety net stays armed
        if not self.handler.commits.wait(max(0.0, deadline - time.monotonic())):
            self.handler.commits.stop()
        for link in self.nodes.values():
            link.events.stop(timeout=1.0)
            link.commands.stop(timeout=1.0)
        if self.flusher is not None and grace:
            self._final_flush(self.flusher, deadline)
        self.dispatcher.close(timeout=1.0)
        self.supervisor.kill_all(timeout=2.0)
        if self.status is not None:
            self.status.stop()
        if self.flusher is not None:
            self.flusher.close()
        self.records.close()
        self.redis.close()
        log.info("rater stopped")

    def _final_flush(self, flusher: Flusher, deadline: float) -> None:
        try:
            while time.monotonic() < deadline and flusher.flush_once(block_ms=1) > 0:
                pass
        except Exception as exc:  # the next start flushes what is left
            log.warning("final flush stopped: %s", exc)

    # --- background loops -------------------------------------------------------------------

    def _renewals(self, stop: gevent.event.Event) -> None:
        from rater.packages.renewals import run_renewals

        while not stop.wait(self.cfg.renewal.interval):
            try:
                summary = run_renewals(self.cfg)
            except Exception as exc:  # retried next interval; renewals are idempotent
                log.warning("package renewals failed: %s", exc)
                continue
            for outcome, items in (("renewed", summary.renewed),
                                   ("released", summary.released),
                                   ("failed", summary.failed)):
                if items:
                    self.metrics.renewals.labels(outcome).inc(len(items))

    def _gauges(self, stop: gevent.event.Event) -> None:
        while not stop.wait(1.0):
            self.metrics.live_legs.set(len(self.handler.legs))
            self.metrics.oldest_leg_seconds.set(
                self.handler.legs.oldest_age(self.clock.monotonic()))
            self.metrics.max_call_seconds.set(self.cfg.rating.max_call_seconds)
            self.metrics.event_queue_depth.set(self.dispatcher.pending)
            for link in self.nodes.values():
                self.metrics.esl_connected.labels(link.name).set(1 if link.ready else 0)
            if self.flusher is not None:
                try:
                    entries, age = self.flusher.lag()
                except redis.RedisError:
                    self.metrics.redis_errors.inc()
                    continue
                self.metrics.outbox_lag_entries.set(entries)
                self.metrics.outbox_lag_seconds.set(age)
                self._count_flusher_stats(self.flusher)

    def _count_flusher_stats(self, flusher: Flusher) -> None:
        stats = flusher.stats
        now = (stats.entries, stats.db_failures, stats.redis_failures)
        seen = self._flusher_seen
        self.metrics.flushed_entries.inc(max(0, now[0] - seen[0]))
        self.metrics.postgres_errors.inc(max(0, now[1] - seen[1]))
        self.metrics.redis_errors.inc(max(0, now[2] - seen[2]))
        self._flusher_seen = now

    # --- health -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Which dependency is unhealthy; healthy needs Redis and a snapshot (FreeSWITCH
        nodes and the flusher's PostgreSQL are reported, and degrade the status)."""
        report: dict[str, Any] = {"healthy": True, "problems": []}
        try:
            self.redis.ping()
            report["redis"] = "ok"
        except redis.RedisError as exc:
            report["redis"] = f"error: {exc}"
            report["healthy"] = False
            report["problems"].append("redis")
        snap = self.snapshots.current
        report["snapshot"] = None if snap is None else {
            "version": snap.version, "age_seconds": round(time.time() - snap.built_at, 1)}
        if snap is None:
            report["healthy"] = False
            report["problems"].append("snapshot")
        report["freeswitch"] = {name: link.events.state.value for name, link in self.nodes.items()}
        for name, link in self.nodes.items():
            if not link.ready:
                report["problems"].append(f"freeswitch:{name}")
        if self.flusher is not None:
            try:
                entries, age = self.flusher.lag()
                report["outbox"] = {"entries": entries, "age_seconds": round(age, 1)}
            except redis.RedisError:
                report["outbox"] = "unknown"
            backoff = self.flusher.backoff
            if backoff.failing:
                report["postgres"] = f"failing for {backoff.failing_for():.0f}s"
                report["problems"].append("postgres")
            else:
                report["postgres"] = "ok"
        report["live_legs"] = len(self.handler.legs)
        report["status"] = ("ok" if not report["problems"] else
                            "degraded" if report["healthy"] else "unhealthy")
        return report


def _first(item: tuple[str, object]) -> str:
    return item[0]
