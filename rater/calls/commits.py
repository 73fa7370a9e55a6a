"""Commits of finished legs: charged once, and tried again until Redis takes them.

A commit is idempotent (its operation id), so a commit Redis did not answer is tried again
in the background: while Redis is unreachable or busy, until it answers; after a script
error, SCRIPT_ERROR_ATTEMPTS times in all. A leg whose commit is pending here is this
process's: the periodic Redis adoption leaves it alone (`is_pending`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

import gevent
import gevent.pool
import redis

from rater.backoff import Backoff
from rater.calls import leg as L
from rater.calls.registry import LiveLeg
from rater.clock import Clock
from rater.errors import LedgerBusy, LedgerError
from rater.ledger.client import Ledger
from rater.metrics import Metrics
from rater.reasons import LegRefusal, SettlementKind

log = logging.getLogger(__name__)

# A commit whose script fails (not Redis being unreachable) is tried this often in all.
SCRIPT_ERROR_ATTEMPTS = 5


class Outcome(enum.Enum):
    DONE = "done"        # committed, or refused for good (a replay, an unknown leg)
    RETRY = "retry"      # Redis unreachable or busy: try again until it answers
    FAILED = "failed"    # the script failed: try again a few times, then give up


class Commits:
    """The commits of one call handler, and those it is still trying."""

    def __init__(self, ledger: Ledger, metrics: Metrics, clock: Clock,
                 recreate: Callable[[str, LiveLeg], bool]) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.clock = clock
        self._recreate = recreate  # authorize again a leg Redis lost (unknown_leg)
        self._group = gevent.pool.Group()  # commits tried again in the background
        self.pending: dict[str, L.Commit] = {}

    def commit(self, uuid: str, live: LiveLeg, c: L.Commit) -> None:
        """Commit a finished leg; when Redis does not take it, keep trying in the background."""
        if self._try_commit(uuid, live, c) is not Outcome.DONE:
            # Redis is unreachable, or the script failed: the commit is idempotent, so it is
            # tried again in the background (see _commit_until_done)
            self.pending[uuid] = c
            g = self._group.spawn(self._commit_until_done, uuid, live, c)
            g.link_exception(_log_failure)

    def _try_commit(self, uuid: str, live: LiveLeg, c: L.Commit) -> Outcome:
        try:
            res = self.ledger.commit(
                live.keys, uuid, c.billed_seconds, hangup_cause=c.cause,
                created_usec=c.created_usec, answered_usec=c.answered_usec,
                hangup_usec=c.hangup_usec, settlement=c.settlement,
            )
        except (redis.RedisError, LedgerBusy) as exc:
            self.metrics.redis_errors.inc()
            log.warning("call %s: commit failed (will retry): %s", uuid, exc)
            return Outcome.RETRY
        except LedgerError as exc:
            self.metrics.redis_errors.inc()
            log.error("call %s: commit script failed: %s", uuid, exc)
            return Outcome.FAILED
        if not res.ok and c.settlement == SettlementKind.WITHDRAWN:
            return Outcome.DONE  # unknown_leg: the authorization never landed, nothing to undo
        if not res.ok and res.reason == LegRefusal.UNKNOWN_LEG and self._recreate(uuid, live):
            return self._try_commit(uuid, live, c)
        if not res.ok:
            log.error("call %s: commit refused: %s", uuid, res.reason)
            return Outcome.DONE
        self.metrics.commits.labels(c.settlement).inc()
        for level, cost in enumerate(res.level_costs):
            self.metrics.charged.labels(str(level)).inc(cost)
        return Outcome.DONE

    def is_pending(self, uuid: str) -> bool:
        """True while this process retries the commit of `uuid` (Redis did not answer)."""
        return uuid in self.pending

    def _commit_until_done(self, uuid: str, live: LiveLeg, c: L.Commit) -> None:
        """Retry a commit: while Redis is unreachable or busy, until it answers; after a
        script error, SCRIPT_ERROR_ATTEMPTS times in all. A commit given up leaves the leg
        live in Redis, where the next start finds it ended and settles it again (from the
        switch's record); the log line keeps everything the commit knew."""
        backoff = Backoff(0.2, 5.0, jitter=0.0, clock=self.clock)
        failures = 1
        try:
            while True:
                gevent.sleep(backoff.next_delay())
                outcome = self._try_commit(uuid, live, c)
                if outcome is Outcome.DONE:
                    return
                if outcome is Outcome.FAILED:
                    failures += 1
                    if failures >= SCRIPT_ERROR_ATTEMPTS:
                        self.metrics.commit_failures.inc()
                        log.error("call %s: commit given up after %d script errors; the "
                                  "leg stays live in Redis (%s)", uuid, failures, c)
                        return
        finally:
            self.pending.pop(uuid, None)

    def wait(self, timeout: float) -> bool:
        """Wait (up to `timeout`) for commits still being retried; True when none is left.
        At shutdown, the daemon then stops the rest (stop)."""
        done: bool = self._group.join(timeout=timeout)  # gevent is untyped
        return done

    def stop(self) -> int:
        """Stop the commits still being retried; returns how many. Each leg stays live in
        Redis: the next start finds its channel gone and settles it from the switch's
        record, with its real times."""
        left = dict(self.pending)
        for uuid, commit in left.items():
            log.warning("call %s: commit still pending at shutdown (%s); the next start "
                        "settles it", uuid, commit)
        self._group.kill(timeout=1.0)
        return len(left)


def _log_failure(g: gevent.Greenlet) -> None:
    log.error("a commit retry stopped on an unexpected error", exc_info=g.exc_info)
