"""The daemon's live legs: uuid -> leg state, its ledger keys and its timers.

Timers are libev timer watchers (a few hundred bytes each, no greenlet): when one fires it
only queues an event for its leg, which is then handled in order with the leg's other events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent

from rater.calls.leg import Leg


@dataclass(slots=True)
class LiveLeg:
    """One leg this daemon is rating."""

    leg: Leg
    node: str
    tag: str = ""
    keys: list[str] = field(default_factory=list)
    destination: str = ""
    account: str = ""
    direction: str = ""
    caller: str = ""
    created_at: float = 0.0           # monotonic: when this process took the leg up
    parked_at: float = 0.0            # monotonic, for the park-to-decision latency
    asking: Any = None                # AskingControl of a call waiting on the decision socket
    admit_failed: bool = False        # the switch did not get the admit; the call waits parked
    net_behind: bool = False          # the switch did not get the last safety-net move
    ended_unseen_at: float = 0.0      # monotonic: when the leg was found gone unseen
    reserve_timer: Any = None
    hangup_timer: Any = None


class LegRegistry:
    """uuid -> LiveLeg, with the leg timers."""

    def __init__(self, debit_interval: int, reserve_ahead: float) -> None:
        self._legs: dict[str, LiveLeg] = {}
        self.debit_interval = debit_interval
        self.reserve_ahead = reserve_ahead

    def __len__(self) -> int:
        return len(self._legs)

    def __contains__(self, uuid: str) -> bool:
        return uuid in self._legs

    def get(self, uuid: str) -> LiveLeg | None:
        return self._legs.get(uuid)

    def create(self, uuid: str, node: str, created_at: float = 0.0) -> LiveLeg:
        live = LiveLeg(Leg(uuid, self.debit_interval, self.reserve_ahead), node,
                       created_at=created_at)
        self._legs[uuid] = live
        return live

    def drop(self, uuid: str) -> None:
        live = self._legs.pop(uuid, None)
        if live is not None:
            self.cancel_timers(live)

    def oldest_age(self, now: float) -> float:
        """Seconds since the oldest live leg was taken up (`now` - its created_at), 0 with
        none. Legs are only created when absent, so the first one kept is the oldest."""
        for live in self._legs.values():
            return max(0.0, now - live.created_at)
        return 0.0

    def uuids(self, node: str | None = None) -> list[str]:
        return [u for u, live in self._legs.items() if node is None or live.node == node]

    def set_reserve_timer(self, live: LiveLeg, delay: float, fire: Callable[..., None],
                          *args: Any) -> None:
        """Call `fire(*args)` after `delay` seconds (args, not a closure: a live leg
        keeps its timer, and a closure per leg costs ~200 bytes)."""
        live.reserve_timer = _restart(live.reserve_timer, delay, fire, args)

    def set_hangup_timer(self, live: LiveLeg, delay: float | None,
                         fire: Callable[..., None], *args: Any) -> None:
        if delay is None:
            _stop(live.hangup_timer)
            live.hangup_timer = None
            return
        live.hangup_timer = _restart(live.hangup_timer, delay, fire, args)

    @staticmethod
    def cancel_timers(live: LiveLeg) -> None:
        _stop(live.reserve_timer)
        _stop(live.hangup_timer)
        live.reserve_timer = live.hangup_timer = None


def _restart(
    timer: Any, delay: float, fire: Callable[..., None], args: tuple[Any, ...] = ()
) -> Any:
    _stop(timer)
    timer = gevent.get_hub().loop.timer(max(0.0, delay))
    timer.start(fire, *args)
    return timer


def _stop(timer: Any) -> None:
    if timer is not None:
        timer.stop()
        timer.close()
