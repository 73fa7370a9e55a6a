"""`rater quote`: the decision the daemon would take for a call now, explained per level.

The decision is authorize.lua's own, run dry: the same checks in the same order on the live
balances and buckets, nothing written; the script also answers each level's figures and
what the quoted duration would cost it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rater.ledger.client import Ledger
from rater.rating.chain import Refusal, resolve_leg
from rater.rating.snapshot import Snapshot


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
    dry = ledger.authorize_dry_run(plan, cap_seconds=cap_seconds, billed_seconds=duration)
    decision = dry.decision
    reason, refused_by = decision.reason, decision.account
    figures = [f for f in dry.levels if f is not None]
    if len(figures) < len(plan.levels):
        missing = next(lv.account for lv, f in zip(plan.levels, dry.levels, strict=True)
                       if f is None)
        return Quote(False, reason, refused_by, 0, duration, direction, plan.destination,
                     detail=f"account {missing} is not in Redis (run `loader sync`)")
    levels: list[LevelQuote] = []
    for lv, f in zip(plan.levels, figures, strict=True):
        packages = []
        for b, left in zip(lv.buckets, f.seconds_left, strict=True):
            product = snapshot.product(b.product_id)
            packages.append(PackageQuote(b.order_id, product.name if product else "", left))
        t = lv.tariff
        levels.append(LevelQuote(
            account=lv.account, rate_group=lv.rate_group, prefix=lv.prefix,
            destination_name=lv.destination_name, price_per_min_micros=t.price_per_min_micros,
            connect_fee_micros=t.connect_fee_micros, markup_bp=t.markup_bp,
            included_seconds=t.included_seconds, init_inc=t.init_inc, inc=t.inc,
            balance_micros=f.balance_micros, held_micros=f.held_micros,
            floor_micros=lv.floor_micros, live_legs=f.live_legs,
            max_channels=lv.max_channels, packages=packages, max_seconds=f.max_seconds,
            charged_seconds=f.charged_seconds, free_seconds=f.free_seconds,
            cost_micros=f.cost_micros,
        ))
    return Quote(decision.allowed, reason, refused_by, decision.max_seconds, duration,
                 direction, plan.destination, levels)
