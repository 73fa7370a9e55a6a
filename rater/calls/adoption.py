"""After every (re)connection to a node: compare the legs we rate with the node's channels.

- a leg live in Redis (or in memory) whose channel still exists is adopted: reservations
  resume where they stopped; a leg not yet answered asks the node whether it was answered
  meanwhile (its CHANNEL_ANSWER would have been lost), so its reservations start;
- a leg whose channel is gone ended while we could not see it: it is settled for what was
  reserved (CDR settlement `as_reserved`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from rater.calls import leg as L
from rater.calls.handler import CallHandler

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AdoptionReport:
    adopted: int
    vanished: int


def reconcile_node(handler: CallHandler, node: str, channels: set[str],
                   answered_at: Callable[[str], int] = lambda _uuid: 0) -> AdoptionReport:
    """Queue Adopted/Vanished events for `node`'s legs given the uuids of its live channels.
    `answered_at(uuid)` is the node's answer time of a channel (epoch µs, 0 if none)."""
    adopted = vanished = 0
    # legs this process already follows: the vanished ones, and answers we may have missed
    for uuid in handler.legs.uuids(node):
        if uuid not in channels:
            handler.submit(uuid, L.Vanished())
            vanished += 1
            continue
        live = handler.legs.get(uuid)
        if live is not None and live.leg.state is L.LegState.ADMITTED:
            answered = answered_at(uuid)
            if answered:
                handler.submit(uuid, L.Answered(answered))  # a duplicate changes nothing
    # legs known only to Redis (this process restarted): adopt or settle them
    ledger = handler.ledger
    for shard in range(ledger.keys.shards):
        tag = ledger.keys.tag_of_shard(shard)
        for uuid in ledger.live_legs(tag):
            if uuid in handler.legs:
                continue
            rec = ledger.leg_record(tag, uuid)
            keys = ledger.stored_leg_keys(tag, uuid)
            if rec is None or keys is None or rec.node != node or rec.state == "committed":
                continue
            live = handler.legs.create(uuid, node)
            live.tag, live.keys = tag, keys
            answered = rec.answered_usec
            if not answered and uuid in channels:
                answered = answered_at(uuid)
            handler.submit(uuid, L.Adopted(answered, rec.max_seconds,
                                           rec.granted_seconds, rec.last_seq + 1))
            if uuid in channels:
                adopted += 1
            else:
                handler.submit(uuid, L.Vanished())
                vanished += 1
    if adopted or vanished:
        log.info("node %s: adopted %d live legs, settling %d that ended unseen",
                 node, adopted, vanished)
    handler.metrics.live_legs.set(len(handler.legs))
    return AdoptionReport(adopted, vanished)
