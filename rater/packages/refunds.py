"""Early-termination refunds of a package, by charge type (pure, exact fractions).

The refund is ``round_half_up(amount_paid_for_period * (1 - used_fraction))``, rounded once.
Only the current period's price is ever refunded; setup fees never are, so callers pass the
period price alone. Each level of a reseller chain applies the same used fraction to what
it paid itself (compute `used_fraction` once, then `refund_micros` per level).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from rater.money import div_half_up

_DAY = timedelta(days=1)


class ChargeType(StrEnum):
    FULL = "full"
    UTILIZED_DAYS = "utilized_days"
    UTILIZED_MINUTES = "utilized_minutes"
    HIGHEST = "highest"


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: must be an int >= 0, got {value!r}")
    return value


def started_days(since: datetime, until: datetime) -> int:
    """Days from `since` to `until`, a started day counting as a whole one.

    ``ceil((until - since) / 1 day)``, 0 when `until` is not after `since`. Gives the days
    used (period start -> termination) and a period's length (start -> end; monthly 28-31).
    Both datetimes must be timezone-aware.
    """
    if since.utcoffset() is None or until.utcoffset() is None:
        raise ValueError("since, until: timezone-aware datetimes are required")
    elapsed = until - since
    if elapsed <= timedelta(0):
        return 0
    return -(-elapsed // _DAY)


def used_fraction(
    charge_type: str,
    *,
    days_used: int,
    period_days: int,
    used_seconds: int,
    free_minutes: int,
) -> Fraction:
    """The share of the period's price kept as charged, in [0, 1].

    ``full`` -> 1; ``utilized_days`` -> days_used / period_days; ``utilized_minutes`` ->
    used_seconds / (free_minutes * 60); ``highest`` -> the larger of the two. Each fraction
    is capped at 1. A package with no free minutes counts as fully used under
    ``utilized_minutes`` (usage cannot be measured, so nothing is refunded on it).
    """
    kind = ChargeType(charge_type)
    _check_count("days_used", days_used)
    _check_count("used_seconds", used_seconds)
    _check_count("free_minutes", free_minutes)
    if _check_count("period_days", period_days) == 0:
        raise ValueError("period_days: must be >= 1")
    if kind is ChargeType.FULL:
        return Fraction(1)
    by_days = min(Fraction(1), Fraction(days_used, period_days))
    free_seconds = free_minutes * 60
    by_minutes = (
        Fraction(1) if free_seconds == 0 else min(Fraction(1), Fraction(used_seconds, free_seconds))
    )
    if kind is ChargeType.UTILIZED_DAYS:
        return by_days
    if kind is ChargeType.UTILIZED_MINUTES:
        return by_minutes
    return max(by_days, by_minutes)


def refund_micros(amount_paid_micros: int, used: Fraction) -> int:
    """``round_half_up(amount_paid_micros * (1 - used))``: the part of the price given back."""
    _check_count("amount_paid_micros", amount_paid_micros)
    if not 0 <= used <= 1:
        raise ValueError(f"used: must be within [0, 1], got {used}")
    exact = amount_paid_micros * (1 - Fraction(used))
    return div_half_up(exact.numerator, exact.denominator)


def early_termination_refund(
    charge_type: str,
    amount_paid_micros: int,
    *,
    days_used: int,
    period_days: int,
    used_seconds: int,
    free_minutes: int,
) -> int:
    """Refund, in micro-units, of one level's period price when a package ends early."""
    used = used_fraction(
        charge_type,
        days_used=days_used,
        period_days=period_days,
        used_seconds=used_seconds,
        free_minutes=free_minutes,
    )
    return refund_micros(amount_paid_micros, used)
