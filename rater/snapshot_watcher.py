"""Keeps the daemon's rating snapshot current: wakes on the loader's announcement (or polls),
loads the new version, and swaps it in by assignment.

A call authorized before the swap keeps the plan it was given (its rates are pinned in its
Redis leg record); calls parked after the swap are rated on the new snapshot.
"""

from __future__ import annotations

import logging
import time

import gevent
import redis
from gevent.event import Event

from rater.ledger.keys import KeySpace
from rater.metrics import Metrics
from rater.rating.snapshot import Snapshot
from rater.rating.snapshot_format import SnapshotError
from rater.redis_client import RedisClient
from rater.snapshot_store import load_current

log = logging.getLogger(__name__)


class SnapshotHolder:
    """Holds the snapshot in use; `current` is replaced atomically, never mutated."""

    def __init__(
        self, client: RedisClient, keyspace: KeySpace, poll_interval: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._redis = client
        self._keys = keyspace
        self._poll = poll_interval
        self._metrics = metrics
        self.current: Snapshot | None = None
        self.loaded = Event()

    @property
    def version(self) -> int | None:
        return None if self.current is None else self.current.version

    def refresh(self) -> bool:
        """Load the published snapshot if it is newer than ours; True when swapped."""
        # gevent.sleep(0) between sections lets calls proceed while a big snapshot loads
        snap = load_current(self._redis, self._keys, self.version, pause=lambda: gevent.sleep(0))
        if snap is None:
            return False
        previous = self.version
        self.current = snap
        self.loaded.set()
        log.info("rating snapshot v%s in use (was v%s)", snap.version, previous)
        self._observe()
        return True

    def run(self, stop: Event) -> None:
        """Watch for new versions until `stop` is set (a supervised greenlet)."""
        pubsub = None
        while not stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self._keys.snapshot_channel)
                    self.refresh()  # covers announcements missed while unsubscribed
                pubsub.get_message(timeout=self._poll)
                self.refresh()
            except (redis.RedisError, SnapshotError) as exc:
                log.warning("snapshot watch: %s", exc)
                if self._metrics and isinstance(exc, redis.RedisError):
                    self._metrics.redis_errors.inc()
                if pubsub is not None:
                    pubsub.close()
                pubsub = None
                stop.wait(self._poll)
            self._observe()
        if pubsub is not None:
            pubsub.close()

    def _observe(self) -> None:
        if self._metrics is None or self.current is None:
            return
        self._metrics.snapshot_version.set(self.current.version)
        self._metrics.snapshot_age.set(max(0.0, time.time() - self.current.built_at))
