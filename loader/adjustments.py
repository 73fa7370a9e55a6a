"""Balance adjustments written by another system (a billing portal) into
`balance_adjustments`, applied to the live Redis balance exactly once.

Each row becomes one ledger operation with op id and entry id `adj:<id>`: Redis keeps the
op's first result, so applying a row again (say `applied_at` could not be set after the
operation ran) changes nothing. A row whose account is not in Redis yet (not deployed) stays
pending and is reported; the next run tries it again.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import psycopg

from rater.ledger.client import Entry, Ledger
from rater.ledger.keys import KeySpace
from rater.reasons import Reason

log = logging.getLogger("loader.adjustments")

# Pending rows with the top-level ancestor of their account (walk `parent` up to NULL).
_PENDING = """
    WITH RECURSIVE up(start, number, parent, depth) AS (
        SELECT a.number, a.number, a.parent, 0 FROM accounts a
        WHERE a.number IN (SELECT account FROM balance_adjustments
                           WHERE applied_at IS NULL AND id > %(after)s)
        UNION ALL
        SELECT up.start, p.number, p.parent, up.depth + 1
        FROM up JOIN accounts p ON p.number = up.parent
        WHERE up.depth < 64
    )
    SELECT b.id, b.account, b.amount, b.ref, up.number
    FROM balance_adjustments b
    LEFT JOIN up ON up.start = b.account AND up.parent IS NULL
    WHERE b.applied_at IS NULL AND b.id > %(after)s
    ORDER BY b.id
    LIMIT %(limit)s"""

_MARK = """
    UPDATE balance_adjustments SET applied_at = now()
    WHERE id = ANY(%s) AND applied_at IS NULL"""


@dataclass(frozen=True, slots=True)
class SkippedAdjustment:
    """A pending row left pending, and why."""

    id: int
    account: str
    amount_micros: int
    reason: str


@dataclass(slots=True)
class AdjustmentRun:
    applied: list[int] = field(default_factory=list)
    skipped: list[SkippedAdjustment] = field(default_factory=list)


def adjustment_kind(amount_micros: int) -> str:
    """Ledger kind of an adjustment: a credit is a top-up, a debit an adjustment."""
    return "topup" if amount_micros > 0 else "adjustment"


def apply_adjustments(
    conn: psycopg.Connection, ledger: Ledger, keyspace: KeySpace, *, page_size: int = 500
) -> AdjustmentRun:
    """Apply every pending adjustment once; set `applied_at` on those applied (committing
    after each page). Raises what Redis or PostgreSQL raise; rows applied before the error
    are still marked, and the others are safe to apply again."""
    run = AdjustmentRun()
    after = 0
    while True:
        rows = conn.execute(_PENDING, {"after": after, "limit": page_size}).fetchall()
        if not rows:
            break
        done: list[int] = []
        try:
            for adj_id, account, amount, ref, top in rows:
                after = adj_id
                reason = _apply_one(ledger, keyspace, adj_id, account, amount, ref, top)
                if reason is None:
                    done.append(adj_id)
                else:
                    run.skipped.append(SkippedAdjustment(adj_id, account, amount, reason))
                    log.warning("balance adjustment %d for account %s left pending: %s",
                                adj_id, account, reason)
        except Exception:
            # mark what did go through, so fewer rows are replayed (a replay is harmless)
            with contextlib.suppress(psycopg.Error):
                _mark(conn, done)
            raise
        _mark(conn, done)
        run.applied.extend(done)
        if len(rows) < page_size:
            break
    if run.applied:
        log.info("applied %d balance adjustment(s)", len(run.applied))
    return run


def apply_pending_adjustments(
    conn: psycopg.Connection, ledger: Ledger, keyspace: KeySpace, *, page_size: int = 500
) -> int:
    """Apply every pending adjustment once; returns how many were applied (see
    apply_adjustments for the rows left pending)."""
    return len(apply_adjustments(conn, ledger, keyspace, page_size=page_size).applied)


def _mark(conn: psycopg.Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(_MARK, (ids,))
    if not conn.autocommit:
        conn.commit()


def _apply_one(
    ledger: Ledger, keyspace: KeySpace, adj_id: int, account: str, amount: int, ref: str,
    top: str | None,
) -> str | None:
    """None when applied (now or before), else why not."""
    if top is None:
        return "the account has no top-level ancestor (a parent cycle)"
    op_id = f"adj:{adj_id}"
    result = ledger.apply(
        op_id, keyspace.tag(top),
        [Entry(account, int(amount), entry_id=op_id, kind=adjustment_kind(amount), ref=ref)],
        allow_below_floor=True,
    )
    if result.ok:
        return None
    if result.reason == Reason.UNKNOWN_ACCOUNT:
        return "the account is not in Redis yet (not deployed)"
    return f"refused: {result.reason}"
