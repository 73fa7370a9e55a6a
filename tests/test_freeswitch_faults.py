"""Real switch under faults: the daemon killed and restarted, its Event Socket connections
cut, while calls run. The correct behaviour is asserted: every call decided (calls that
parked while the daemon could not see them are decided once it is back), exactly one CDR
per answered call with its real length (the switch always knows it), no leg left live,
money reconciled. Amounts: L1-L3 are retail, 10000 micro-units per billed second
(a 12.5 s call bills 13 s: 130000).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import pytest

from tests import freeswitch_world
from tests.freeswitch_lab import wait_until
from tests.freeswitch_sipp import Call, Outcome, SippRun
from tests.freeswitch_world import (
    L1,
    L2,
    L3,
    UK,
    RatedWorld,
)
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.freeswitch, pytest.mark.slow]
switch, rated = freeswitch_world.switch, freeswitch_world.rated  # the tier's fixtures

CALLS, HOLD, RATE = 60, 12.5, 3     # 20 s of new calls, each talking 12.5 s (13 billed)
FAULT_AFTER_ANSWERS = 36            # ~12 s in: calls end and new ones park while it lasts
OUTAGE = 4.0                        # seconds between the fault and the repair
LOAD = (L1, L2, L3)


def load_calls(rated: RatedWorld) -> list[Call]:
    return [rated.outbound(n, LOAD[n % 3], UK, HOLD) for n in range(CALLS)]


def run_with_fault(rated: RatedWorld, fault: Callable[[], None], repair: Callable[[], None]
                   ) -> tuple[list[Call], dict[str, Outcome], tuple[float, float]]:
    """Place the load, break things once enough calls are up, repair after OUTAGE s.
    Returns the calls, what sipp saw, and when the daemon lost and regained the switch."""
    calls = load_calls(rated)
    run: SippRun = rated.place(calls, rate=RATE)
    wait_until(lambda: run.answered_so_far() >= FAULT_AFTER_ANSWERS, 60,
               "calls answered before the fault")
    fault()
    down = time.time()
    wait_until(lambda: time.time() - down >= OUTAGE, OUTAGE + 5, "the outage")
    repair()
    wait_until(lambda: rated.daemon.health().get("status") == "ok", 60,
               "the daemon connected to the switch again")
    up = time.time()
    return calls, run.wait(CALLS / RATE + HOLD + 120), (down, up)


def load_problems(rated: RatedWorld, calls: list[Call], seen: dict[str, Outcome],
                  window: tuple[float, float]) -> list[str]:
    """Everything wrong with a faulted load, each problem in a line (empty: all correct)."""
    problems = []
    down, up = window
    failed = [c.caller for c in calls if not (c.caller in seen and seen[c.caller].answered)]
    if failed:
        codes = collections.Counter(
            f"{seen[c].status} {seen[c].cause}" if c in seen else "no final answer"
            for c in failed)
        problems.append(f"{len(failed)} of {len(calls)} calls not answered: {dict(codes)}")
    answered = [seen[c.caller] for c in calls if c.caller not in failed]
    # a leg that ended unseen may wait for the switch's record (rater.toml switch_records)
    cdrs = rated.wait_cdrs([o.caller for o in answered], timeout=180)
    spent: collections.Counter[str] = collections.Counter()
    bad: dict[str, list[str]] = collections.defaultdict(list)
    for call in calls:
        got = seen.get(call.caller)
        if call.caller in failed or got is None:
            continue
        during = ("ended while the daemon was blind" if down <= got.ended_at <= up + 1 else
                  "answered after it was back" if got.answered_at >= down else
                  "up across the outage" if got.answered_at < down < got.ended_at else
                  "over before the outage")
        rows = cdrs.get(call.caller, [])
        if len(rows) != 1:
            bad[f"{len(rows)} CDRs instead of 1"].append(during)
            continue
        cdr = rows[0]
        spent[cdr.account] += cdr.total_cost
        if abs(cdr.billed_seconds - got.duration) > 1.0:
            bad[f"billed {cdr.billed_seconds} s ({cdr.settlement}) for "
                f"{got.duration:.1f} s"].append(during)
        if cdr.total_cost != 10_000 * cdr.billed_seconds:
            bad[f"cost {cdr.total_cost} for {cdr.billed_seconds} s"].append(during)
    for what, where in bad.items():
        problems.append(f"{len(where)} calls: {what} ({dict(collections.Counter(where))})")
    if not rated.settled(60):
        problems.append(f"{len(rated.live_legs())} legs still live in Redis "
                        f"(rt:*:live), outbox backlog {rated.outbox_backlog()}")
    for account in LOAD:
        want = 100_000_000 - spent[account]
        got_state = rated.account(account)
        if got_state != (want, 0, 0) or rated.ledger_balance(account) != want:
            problems.append(f"account {account}: Redis (bal, held, legs) {got_state}, "
                            f"ledger {rated.ledger_balance(account)}, expected {want} "
                            "from its CDRs")
    rec = rated.reconcile()
    if rec.returncode != 0:
        problems.append(f"rater reconcile exit {rec.returncode}: {rec.stdout[-800:]}")
    return problems


@pytest.mark.timeout(600)
def test_daemon_killed_and_restarted_under_load(rated: RatedWorld):
    calls, seen, window = run_with_fault(rated, rated.daemon.kill, rated.daemon.start)
    problems = load_problems(rated, calls, seen, window)
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(600)
def test_event_socket_cut_under_load(switch, database_url, redis_url, tmp_path):
    proxy = TcpProxy(*switch.settings.esl).start()
    rated = RatedWorld(switch, database_url, redis_url, tmp_path,
                       esl=("127.0.0.1", proxy.port))
    try:
        rated.start()
        calls, seen, window = run_with_fault(rated, proxy.cut, proxy.restore)
        problems = load_problems(rated, calls, seen, window)
    finally:
        rated.close()
        proxy.stop()
    assert not problems, "\n".join(problems)
