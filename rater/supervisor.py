"""Owns every long-lived greenlet of the daemon: the only place that restarts or stops them.

Each child is linked back here. A child that dies with an exception is restarted after a
pause (up to a limit per minute); one that keeps dying stops the daemon with a clear reason
instead of limping on. Signals only queue a request; `wait()` turns it into one decision.
"""

from __future__ import annotations

import logging
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
from gevent.event import Event
from gevent.pool import Group

from rater.clock import Clock, SystemClock

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0
MAX_RESTARTS_PER_MINUTE = 5


@dataclass
class _Child:
    name: str
    target: Callable[[], object]
    restart: bool
    crashes: deque[float] = field(default_factory=deque)
    greenlet: gevent.Greenlet | None = None


class Supervisor:
    """A group of named children, restarted on failure, stopped together."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.group = Group()
        self.stop_requested = Event()
        self.failure: str | None = None
        self.signals = 0
        self._clock = clock or SystemClock()
        self._children: dict[str, _Child] = {}

    def spawn(self, name: str, target: Callable[[], object], restart: bool = True) -> None:
        """Run `target()` as a supervised child called `name`."""
        child = _Child(name, target, restart)
        self._children[name] = child
        self._start(child)

    def _start(self, child: _Child) -> None:
        g = gevent.Greenlet(child.target)
        g.name = child.name
        g.link_exception(lambda dead: self._crashed(child, dead))
        child.greenlet = g
        self.group.start(g)

    def _crashed(self, child: _Child, dead: gevent.Greenlet) -> None:
        if self.stop_requested.is_set():
            return
        log.error("%s crashed: %r", child.name, dead.exception)
        now = self._clock.monotonic()
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > 60:
            child.crashes.popleft()
        if not child.restart or len(child.crashes) > MAX_RESTARTS_PER_MINUTE:
            self.fail(f"{child.name} failed: {dead.exception!r}")
            return
        gevent.spawn_later(RESTART_PAUSE, self._restart, child)

    def _restart(self, child: _Child) -> None:
        if not self.stop_requested.is_set():
            log.info("restarting %s", child.name)
            self._start(child)

    def fail(self, reason: str) -> None:
        """Give up: record why and ask the daemon to stop."""
        if self.failure is None:
            self.failure = reason
        self.stop_requested.set()

    def request_stop(self) -> None:
        self.signals += 1
        self.stop_requested.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT queue a stop; a second one makes the stop skip its grace period."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, self.request_stop)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested (True) or `timeout` passes (False)."""
        return self.stop_requested.wait(timeout)

    def kill_all(self, timeout: float) -> None:
        """Kill every child still running (after the graceful steps)."""
        self.group.kill(timeout=timeout)
