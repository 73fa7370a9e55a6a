"""Keyed dispatch: one key's items strictly in order, different keys concurrently.

The ESL reader hands every event to `KeyedDispatcher.submit()` (never blocks) and goes
back to the socket. Each key with work (a channel uuid) is given to one worker greenlet,
which drains that key's queue; at most `max_workers` run at once, and keys beyond that wait
their turn in arrival order. A worker with nothing left to do parks, up to `max_idle` of
them, and the next new key wakes a parked worker instead of spawning a greenlet (a wake-up
costs an eighth of a spawn, and a call brings half a dozen keys-with-work to the
dispatcher); beyond `max_idle` a worker ends. A handler that raises is logged with its key
and the worker carries on with the next item.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from gevent.event import Event
from gevent.hub import Waiter, get_hub
from gevent.pool import Group

log = logging.getLogger(__name__)

T = TypeVar("T")

_STOP = object()  # handed to a parked worker: end


class DispatcherClosed(RuntimeError):
    """submit() after close()."""


class DispatcherState(enum.Enum):
    OPEN = "open"  # accepting items
    CLOSING = "closing"  # close() called: draining what is queued, refusing new items
    CLOSED = "closed"


class KeyedDispatcher(Generic[T]):
    """Run `handler(item)` for each submitted item, in order per `key(item)`."""

    def __init__(
        self,
        handler: Callable[[T], object],
        key: Callable[[T], Hashable],
        *,
        max_workers: int = 256,
        max_idle: int = 32,
        name: str = "dispatch",
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if max_idle < 0:
            raise ValueError("max_idle must not be negative")
        self._handler = handler
        self._key = key
        self._max_workers = max_workers
        self._max_idle = min(max_idle, max_workers)
        self._name = name
        self._queues: dict[Hashable, deque[T]] = {}  # keys with work, queued or running
        self._waiting: deque[Hashable] = deque()  # keys with work but no worker yet
        self._parked: list[Waiter] = []  # idle workers, each waiting for a key
        self._workers = Group()
        self._busy = 0  # workers with a key (not parked)
        self._idle = Event()
        self._idle.set()
        self.state = DispatcherState.OPEN
        self.handled = 0
        self.failed = 0
        self._pending = 0  # items in the queues: read after every item, so kept, not summed

    @property
    def pending(self) -> int:
        """Items submitted and not yet handled (running ones included)."""
        return self._pending

    def busy(self, key: Hashable) -> bool:
        """Whether items of `key` are queued or running."""
        return key in self._queues

    @property
    def active_keys(self) -> int:
        return len(self._queues)

    @property
    def parked_workers(self) -> int:
        """Idle workers waiting for a key."""
        return len(self._parked)

    def submit(self, item: T) -> None:
        """Queue `item` behind earlier items of its key. Never blocks."""
        if self.state is not DispatcherState.OPEN:
            raise DispatcherClosed(f"{self._name}: {self.state.value}")
        key = self._key(item)
        queue = self._queues.get(key)
        self._pending += 1
        if queue is not None:  # a worker (running or waiting) will get to it
            queue.append(item)
            return
        self._queues[key] = deque((item,))
        self._idle.clear()
        if self._parked:
            # the hub resumes the parked worker (switching to it from here would never
            # come back to this greenlet)
            self._busy += 1
            get_hub().loop.run_callback(self._parked.pop().switch, key)
        elif self._busy < self._max_workers:
            self._busy += 1
            self._workers.spawn(self._work, key)
        else:
            self._waiting.append(key)

    def _work(self, key: Hashable) -> None:
        while True:
            queue = self._queues[key]
            while queue:
                item = queue[0]  # stays visible in `pending` while it runs
                try:
                    self._handler(item)
                    self.handled += 1
                except Exception:
                    self.failed += 1
                    log.exception("%s: handler failed for key %r", self._name, key)
                queue.popleft()
                self._pending -= 1
            # No yield between the emptiness check above and this removal, so a
            # concurrent submit() either saw the queue (and we handled it) or sees none.
            del self._queues[key]
            if self._waiting:
                key = self._waiting.popleft()
                continue
            self._busy -= 1
            if not self._queues:
                self._idle.set()
            if (len(self._parked) >= self._max_idle
                    or self.state is not DispatcherState.OPEN):
                return
            waiter = Waiter()
            self._parked.append(waiter)
            key = waiter.get()  # submit() counted us busy again
            if key is _STOP:
                return

    def join(self, timeout: float) -> bool:
        """Wait until every submitted item is handled; False if `timeout` passed first."""
        return self._idle.wait(timeout=timeout)

    def close(self, timeout: float) -> bool:
        """Refuse new items, let queued ones finish for up to `timeout` seconds, then
        kill what is left; parked workers end. Returns True if everything finished in
        time."""
        self.state = DispatcherState.CLOSING
        finished = self.join(timeout)
        hub = get_hub()
        parked, self._parked = self._parked, []
        for waiter in parked:
            hub.loop.run_callback(waiter.switch, _STOP)
        if not finished:
            log.warning("%s: %d items unhandled at close", self._name, self.pending)
            self._workers.kill(timeout=1.0)
            self._queues.clear()
            self._pending = 0
            self._busy = 0
            self._waiting.clear()
            self._idle.set()
        self.state = DispatcherState.CLOSED
        return finished
