"""KeyedDispatcher: per-key order, cross-key concurrency, bounded workers, failures."""

from __future__ import annotations

import logging

import gevent
import pytest
from gevent.event import Event

from rater.esl.dispatch import DispatcherClosed, KeyedDispatcher

WAIT = 5.0


def key_of(item: tuple[str, int]) -> str:
    return item[0]


def test_one_key_strictly_in_order_even_when_handlers_yield():
    seen: list[tuple[str, int]] = []
    gates = {i: Event() for i in range(5)}

    def handler(item):
        gates[item[1]].wait(timeout=WAIT)  # yields; a second worker would overtake
        seen.append(item)

    d = KeyedDispatcher(handler, key_of)
    for i in range(5):
        d.submit(("A", i))
    for i in reversed(range(5)):
        gates[i].set()
    assert d.join(WAIT)
    assert seen == [("A", i) for i in range(5)]


def test_different_keys_run_concurrently():
    gate = Event()
    fast_done = Event()
    seen: list[tuple[str, int]] = []

    def handler(item):
        if item == ("slow", 0):
            gate.wait(timeout=WAIT)
        seen.append(item)
        if item == ("fast", 2):
            fast_done.set()

    d = KeyedDispatcher(handler, key_of)
    d.submit(("slow", 0))
    d.submit(("slow", 1))
    for i in range(3):
        d.submit(("fast", i))
    assert fast_done.wait(timeout=WAIT)  # the fast key finished ...
    assert seen == [("fast", 0), ("fast", 1), ("fast", 2)]  # ... while the slow one waits
    gate.set()
    assert d.join(WAIT)
    assert seen[3:] == [("slow", 0), ("slow", 1)]


def test_workers_are_bounded_and_waiting_keys_keep_arrival_order():
    gate = Event()
    two_running = Event()
    running: list[str] = []
    started: list[str] = []
    peak = 0

    def handler(item):
        nonlocal peak
        running.append(item[0])
        started.append(item[0])
        peak = max(peak, len(running))
        if len(running) == 2:
            two_running.set()
        gate.wait(timeout=WAIT)
        running.remove(item[0])

    d = KeyedDispatcher(handler, key_of, max_workers=2)
    for k in "abcde":
        d.submit((k, 0))
    assert d.active_keys == 5 and d.pending == 5
    assert two_running.wait(timeout=WAIT)
    assert started == ["a", "b"]  # c, d, e wait for a worker
    gate.set()
    assert d.join(WAIT)
    assert peak == 2
    assert started == list("abcde")
    assert d.handled == 5 and d.active_keys == 0


def test_idle_workers_are_reused_bounded_and_end_at_close():
    seen = []
    d = KeyedDispatcher(seen.append, key_of, max_idle=2)
    for k in "abcd":
        d.submit((k, 0))  # four workers at once
    assert d.join(WAIT)
    gevent.sleep(0)
    assert d.active_keys == 0 and d.parked_workers == 2  # two parked, two ended
    spawned = len(d._workers)
    for k in "ef":
        d.submit((k, 0))  # parked workers take them: no new greenlet
        assert len(d._workers) == spawned
    assert d.join(WAIT)
    assert sorted(seen) == [(k, 0) for k in "abcdef"]
    assert d.close(WAIT)
    assert d._workers.join(timeout=WAIT)  # parked workers ended: none left behind


def test_a_failing_handler_is_logged_and_the_key_goes_on(caplog):
    seen = []

    def handler(item):
        if item[1] == 1:
            raise RuntimeError("boom")
        seen.append(item)

    d = KeyedDispatcher(handler, key_of, name="test")
    with caplog.at_level(logging.ERROR):
        for i in range(3):
            d.submit(("A", i))
        assert d.join(WAIT)
    assert seen == [("A", 0), ("A", 2)]
    assert d.failed == 1
    assert "handler failed for key 'A'" in caplog.text and "boom" in caplog.text


def test_close_drains_then_refuses():
    seen = []
    d = KeyedDispatcher(seen.append, key_of)
    d.submit(("A", 0))
    assert d.close(WAIT)
    assert seen == [("A", 0)]
    with pytest.raises(DispatcherClosed):
        d.submit(("A", 1))


def test_close_gives_up_on_a_stuck_handler():
    stuck = Event()
    d = KeyedDispatcher(lambda item: stuck.wait(timeout=WAIT), key_of)
    d.submit(("A", 0))
    assert d.close(0.05) is False
    assert d.active_keys == 0


def test_bad_bound():
    with pytest.raises(ValueError):
        KeyedDispatcher(print, key_of, max_workers=0)
