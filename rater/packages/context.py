"""What every lifecycle operation runs on and refuses with.

`Env` is one autocommit PostgreSQL connection and the Redis ledger, whose clock is the
running operation's `now` (so `--now` dates the outbox too); `open_env` opens both. The
look-ups find an operation's accounts and product, and `Refused` names the rule an operation
broke when nothing was changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from rater.config import Config
from rater.db import connect
from rater.errors import InputError, LedgerError, RaterError
from rater.ledger.client import Ledger
from rater.ledger.keys import KeySpace
from rater.packages import store
from rater.packages.store import AccountRow, OptInRow, ProductRow
from rater.packages.visibility import RESELLER, Refusal, seller_chain
from rater.reasons import Reason
from rater.redis_client import keyspace_of, make_redis

# --- refusals ------------------------------------------------------------------------------

class Refused(RaterError):
    """An operation the rules or the funds do not allow; nothing was changed."""

    def __init__(self, rule: str, account: str | None, message: str) -> None:
        where = f" (account {account})" if account else ""
        super().__init__(f"{rule}: {message}{where}")
        self.rule = rule
        self.account = account
        self.detail = message

    @classmethod
    def of(cls, refusal: Refusal) -> Refused:
        return cls(refusal.rule, refusal.account, refusal.message)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": False, "reason": self.rule, "account": self.account,
                "message": self.detail}


def ledger_refusal(reason: str | None, account: str | None) -> RaterError:
    """The error for a ledger operation refused with `reason` at `account`."""
    if reason == Reason.INSUFFICIENT_FUNDS:
        return Refused(Reason.INSUFFICIENT_FUNDS, account, "not enough funds above the floor")
    if reason == Reason.UNKNOWN_ACCOUNT:
        return Refused(Reason.UNKNOWN_ACCOUNT, account,
                       "no live balance in Redis (run `loader sync`)")
    return LedgerError(f"ledger refused the operation: {reason} {account or ''}".strip())


# --- the environment: one PostgreSQL connection and the ledger -----------------------------

class _OperationClock:
    """Wall time, or the `now` of the running operation, so `--now` dates the outbox too."""

    def __init__(self) -> None:
        self.held: float | None = None

    def now(self) -> float:
        return time.time() if self.held is None else self.held

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class Env:
    """What lifecycle operations run on: an autocommit connection and the Redis ledger."""

    conn: psycopg.Connection
    ledger: Ledger
    clock: _OperationClock = field(default_factory=_OperationClock)

    @property
    def keys(self) -> KeySpace:
        return self.ledger.keys

    def at(self, now: datetime | None) -> datetime:
        """`now` in UTC (default: the clock), which also dates this operation's outbox."""
        now = datetime.now(UTC) if now is None else now
        if now.utcoffset() is None:
            raise InputError(f"now: a timezone-aware time is required, got {now!r}")
        self.clock.held = now.timestamp()
        return now.astimezone(UTC)

    def tag(self, path: Sequence[AccountRow]) -> str:
        """The hash tag of the tree: its top-level account's."""
        return self.keys.tag(path[-1].number)


@contextmanager
def open_env(cfg: Config) -> Iterator[Env]:
    """Connect to PostgreSQL (autocommit) and Redis for lifecycle operations."""
    client = make_redis(cfg.redis)
    clock = _OperationClock()
    try:
        with connect(cfg, autocommit=True) as conn:
            ledger = Ledger(client, keyspace_of(cfg.redis), cfg.rating.leg_ttl_seconds,
                            clock=clock)
            yield Env(conn, ledger, clock)
    finally:
        client.close()


# --- look-ups ------------------------------------------------------------------------------

def path_of(conn: psycopg.Connection, account: str) -> list[AccountRow]:
    """The account and its ancestors; raises Refused(unknown_account)."""
    path = store.account_path(conn, account)
    if not path:
        raise Refused(Reason.UNKNOWN_ACCOUNT, account, "no such account")
    return path


def resolve_product(
    conn: psycopg.Connection, ref: str | int, path: Sequence[AccountRow] | None = None
) -> ProductRow:
    """A product by name (among those of the account's sellers when `path` is given) or id.

    Raises Refused(unknown_product), or InputError when a name is ambiguous.
    """
    if isinstance(ref, int):
        found = store.product(conn, ref)
        if found is None:
            raise Refused("unknown_product", None, f"no product with id {ref}")
        return found
    owners: list[str | None] | None = None
    if path is not None:
        owners = [None, *(a.number for a in path)]
    named = store.products_named(conn, ref, owners)
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        ids = ", ".join(f"{p.id} ({p.owner or 'admin'})" for p in named)
        raise InputError(f"product {ref!r} is ambiguous: ids {ids}; give the id")
    if ref.isdigit():
        return resolve_product(conn, int(ref))
    raise Refused("unknown_product", None, f"no product named {ref!r}")


def opt_ins_of(
    conn: psycopg.Connection, product: ProductRow, path: Sequence[AccountRow]
) -> dict[str, OptInRow]:
    """The opt-in rows of the resellers of `path` for the product."""
    return store.opt_ins(conn, product.id, [a.number for a in path if a.kind == RESELLER])


def chain_of(path: Sequence[AccountRow], product: ProductRow) -> list[AccountRow]:
    """The accounts of `path` that pay for the product; raises Refused(not_offered)."""
    by_number = {a.number: a for a in path}
    parties = seller_chain([a.party() for a in path], product.owner)
    if parties is None:
        raise Refused("not_offered", path[0].number, "the product's owner does not sell here")
    return [by_number[p.number] for p in parties]
