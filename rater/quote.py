"""`rater quote`: the decision the daemon would take for a call now, explained per level.

It reads the live balances and buckets but changes nothing. The arithmetic is the same as the
ledger scripts' (rater.rating.tariff; tests check Lua and Python agree).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rater.ledger.client import Ledger
from rater.rating.chain import Refusal, resolve_leg
from rater.rating.snapshot import Snapshot
from rater.rating.tariff import first_block_seconds, leg_cost, max_billed_seconds


@dataclass(frozen=True, slots=True)
class PackageQuote:
    order: str
    product: str
    seconds_left: int


@dataclass(frozen=True, slots=True)
class LevelQuote:
    account: str
    rate_group: str
    prefix: str
    destination_name: str
    price_per_min_micros: int
    connect_fee_micros: int
    markup_bp: int
    included_seconds: int
    init_inc: int
    inc: int
    balance_micros: int
    held_micros: int
    floor_micros: int
    live_legs: int
    max_channels: int
    packages: list[PackageQuote]
    max_seconds: int
    charged_seconds: int
    free_seconds: int
    cost_micros: int


@dataclass(frozen=True, slots=True)
class Quote:
    allowed: bool
    reason: str | None
    refused_by: str | None
    max_seconds: int
    duration: int
    direction: str
    destination: str
    levels: list[LevelQuote] = field(default_factory=list)
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quote(
    snapshot: Snapshot, ledger: Ledger, *, account: str | None, destination: str,
    direction: str, duration: int, cap_seconds: int, now_epoch: float,
) -> Quote:
    """Explain how a call of `duration` billed seconds would be rated now."""
    plan = resolve_leg(snapshot, account, direction, destination, now_epoch)
    if isinstance(plan, Refusal):
        return Quote(False, plan.reason, plan.account, 0, duration, direction, destination,
                     detail=plan.detail)
    levels: list[LevelQuote] = []
    reason = refused_by = None
    max_seconds = cap_seconds
    for lv in plan.levels:
        state = ledger.account_state(plan.tag, lv.account)
        if state is None:
            return Quote(False, "unknown_account", lv.account, 0, duration, direction,
                         plan.destination, detail=f"account {lv.account} is not in Redis "
                         "(run `loader sync`)")
        packages = []
        for b in lv.buckets:
            bucket = ledger.bucket_state(plan.tag, b.order_id)
            left = 0 if bucket is None else max(0, bucket.seconds_left - bucket.seconds_held)
            product = snapshot.product(b.product_id)
            packages.append(PackageQuote(b.order_id, product.name if product else "", left))
        free = sum(p.seconds_left for p in packages)
        funds = state.balance_micros - state.held_micros - lv.floor_micros
        t = lv.tariff
        level_max = max_billed_seconds(t, funds, free, cap_seconds)
        cost = leg_cost(t, duration, free)
        if reason is None:
            if lv.max_channels and state.live_legs >= lv.max_channels:
                reason, refused_by = "max_channels", lv.account
            elif not t.costs_nothing and level_max < first_block_seconds(t):
                reason, refused_by = "insufficient_funds", lv.account
        max_seconds = min(max_seconds, level_max)
        levels.append(LevelQuote(
            account=lv.account, rate_group=lv.rate_group, prefix=lv.prefix,
            destination_name=lv.destination_name, price_per_min_micros=t.price_per_min_micros,
            connect_fee_micros=t.connect_fee_micros, markup_bp=t.markup_bp,
            included_seconds=t.included_seconds, init_inc=t.init_inc, inc=t.inc,
            balance_micros=state.balance_micros, held_micros=state.held_micros,
            floor_micros=lv.floor_micros, live_legs=state.live_legs,
            max_channels=lv.max_channels, packages=packages, max_seconds=level_max,
            charged_seconds=cost.charged_seconds, free_seconds=cost.free_seconds,
            cost_micros=cost.cost_micros,
        ))
    allowed = reason is None and max_seconds > 0
    if reason is None and not allowed:
        reason, refused_by = "insufficient_funds", plan.account
    return Quote(allowed, reason, refused_by, max_seconds if allowed else 0, duration,
                 direction, plan.destination, levels)
