"""The legs this daemon rates, checked against each node's channels (CGRateS calls its
version `syncSessions`). Runs after every (re)connection to a node, and every
`rating.channel_sync_interval` seconds:

- a leg whose channel is gone ended unseen (its CHANNEL_HANGUP_COMPLETE was lost, or came
  while the daemon was down): it is settled from the switch's own record of the call
  (`Vanished`, then the handler looks the record up);
- a channel waiting in park that nobody decided (its PARK came while the daemon was down,
  or a refusal or admit never reached the switch) is decided now, oldest first;
- a leg admitted but whose answer was missed learns it from the node (`uuid_dump`);
- after a (re)connection, and every REDIS_CHECK_EVERY checks: a leg Redis knows and this
  process does not (the daemon restarted, or Redis undid a commit) is adopted, in its own
  order (`AdoptLeg`): reservations resume where they stopped, or it is settled if its
  channel is gone.

`show channels` reads FreeSWITCH's core database, which may list a channel a moment after it
is gone or before it appears: a leg missing from the list is confirmed gone with
`uuid_exists` (the session table), and a parked channel is only decided by the periodic
check once it has waited `PARK_GRACE` seconds (its own PARK may be on its way).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import gevent
from gevent.lock import Semaphore

from rater.calls import leg as L
from rater.calls.handler import CallHandler
from rater.calls.items import AdoptLeg, Readmit, SwitchEvent
from rater.calls.switch import ChannelRow
from rater.errors import SwitchError
from rater.reasons import LegStatus

log = logging.getLogger(__name__)

# A channel parked this long and still unknown here missed its decision.
PARK_GRACE = 5.0
# A leg admitted this long whose channel is answered missed its CHANNEL_ANSWER.
ANSWER_GRACE = 5.0
# Every this many periodic checks, legs live in Redis that no process follows are taken up
# too (not only after a reconnection): after a Redis failover or crash undid a commit, the
# leg is live again and is settled again (the ledger ids make it count once in PostgreSQL).
REDIS_CHECK_EVERY = 6
# Parked calls are decided one after another; one taking longer than this (Redis slow)
# does not hold up the next.
DECISION_WAIT = 2.0


class Node(Protocol):
    """What the check needs of a node (rater.calls.switch.NodeLink)."""

    name: str

    def channels(self, timeout: float) -> dict[str, ChannelRow]: ...
    def exists(self, uuid: str) -> bool: ...
    def answered_usec(self, uuid: str, timeout: float) -> int: ...
    def parked(self, uuid: str, timeout: float) -> SwitchEvent | None: ...


@dataclass
class SyncReport:
    gone: int = 0
    parked: int = 0
    readmit: int = 0
    answered: int = 0
    adopted: int = 0

    def count(self, handler: CallHandler) -> None:
        for found in ("gone", "parked", "readmit", "answered"):
            value = getattr(self, found)
            if value:
                handler.metrics.channel_sync.labels(found).inc(value)


@dataclass
class NodeCheck:
    """The check of one node; remembers the parked channels that are not rated calls, so
    they are looked at once, not at every check."""

    handler: CallHandler
    node: Node
    timeout: float
    busy: Callable[[str], bool] = lambda _uuid: False  # work of this leg queued or running
    not_rated: set[str] = field(default_factory=set)
    _running: Semaphore = field(default_factory=Semaphore)
    _checks: int = 0

    def run(self, *, after_connect: bool) -> SyncReport:
        """Check the node once (one check at a time). Raises SwitchError when the node
        cannot be listed."""
        with self._running:
            return self._run(after_connect)

    def _run(self, after_connect: bool) -> SyncReport:
        handler, node = self.handler, self.node
        started = handler.clock.monotonic()
        started_wall = handler.clock.now()
        if after_connect:
            handler.adoption_started()
        followed = [u for u in handler.legs.uuids(node.name)
                    if (live := handler.legs.get(u)) is not None and live.created_at < started]
        rows = node.channels(self.timeout)
        report = SyncReport()
        self._check_followed(followed, rows, started, report, after_connect)
        self._checks += 1
        if after_connect or self._checks % REDIS_CHECK_EVERY == 0:
            self._adopt_from_redis(rows, report)
        self._decide_parked(rows, started_wall, report, after_connect)
        self.not_rated &= rows.keys()
        report.count(handler)
        if report.gone or report.parked or report.adopted or report.readmit:
            log.info("node %s: %d legs adopted, %d ended unseen, %d parked calls decided, "
                     "%d admits sent again", node.name, report.adopted, report.gone,
                     report.parked, report.readmit)
        return report

    def _check_followed(self, followed: Sequence[str], rows: Mapping[str, ChannelRow],
                        started: float, report: SyncReport, after_connect: bool) -> None:
        handler, node = self.handler, self.node
        for uuid in followed:
            live = handler.legs.get(uuid)
            if live is None or live.leg.state not in (L.LegState.ADMITTED, L.LegState.TALKING):
                continue
            row = rows.get(uuid)
            if row is None:
                if not _exists(node, uuid):
                    handler.submit(uuid, L.Vanished())
                    report.gone += 1
                continue
            if (row.parked and live.admit_failed) or live.net_behind:
                handler.submit(uuid, Readmit())
                report.readmit += 1
            elif live.leg.state is L.LegState.ADMITTED and row.answered and (
                    after_connect or started - live.created_at >= ANSWER_GRACE):
                answered = node.answered_usec(uuid, self.timeout)
                if answered:
                    handler.submit(uuid, L.Answered(answered))  # a duplicate changes nothing
                    report.answered += 1

    def _adopt_from_redis(self, rows: Mapping[str, ChannelRow], report: SyncReport) -> None:
        handler, node = self.handler, self.node
        ledger = handler.ledger
        for shard in range(ledger.keys.shards):
            tag = ledger.keys.tag_of_shard(shard)
            for uuid in ledger.live_legs(tag):
                if uuid in handler.legs or handler.commits.is_pending(uuid):
                    continue  # ours, or ended here with its commit retried until Redis answers
                rec = ledger.leg_record(tag, uuid)
                keys = ledger.stored_leg_keys(tag, uuid)
                if rec is None or keys is None or rec.node != node.name or (
                        rec.state == LegStatus.COMMITTED):
                    continue
                row = rows.get(uuid)
                if row is not None and row.parked and not rec.answered_usec:
                    continue  # still waiting for its decision: decided below (authorize replays)
                answered = rec.answered_usec
                if not answered and row is not None and row.answered:
                    answered = node.answered_usec(uuid, self.timeout)
                adopted = L.Adopted(answered, rec.max_seconds, rec.granted_seconds,
                                    rec.last_seq + 1, rec.created_usec)
                handler.submit(uuid, AdoptLeg(node.name, tag, keys, adopted,
                                              on_switch=row is not None))
                if row is None:
                    report.gone += 1
                else:
                    report.adopted += 1

    def _decide_parked(self, rows: Mapping[str, ChannelRow], started_wall: float,
                       report: SyncReport, after_connect: bool) -> None:
        handler, node = self.handler, self.node
        waiting = sorted(
            (row for row in rows.values()
             if row.parked and row.uuid not in handler.legs and row.uuid not in self.not_rated
             and (after_connect or started_wall - row.created_epoch >= PARK_GRACE)),
            key=lambda row: (row.created_epoch, row.uuid))
        for row in waiting:
            event = node.parked(row.uuid, self.timeout)
            if event is None:
                continue  # gone meanwhile
            if not event.rated:
                self.not_rated.add(row.uuid)
                continue
            handler.submit(row.uuid, event)
            report.parked += 1
            # one at a time, so that calls competing for the same funds are served in the
            # order they parked (each decision is a few milliseconds)
            self._wait_decided(row.uuid)

    def _wait_decided(self, uuid: str) -> None:
        clock = self.handler.clock
        deadline = clock.monotonic() + DECISION_WAIT
        while self.busy(uuid) and clock.monotonic() < deadline:
            gevent.sleep(0.002)


def _exists(node: Node, uuid: str) -> bool:
    try:
        return node.exists(uuid)
    except SwitchError as exc:
        log.info("node %s: cannot check channel %s: %s", node.name, uuid, exc)
        return True  # cannot tell: check again next time
