"""Time on the simulated switch: wall-clock microseconds (FreeSWITCH's unit), uuids, and
one-shot timers on the gevent loop."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from gevent import get_hub

log = logging.getLogger(__name__)


def new_uuid() -> str:
    """A random (version 4) uuid as text, at a fraction of uuid.uuid4()'s cost (one per
    call and per transfer); not for secrets."""
    n = _getrandbits(128) & _UUID_CLEAR | _UUID_SET
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_getrandbits = random.getrandbits
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version and variant bits
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)       # version 4, RFC 4122 variant


def now_us() -> int:
    """Wall-clock microseconds since the epoch (FreeSWITCH's time unit)."""
    return time.time_ns() // 1000


class Timer:
    """A one-shot callback on the gevent loop: far lighter than a greenlet per pending timer.

    The callback runs in the hub, so it must not block (firing events only queues bytes).
    """

    __slots__ = ("_watcher",)

    def __init__(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        self._watcher: Any = get_hub().loop.timer(max(delay, 0.0))
        self._watcher.start(self._run, callback, args)

    def _run(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.cancel()
        try:
            callback(*args)
        except Exception:
            log.exception("simulator timer callback failed")

    def cancel(self) -> None:
        """Stop the timer; harmless when it already ran or was cancelled."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()
