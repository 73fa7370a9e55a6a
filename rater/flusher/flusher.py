"""The flusher loop: outbox streams -> PostgreSQL, exactly once in effect.

One batch: read entries (claimed from dead consumers, then our own pending ones, then new
ones), decode them, write every row in ONE PostgreSQL transaction, and only after the commit
delete and acknowledge the entries. A crash anywhere leaves the entries pending, and writing
them again is harmless (ON CONFLICT DO NOTHING). While PostgreSQL is down the same batch is
retried with backoff; a malformed entry is stored as a dead letter and acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import psycopg
import redis

from rater.backoff import Backoff
from rater.clock import Clock, SystemClock
from rater.config import FlusherConfig
from rater.errors import DatabaseUnavailable
from rater.flusher.decode import EntryRows, MalformedEntry, decode_fields
from rater.flusher.outbox import Outbox, OutboxEntry
from rater.flusher.writer import TABLES, BatchWriter, DeadLetter, RowsRejected, WriteResult
from rater.ledger.keys import KeySpace
from rater.redis_client import RedisClient

log = logging.getLogger("rater.flusher")

# Give other greenlets a turn this often while decoding (time.sleep(0) is gevent.sleep(0)
# once the daemon has monkey-patched; without gevent it only releases the GIL).
_YIELD_EVERY = 256
# While failing, repeat the warning at most this often (seconds); other failures log at DEBUG.
_REPEAT_WARNING = 30.0
# After a batch smaller than batch_size, the next one starts no sooner than this (seconds)
# after it, so entries trickling in are gathered: a batch costs a PostgreSQL transaction
# (four COPYs, a commit) and an acknowledgement whatever its size, and at a few entries per
# batch that fixed cost was most of the flusher's CPU. It delays durability in PostgreSQL
# (Redis has the entries already) by as much. At 0.1 s, 20 calls/s made two-call batches
# and the flusher cost 1 ms of CPU per call, a third of the daemon's (benchmarks/README.md).
GATHER_SECONDS = 0.5


class StopSignal(Protocol):
    """gevent.event.Event or threading.Event."""

    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass
class FlusherStats:
    """Running totals since start (plain counters; the daemon exports them as metrics)."""

    entries: int = 0            # entries made durable (including dead letters)
    batches: int = 0            # PostgreSQL transactions committed
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    duplicates: int = 0         # rows skipped because they were already there (replays)
    dead_letters: int = 0
    claimed: int = 0            # entries taken over from other consumers
    db_failures: int = 0        # batches that failed and were retried
    redis_failures: int = 0

    @property
    def cdrs(self) -> int:
        return self.rows["cdrs"]


@dataclass(slots=True)
class _Batch:
    entries: list[OutboxEntry]      # everything read: acknowledged after the commit
    sources: list[OutboxEntry]      # the entries that have rows, aligned with `rows`
    rows: list[EntryRows]
    dead: list[DeadLetter]


class Flusher:
    """Moves outbox entries of every shard into PostgreSQL. Several may run at once, each
    under its own consumer name (e.g. host:pid)."""

    def __init__(
        self,
        redis_client: RedisClient,
        connect: Callable[[], psycopg.Connection],
        keyspace: KeySpace,
        config: FlusherConfig,
        consumer: str,
        clock: Clock | None = None,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self.consumer = consumer
        self.clock = clock or SystemClock()
        self.outbox = Outbox(redis_client, keyspace.outboxes(), consumer)
        self.writer = BatchWriter(connect, consumer)
        self.backoff = backoff or Backoff(0.1, config.max_backoff, clock=self.clock)
        self.stats = FlusherStats()
        self._queue: deque[OutboxEntry] = deque()   # read, pending on us, not yet batched
        self._retained: _Batch | None = None        # a batch whose write must be retried
        self._groups_ready = False
        self._next_claim = 0.0
        self._last_warning = float("-inf")

    # --- one batch --------------------------------------------------------------------

    def flush_once(self, block_ms: int | None = None) -> int:
        """Flush one batch; returns the number of entries made durable (0: nothing to do).

        `block_ms` is how long to wait for new entries (default: config.block_ms; 0: no
        wait). Raises DatabaseUnavailable or a redis error when a store fails; the batch is
        kept (or left pending in Redis) and the next call retries it."""
        return self._flush(read=True, block_ms=block_ms)

    def _flush(self, read: bool, block_ms: int | None) -> int:
        batch = self._retained
        if batch is not None:
            self._keep_claim(batch)
        elif not read and not self._queue:
            return 0
        else:
            try:
                if not self._groups_ready:
                    self.outbox.ensure_groups()
                    self._groups_ready = True
                entries = self._next_entries(
                    self.config.block_ms if block_ms is None else block_ms)
            except redis.RedisError:
                self._redis_failed()
                raise
            if not entries:
                return 0
            batch = self._retained = self._decode(entries)
        try:
            result = self._write(list(zip(batch.sources, batch.rows, strict=True)), batch.dead)
        except DatabaseUnavailable:
            self.stats.db_failures += 1
            raise
        self._retained = None
        self._count(batch, result)
        try:
            self.outbox.ack(batch.entries)
        except redis.RedisError:
            # durable but not acknowledged: read again from our pending list (writing them
            # again changes nothing)
            self._redis_failed()
            raise
        return len(batch.entries)

    def flush_all(self, max_batches: int | None = None) -> int:
        """Flush until nothing is waiting (no blocking read); returns entries made durable."""
        total, n = 0, 0
        while max_batches is None or n < max_batches:
            done = self.flush_once(block_ms=0)
            if done == 0:
                break
            total += done
            n += 1
        return total

    # --- the loop ---------------------------------------------------------------------

    def run(self, stop: StopSignal) -> None:
        """Flush until `stop` is set. Store failures are retried with backoff (capped at
        config.max_backoff); anything else propagates to the supervisor."""
        log.info("flusher %s started on %d streams", self.consumer, len(self.outbox.streams))
        while not stop.is_set():
            started = self.clock.monotonic()
            try:
                done = self.flush_once()
            except (DatabaseUnavailable, redis.RedisError) as exc:
                delay = self.backoff.next_delay()
                self._warn(exc, delay)
                stop.wait(delay)
                continue
            if self.backoff.failing:
                log.info("flusher %s: stores are back after %.1f s; flushing resumed",
                         self.consumer, self.backoff.failing_for())
                self.backoff.reset()
            if 0 < done < self.config.batch_size:
                stop.wait(max(0.0, GATHER_SECONDS - (self.clock.monotonic() - started)))
        self._finish()
        log.info("flusher %s stopping", self.consumer)

    def _finish(self) -> None:
        # Entries already delivered to us (a retried batch, claimed or own pending ones not
        # yet batched): one try each to make them durable before stopping, reading no more.
        try:
            while self._flush(read=False, block_ms=0):
                pass
        except (DatabaseUnavailable, redis.RedisError) as exc:
            log.warning("flusher %s: stopping with entries not yet durable (%s); they stay "
                        "pending for the next flusher", self.consumer, exc)

    def close(self) -> None:
        """Close the PostgreSQL connection; leave the consumer group cleanly if nothing is
        pending on us (otherwise another flusher claims the entries after claim_idle_ms)."""
        self.writer.close()
        if self._retained is None and not self._queue:
            try:
                self.outbox.release_consumer()
            except redis.RedisError as exc:
                log.debug("flusher %s: could not leave the group: %s", self.consumer, exc)

    # --- observing --------------------------------------------------------------------

    def lag(self) -> tuple[int, float]:
        """(entries not yet durable, age in seconds of the oldest one; 0.0 when none)."""
        entries, oldest_ms = self.outbox.backlog()
        if oldest_ms is None:
            return entries, 0.0
        return entries, max(0.0, self.clock.now() - oldest_ms / 1000.0)

    def pending(self) -> int:
        """Entries delivered to a flusher (any) and not yet acknowledged."""
        return self.outbox.pending()

    # --- internals ----------------------------------------------------------------------

    def _next_entries(self, block_ms: int) -> list[OutboxEntry]:
        size = self.config.batch_size
        if not self._queue:
            self._fill_queue(block_ms)
        n = min(size, len(self._queue))
        return [self._queue.popleft() for _ in range(n)]

    def _fill_queue(self, block_ms: int) -> None:
        size = self.config.batch_size
        now = self.clock.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + max(self.config.claim_idle_ms / 2000.0, 0.1)
            claimed = self.outbox.claim(self.config.claim_idle_ms, size)
            if claimed:
                self.stats.claimed += len(claimed)
                log.warning("flusher %s: claimed %d entries pending for over %d ms (a "
                            "stopped flusher, or a lost reply)", self.consumer, len(claimed),
                            self.config.claim_idle_ms)
                self._queue.extend(claimed)
                return
        if self.outbox.has_own_pending:
            own = self.outbox.read_own(size)
            if own:
                self._queue.extend(own)
                return
        self._queue.extend(self.outbox.read_new(size, block_ms))

    def _decode(self, entries: list[OutboxEntry]) -> _Batch:
        sources: list[OutboxEntry] = []
        rows: list[EntryRows] = []
        dead: list[DeadLetter] = []
        for i, entry in enumerate(entries):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                time.sleep(0)
            try:
                decoded = decode_fields(entry.fields)
            except MalformedEntry as exc:
                dead.append(self._dead_letter(entry, str(exc)))
                continue
            except Exception as exc:  # a bug must not block the stream: keep it, say so
                log.exception("flusher %s: entry %s %s could not be decoded", self.consumer,
                              entry.stream, entry.id)
                dead.append(self._dead_letter(entry, f"{type(exc).__name__}: {exc}"))
                continue
            if decoded is not None:
                sources.append(entry)
                rows.append(decoded)
        return _Batch(entries, sources, rows, dead)

    def _dead_letter(self, entry: OutboxEntry, error: str) -> DeadLetter:
        log.error("flusher %s: outbox entry %s %s set aside as a dead letter: %s",
                  self.consumer, entry.stream, entry.id, error)
        return DeadLetter(entry.stream, entry.id, _raw_text(entry.fields), error)

    def _write(
        self, pairs: list[tuple[OutboxEntry, EntryRows]], dead: list[DeadLetter]
    ) -> WriteResult:
        """Write everything; when PostgreSQL refuses some row, split the batch until the
        refused entries are alone, and store those as dead letters."""
        try:
            return self.writer.write([rows for _, rows in pairs], dead)
        except RowsRejected as exc:
            if not pairs:        # the dead letters themselves were refused: retry, loudly
                raise DatabaseUnavailable(f"dead letters refused: {exc}") from exc
            if len(pairs) == 1:
                letter = self._dead_letter(pairs[0][0], f"rejected by PostgreSQL: {exc}")
                return self._write([], [*dead, letter])
        half = len(pairs) // 2
        return _merge(self._write(pairs[:half], dead), self._write(pairs[half:], []))

    def _keep_claim(self, batch: _Batch) -> None:
        # retrying after a failure: tell the other flushers we are alive (best effort)
        try:
            self.outbox.touch(batch.entries)
        except redis.RedisError as exc:
            log.debug("flusher %s: could not touch the batch: %s", self.consumer, exc)

    def _redis_failed(self) -> None:
        # Entries may have been delivered to us with the reply lost: read our pending list.
        self._queue.clear()
        self.outbox.mark_own_pending()
        self.stats.redis_failures += 1

    def _count(self, batch: _Batch, result: WriteResult) -> None:
        s = self.stats
        s.entries += len(batch.entries)
        s.batches += 1
        for table, n in result.inserted.items():
            s.rows[table] += n
        s.duplicates += result.duplicates
        s.dead_letters += result.dead_letters

    def _warn(self, exc: Exception, delay: float) -> None:
        now = self.clock.monotonic()
        what = "PostgreSQL" if isinstance(exc, DatabaseUnavailable) else "Redis"
        if now - self._last_warning >= _REPEAT_WARNING:
            self._last_warning = now
            log.warning("flusher %s: %s unavailable for %.1f s (%s); retrying in %.2f s, "
                        "nothing is acknowledged", self.consumer, what,
                        self.backoff.failing_for(), exc, delay)
        else:
            log.debug("flusher %s: retry in %.2f s: %s", self.consumer, delay, exc)


def _merge(a: WriteResult, b: WriteResult) -> WriteResult:
    return WriteResult(
        {t: a.staged[t] + b.staged[t] for t in TABLES},
        {t: a.inserted[t] + b.inserted[t] for t in TABLES},
        a.orders_updated + b.orders_updated,
        a.dead_letters + b.dead_letters,
    )


def _raw_text(fields: dict) -> str:
    raw = fields.get(b"e", fields.get("e"))
    if raw is None:
        raw = repr(fields)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "backslashreplace")
    return raw.replace("\x00", "\\x00")
