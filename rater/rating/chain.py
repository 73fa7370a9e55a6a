"""Resolve a leg into the levels that pay for it (DESIGN §4-§6). Pure: no I/O, no clock.

A leg's levels are its account, then each reseller above it up to (not including) admin.
Each level pays at its own rate group's longest-prefix rate and draws on its own packages.
This runs on the call-setup path, so it does one pass over the chain per rule and builds
result objects only for what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from rater.rating.snapshot import AccountInfo, Snapshot
from rater.rating.tariff import Tariff
from rater.reasons import Reason

# The reasons this module refuses with: Reason.UNKNOWN_ACCOUNT, ACCOUNT_SUSPENDED,
# BLOCKED_DESTINATION, NO_RATE.
DIRECTIONS = ("outbound", "inbound")


@dataclass(frozen=True, slots=True)
class BucketRef:
    """A package order whose free seconds apply to the leg (Redis holds what is left)."""

    order_id: str
    product_id: int
    period_no: int
    cap_seconds: int
    period_end: int


@dataclass(frozen=True, slots=True)
class LevelPlan:
    """What one level of the chain pays with: its rate, floor, channel cap and buckets."""

    account: str
    rate_group: str
    prefix: str
    destination_name: str
    tariff: Tariff
    floor_micros: int
    max_channels: int
    buckets: tuple[BucketRef, ...]


@dataclass(frozen=True, slots=True)
class LegPlan:
    """A rateable leg: the number rated, the tree's hash tag, and the levels, customer first."""

    account: str
    direction: str
    destination: str
    tag: str
    levels: tuple[LevelPlan, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a leg cannot be rated; `account` is the level that caused it (None if unknown)."""

    reason: Reason
    account: str | None
    detail: str


def resolve_leg(
    snapshot: Snapshot, account: str | None, direction: str, destination: str,
    now_epoch: float,
) -> LegPlan | Refusal:
    """Plan a leg from the snapshot, or say why it cannot be rated.

    An inbound leg without an account is resolved through the DID (the destination, also
    tried without a leading ``+``). The number rated is the destination without a leading
    ``+``; inbound legs are rated on the DID with the groups' inbound rates. Checks run in
    this order over the whole chain: unknown account, suspended or deleted level, blocked
    prefix (outbound legs only: blocking is a dialling restriction), missing rate.
    Raises ValueError for a direction other than outbound or inbound.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected outbound or inbound, got {direction!r}")
    number = destination[1:] if destination.startswith("+") else destination
    if not account:
        if direction == "outbound":
            return Refusal(Reason.UNKNOWN_ACCOUNT, None, "an outbound leg needs an account")
        account = snapshot.did_account(destination)
        if account is None and number != destination:
            account = snapshot.did_account(number)
        if account is None:
            return Refusal(Reason.UNKNOWN_ACCOUNT, None, f"no account owns DID {destination}")
    chain = snapshot.chain(account)
    if not chain:
        return Refusal(Reason.UNKNOWN_ACCOUNT, account, f"account {account} does not exist")
    for acct in chain:
        if acct.status != "active":
            return Refusal(Reason.ACCOUNT_SUSPENDED, acct.number,
                           f"account {acct.number} is {acct.status}")
    if direction == "outbound":
        for acct in chain:
            blocked = snapshot.blocked_prefix(acct.rate_group, number)
            if blocked is not None:
                return Refusal(Reason.BLOCKED_DESTINATION, acct.number,
                               f"prefix {blocked} is blocked in rate group "
                               f"{_group_name(snapshot, acct)}")
    levels = []
    for acct in chain:
        match = snapshot.rate(acct.rate_group, direction, number)
        if match is None:
            return Refusal(Reason.NO_RATE, acct.number,
                           f"no {direction} rate for {number} in rate group "
                           f"{_group_name(snapshot, acct)}")
        levels.append(LevelPlan(
            acct.number, _group_name(snapshot, acct), match.prefix, match.destination,
            match.tariff, acct.floor_micros, acct.max_channels,
            applicable_buckets(snapshot, acct.number, direction, number, now_epoch),
        ))
    return LegPlan(account, direction, number, chain[0].tag, tuple(levels))


def applicable_buckets(
    snapshot: Snapshot, account: str, direction: str, number: str, now_epoch: float
) -> tuple[BucketRef, ...]:
    """The account's package buckets that apply, longest prefix match first, then the
    earliest period end (then the order id, so the order is stable).

    An order applies when its period contains `now_epoch`, its product is active, gives
    free seconds, allows the direction and has a prefix that `number` starts with.
    """
    orders = snapshot.orders_of(account)
    if not orders:
        return ()
    found = []
    for o in orders:
        if not o.period_start <= now_epoch < o.period_end:
            continue
        product = snapshot.product(o.product_id)
        if (product is None or product.status != "active" or product.free_seconds <= 0
                or (product.applicable_for != direction and product.applicable_for != "both")):
            continue
        match_len = snapshot.product_match_len(o.product_id, number)
        if match_len < 0:
            continue
        found.append((-match_len, o.period_end, o.order_id,
                      BucketRef(o.order_id, o.product_id, o.period_no, product.free_seconds,
                                o.period_end)))
    if len(found) > 1:
        found.sort(key=lambda f: f[:3])
    return tuple(f[3] for f in found)


def _group_name(snapshot: Snapshot, acct: AccountInfo) -> str:
    group = snapshot.rate_group(acct.rate_group)
    return str(acct.rate_group) if group is None else group.name
