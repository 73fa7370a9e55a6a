"""Early-termination refunds: the seed's examples, rounding, caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rater.packages.refunds import (
    ChargeType,
    early_termination_refund,
    refund_micros,
    started_days,
    used_fraction,
)

START = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def refund(
    charge_type: str,
    amount: int,
    *,
    days_used: int = 0,
    period_days: int = 28,
    used_seconds: int = 0,
    free_minutes: int = 100,
) -> int:
    return early_termination_refund(
        charge_type,
        amount,
        days_used=days_used,
        period_days=period_days,
        used_seconds=used_seconds,
        free_minutes=free_minutes,
    )


# --- the seed's examples ----------------------------------------------------------------

def test_full_amount_refunds_nothing() -> None:
    assert refund("full", 10_000_000, days_used=1, used_seconds=0) == 0


def test_utilized_days_28_day_package_ended_after_7_days_refunds_three_quarters() -> None:
    # 10.00 * (1 - 7/28) = 10.00 * 3/4 = 7.50
    assert refund("utilized_days", 10_000_000, days_used=7, period_days=28) == 7_500_000


def test_utilized_minutes_100_minutes_with_50_used_refunds_half() -> None:
    # 50 min = 3000 s of 100 min = 6000 s; 10.00 * 1/2 = 5.00
    assert refund("utilized_minutes", 10_000_000, used_seconds=3_000, free_minutes=100) == (
        5_000_000
    )


def test_highest_charges_the_larger_used_fraction() -> None:
    # days 7/28 = 1/4, minutes 50/100 = 1/2 -> used 1/2, refund 10.00 * 1/2 = 5.00
    assert refund("highest", 10_000_000, days_used=7, used_seconds=3_000) == 5_000_000
    # days 21/28 = 3/4, minutes 1/2 -> used 3/4, refund 10.00 * 1/4 = 2.50
    assert refund("highest", 10_000_000, days_used=21, used_seconds=3_000) == 2_500_000


# --- days -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("until", "expected"),
    [
        (START, 0),  # terminated at the start: no day used
        (START - timedelta(hours=1), 0),
        (START + timedelta(microseconds=1), 1),  # a started day counts as used
        (START + timedelta(days=1), 1),
        (START + timedelta(days=6, seconds=1), 7),
        (START + timedelta(days=7), 7),
    ],
)
def test_started_days(until: datetime, expected: int) -> None:
    assert started_days(START, until) == expected


def test_a_started_day_is_charged_as_used() -> None:
    used = started_days(START, START + timedelta(days=6, seconds=1))  # 7 days
    # same as the seed example: 10.00 * 21/28 = 7.50
    assert refund("utilized_days", 10_000_000, days_used=used, period_days=28) == 7_500_000


def test_monthly_period_length_in_days() -> None:
    feb = datetime(2027, 2, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC)
    assert started_days(*feb) == 28
    leap_feb = datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)
    assert started_days(*leap_feb) == 29
    # 29.00 over 29 days, 10 used -> 29.00 * 19/29 = 19.00
    assert refund("utilized_days", 29_000_000, days_used=10, period_days=29) == 19_000_000


def test_started_days_needs_aware_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        started_days(datetime(2027, 1, 1), START)


# --- rounding and caps ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("amount", "days_used", "period_days", "expected"),
    [
        (1, 1, 2, 1),  # 1 * 1/2 = 0.5 -> half-up 1
        (3, 1, 2, 2),  # 3 * 1/2 = 1.5 -> 2
        (5, 1, 2, 3),  # 2.5 -> 3
        (10, 1, 3, 7),  # 10 * 2/3 = 6.67 -> 7
        (10, 2, 3, 3),  # 10 * 1/3 = 3.33 -> 3
        (9_990_000, 1, 30, 9_657_000),  # 9.99 * 29/30 = 9.657 exactly
        (10_000_000, 1, 30, 9_666_667),  # 10.00 * 29/30 = 9.6666667 -> 9.666667
        (10_000_000, 0, 28, 10_000_000),  # nothing used: everything back
        (10_000_000, 28, 28, 0),  # all used
        (10_000_000, 40, 28, 0),  # more days than the period: capped at all used
    ],
)
def test_utilized_days_rounding(
    amount: int, days_used: int, period_days: int, expected: int
) -> None:
    got = refund("utilized_days", amount, days_used=days_used, period_days=period_days)
    assert got == expected


def test_utilized_minutes_caps_and_zero_minutes() -> None:
    # used more than the bucket (cannot happen, but never a negative refund)
    assert refund("utilized_minutes", 10_000_000, used_seconds=7_000, free_minutes=100) == 0
    # 1 s of 100 min: 10.00 * 5999/6000 = 9.998333.. -> 9.998333
    assert refund("utilized_minutes", 10_000_000, used_seconds=1, free_minutes=100) == 9_998_333
    # a package without free minutes counts as fully used under this charge type
    assert refund("utilized_minutes", 10_000_000, used_seconds=0, free_minutes=0) == 0
    # ... and so under "highest" too: max(7/28, 1) = 1 -> nothing back
    assert refund("highest", 10_000_000, days_used=7, free_minutes=0) == 0


def test_used_fraction_values() -> None:
    kw = {"days_used": 7, "period_days": 28, "used_seconds": 3_000, "free_minutes": 100}
    assert used_fraction(ChargeType.FULL, **kw) == 1
    assert used_fraction(ChargeType.UTILIZED_DAYS, **kw) == Fraction(1, 4)
    assert used_fraction(ChargeType.UTILIZED_MINUTES, **kw) == Fraction(1, 2)
    assert used_fraction(ChargeType.HIGHEST, **kw) == Fraction(1, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"charge_type": "partial"}, "partial"),
        ({"period_days": 0}, "period_days"),
        ({"days_used": -1}, "days_used"),
        ({"used_seconds": -1}, "used_seconds"),
        ({"amount": -1}, "amount_paid_micros"),
    ],
)
def test_bad_input_is_rejected(kwargs: dict, match: str) -> None:
    args = {"charge_type": "utilized_days", "amount": 10_000_000, **kwargs}
    charge_type, amount = args.pop("charge_type"), args.pop("amount")
    with pytest.raises(ValueError, match=match):
        refund(charge_type, amount, **args)


def test_refund_micros_rejects_fractions_out_of_range() -> None:
    with pytest.raises(ValueError, match="used"):
        refund_micros(100, Fraction(3, 2))


@given(
    st.sampled_from(list(ChargeType)),
    st.integers(0, 10**12),
    st.integers(0, 40),
    st.integers(1, 31),
    st.integers(0, 10**6),
    st.integers(0, 10_000),
)
def test_refund_is_between_nothing_and_what_was_paid(
    charge_type: ChargeType, amount: int, days: int, period: int, used: int, minutes: int
) -> None:
    r = refund(
        charge_type, amount, days_used=days, period_days=period, used_seconds=used,
        free_minutes=minutes,
    )
    assert 0 <= r <= amount
    if charge_type is ChargeType.HIGHEST:
        # charging the larger used fraction never refunds more than either alone
        for single in (ChargeType.UTILIZED_DAYS, ChargeType.UTILIZED_MINUTES):
            assert r <= refund(
                single, amount, days_used=days, period_days=period, used_seconds=used,
                free_minutes=minutes,
            )
