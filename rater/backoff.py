"""Exponential backoff with jitter, for every reconnecting loop (ESL, flusher, loader sync).

It only computes delays; the caller waits, so tests check the delays without sleeping (the
clock and the random source are arguments)."""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from rater.clock import Clock, SystemClock


class Backoff:
    """Delays of initial * factor**n, capped at `maximum`, each moved by up to ±jitter.

    A success calls `reset()`. A link that can drop right after it comes up calls
    `connected()` instead: the count starts over only once the link has stayed up for
    `stable_after` seconds, so a flapping peer keeps backing off. `failing_for()` says how
    long the current run of failures has lasted (for logs and health).
    """

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 10.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.1,
        stable_after: float = 0.0,
        random: Callable[[], float] = _random.random,
        clock: Clock | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff: need 0 < initial <= maximum, factor >= 1, 0 <= jitter < 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.stable_after = stable_after
        self._random = random
        self._clock = clock or SystemClock()
        self.attempts = 0
        self._since: float | None = None
        self._up_since: float | None = None

    @property
    def failing(self) -> bool:
        return self.attempts > 0

    def connected(self) -> None:
        """A link is up: if it lasts `stable_after` seconds, the next delay is `initial`."""
        self._up_since = self._clock.monotonic()

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next try."""
        now = self._clock.monotonic()
        if self._up_since is not None:
            if now - self._up_since >= self.stable_after:
                self.reset()
            self._up_since = None
        if self._since is None:
            self._since = now
        base = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        # random() in [0, 1) -> a factor in [1 - jitter, 1 + jitter); never above the cap
        delay = base * (1 + self.jitter * (2 * self._random() - 1))
        return min(self.maximum, delay)

    def failing_for(self) -> float:
        """Seconds since the first failure of the current run (0 when not failing)."""
        if self._since is None:
            return 0.0
        return self._clock.monotonic() - self._since

    def reset(self) -> None:
        """A success: the next failure starts again from `initial`."""
        self.attempts = 0
        self._since = None
