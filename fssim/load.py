"""The load generator: places calls at a steady rate with seeded, reproducible choices."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import gevent
import gevent.event

from fssim.channel import Channel

# (min, max) seconds drawn uniformly, or a function of the generator's Random
TalkSeconds = tuple[float, float] | Callable[[random.Random], float]


class CallRecord(NamedTuple):
    """One finished call of a load run (times in µs since the epoch, 0 when it did not
    happen), kept when the generator is asked to `record` (benchmarks check every call)."""

    uuid: str
    account: str | None
    destination: str
    parked_us: int       # it asked the rater: CHANNEL_PARK fired, or its data went out on
                         # the decision socket (what park-to-decision times count from)
    transferred_us: int  # the rater's transfer ran (uuid_transfer, or `transfer` on the socket)
    answered_us: int
    hangup_us: int
    billmsec: int
    cause: str
    hangup_by: str


@dataclass
class LoadCounters:
    """What happened to the generator's calls so far."""

    placed: int = 0
    answered: int = 0
    rejected: int = 0    # hung up by the switch before any transfer (the rater refused:
                         # uuid_kill, or `hangup` on the decision socket)
    abandoned: int = 0   # left waiting (in park or on the socket) until the caller gave up
    unanswered: int = 0  # transferred, never answered
    completed: int = 0   # CHANNEL_HANGUP_COMPLETE sent
    on_socket: int = 0   # decided on the decision socket (transferred or hung up there)
    parked: int = 0      # parked (no decision socket, or not decided there): CHANNEL_PARK

    @property
    def in_progress(self) -> int:
        return self.placed - self.completed


class CallPlacer(Protocol):
    """Where the generator's calls go (the Simulator is one)."""

    def place_call(self, account: str | None, destination: str, *, direction: str,
                   caller: str, answer_after: float, duration: float, answer: bool,
                   observer: Callable[[Channel], None]) -> str: ...


class LoadGenerator:
    """Places `cps` calls per second until `count` calls or `duration` seconds (or stop()).

    Every per-call choice (account, destination, caller, talk time, answered or not, ring
    time) comes from `random.Random(seed)` in placement order, so a run is reproducible.
    """

    def __init__(self, switch: CallPlacer, cps: float, *, count: int | None = None,
                 duration: float | None = None, destinations: Sequence[str] = ("15557650000",),
                 accounts: Sequence[str | None] = (None,), talk_seconds: TalkSeconds = (1.0, 5.0),
                 answer_ratio: float = 1.0, answer_after: tuple[float, float] = (0.05, 0.3),
                 direction: str = "outbound", seed: int = 0, record: bool = False,
                 history: int | None = None) -> None:
        if cps <= 0:
            raise ValueError("cps must be positive")
        if count is None and duration is None:
            raise ValueError("give count or duration (or both)")
        if not destinations or not accounts:
            raise ValueError("destinations and accounts must not be empty")
        self.switch = switch
        self.cps = cps
        self.count = count
        self.duration = duration
        self.destinations = list(destinations)
        self.accounts = list(accounts)
        self.talk_seconds = talk_seconds
        self.answer_ratio = answer_ratio
        self.answer_after = answer_after
        self.direction = direction
        self.rng = random.Random(seed)
        self.counters = LoadCounters()
        self.uuids: deque[str] = deque(maxlen=history)  # placement order (the last `history`)
        # every finished call, in completion order (`record`: memory grows with the run)
        self.records: list[CallRecord] | None = [] if record else None
        self.started_at: float | None = None   # time.time() of the first call
        self.placing_ended_at: float | None = None
        self.started_cpu = 0.0  # time.process_time() at the first call
        self._stop = gevent.event.Event()
        self._all_done = gevent.event.Event()
        self._placing_done = False
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> LoadGenerator:
        self.greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        """Stop placing calls (calls in progress carry on)."""
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait until placing is over and every placed call completed."""
        return self._all_done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._all_done.is_set()

    def _talk(self) -> float:
        if callable(self.talk_seconds):
            return float(self.talk_seconds(self.rng))
        low, high = self.talk_seconds
        return self.rng.uniform(low, high)

    def place_one(self) -> str:
        """Place the next call of the sequence now."""
        rng = self.rng
        account = rng.choice(self.accounts)
        destination = rng.choice(self.destinations)
        caller = f"1555{rng.randrange(10_000_000):07d}"
        talk = self._talk()
        answered = rng.random() < self.answer_ratio
        ring = rng.uniform(*self.answer_after)
        uuid = self.switch.place_call(
            account, destination, direction=self.direction, caller=caller,
            answer_after=ring, duration=talk, answer=answered, observer=self._on_done,
        )
        self.uuids.append(uuid)
        self.counters.placed += 1
        return uuid

    def _run(self) -> None:
        start = time.monotonic()
        self.started_at = time.time()
        self.started_cpu = time.process_time()
        placed = 0
        try:
            while not self._stop.is_set():
                if self.count is not None and placed >= self.count:
                    break
                elapsed = time.monotonic() - start
                if self.duration is not None and elapsed >= self.duration:
                    break
                due = start + placed / self.cps
                wait = due - time.monotonic()
                if wait > 0:
                    # sleep, not Event.wait(timeout): a timeout is an exception thrown into
                    # this greenlet, and at 1000 calls/s that alone costs a tenth of a core
                    gevent.sleep(min(wait, 0.1))
                    continue
                self.place_one()
                placed += 1
        finally:
            self.placing_ended_at = time.time()
            self._placing_done = True
            self._check_done()

    def _on_done(self, channel: Channel) -> None:
        c = self.counters
        c.completed += 1
        if channel.answered:
            c.answered += 1
        elif channel.transfers:
            c.unanswered += 1
        elif channel.hangup_by == "switch":
            c.rejected += 1
        else:
            c.abandoned += 1
        if channel.socket_decided:
            c.on_socket += 1
        if channel.parked_us:
            c.parked += 1
        if self.records is not None:
            self.records.append(CallRecord(
                channel.uuid, channel.account, channel.destination, channel.asked_us,
                channel.transferred_us, channel.answered_us, channel.hangup_us,
                channel.billmsec, channel.cause or "", channel.hangup_by or ""))
        self._check_done()

    def _check_done(self) -> None:
        if self._placing_done and self.counters.completed == self.counters.placed:
            self._all_done.set()
