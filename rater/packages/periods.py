"""Package billing periods: where the n-th period of an order starts and ends (pure, UTC),
and how those times are written (`iso_time`).

Periods are half-open ``[start, end)`` and numbered from 0, the period paid at order time.
``one_time`` has only period 0, ``billing_days`` long, and is then released; ``recurring``
renews every ``billing_days`` from the order date; ``monthly`` renews on the order's day of
each month, anchored on the original day (Jan 31 -> Feb 28/29 -> Mar 31 -> Apr 30), keeping
the time of day. ``billing_days`` is ignored for ``monthly``.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from enum import StrEnum


class BillingType(StrEnum):
    ONE_TIME = "one_time"
    RECURRING = "recurring"
    MONTHLY = "monthly"


def _utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: a timezone-aware datetime is required, got {value!r}")
    return value.astimezone(UTC)


def _checked(billing_type: str, billing_days: int) -> BillingType:
    kind = BillingType(billing_type)
    if kind is not BillingType.MONTHLY and (
        isinstance(billing_days, bool) or not isinstance(billing_days, int) or billing_days < 1
    ):
        raise ValueError(f"billing_days: must be an int >= 1, got {billing_days!r}")
    return kind


def _add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` moved by `months`, its day clamped to the target month's length."""
    index = anchor.year * 12 + anchor.month - 1 + months
    year, month0 = divmod(index, 12)
    day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
    return anchor.replace(year=year, month=month0 + 1, day=day)


def _start(kind: BillingType, billing_days: int, ordered_at: datetime, n: int) -> datetime:
    if kind is BillingType.MONTHLY:
        return _add_months(ordered_at, n)
    return ordered_at + timedelta(days=billing_days * n)


def period_bounds(
    billing_type: str, billing_days: int, ordered_at: datetime, n: int
) -> tuple[datetime, datetime]:
    """``(start, end)`` of the n-th period (n = 0 first) of an order placed at `ordered_at`.

    Raises ValueError for n < 0, for n > 0 on a ``one_time`` package, for an unknown billing
    type, for ``billing_days < 1`` (except ``monthly``) and for a naive datetime.
    """
    kind = _checked(billing_type, billing_days)
    ordered_at = _utc("ordered_at", ordered_at)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0 or (
        kind is BillingType.ONE_TIME and n > 0
    ):
        raise ValueError(f"n: {billing_type} package has no period {n}")
    return _start(kind, billing_days, ordered_at, n), _start(kind, billing_days, ordered_at, n + 1)


def period_index_at(
    billing_type: str, billing_days: int, ordered_at: datetime, now: datetime
) -> int | None:
    """Index of the period containing `now`; None before the order or after a one-time end."""
    kind = _checked(billing_type, billing_days)
    ordered_at = _utc("ordered_at", ordered_at)
    now = _utc("now", now)
    if now < ordered_at:
        return None
    if kind is BillingType.MONTHLY:
        # A first guess from the calendar months, off by at most one (day / time of day).
        n = (now.year - ordered_at.year) * 12 + now.month - ordered_at.month
        if _add_months(ordered_at, n) > now:
            n -= 1
        return n
    n = (now - ordered_at) // timedelta(days=billing_days)
    if kind is BillingType.ONE_TIME and n > 0:
        return None
    return n


def periods_due(
    billing_type: str,
    billing_days: int,
    ordered_at: datetime,
    last_renewed_period: int,
    now: datetime,
) -> range:
    """Periods a renewal job must still charge: those after `last_renewed_period` begun by `now`.

    Period 0 is charged by the order itself, so pass ``last_renewed_period=0`` for a fresh
    order. A ``one_time`` package never renews (see `released_at`). After downtime the range
    holds every missed period, in order; the job decides whether to charge each one.
    """
    index = period_index_at(billing_type, billing_days, ordered_at, now)
    if index is None or BillingType(billing_type) is BillingType.ONE_TIME:
        return range(0)
    return range(last_renewed_period + 1, max(index, last_renewed_period) + 1)


def released_at(billing_type: str, billing_days: int, ordered_at: datetime) -> datetime | None:
    """When a ``one_time`` package is released (the end of its only period); None otherwise."""
    if BillingType(billing_type) is not BillingType.ONE_TIME:
        return None
    return period_bounds(billing_type, billing_days, ordered_at, 0)[1]


def iso_time(t: datetime) -> str:
    """ISO 8601 in UTC with a Z, as periods are written in output and notifications."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
