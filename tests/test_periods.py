"""Package billing periods: month ends, leap years, year ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rater.packages.periods import (
    BillingType,
    period_bounds,
    period_index_at,
    periods_due,
    released_at,
)


def utc(y: int, mo: int, d: int, h: int = 10, mi: int = 30, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


# --- monthly ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("ordered", "n", "start", "end"),
    [
        # anchored on the 31st: short months clamp, long months return to the 31st
        (utc(2027, 1, 31), 0, utc(2027, 1, 31), utc(2027, 2, 28)),
        (utc(2027, 1, 31), 1, utc(2027, 2, 28), utc(2027, 3, 31)),
        (utc(2027, 1, 31), 2, utc(2027, 3, 31), utc(2027, 4, 30)),
        (utc(2027, 1, 31), 3, utc(2027, 4, 30), utc(2027, 5, 31)),
        # 2028 is a leap year
        (utc(2028, 1, 31), 0, utc(2028, 1, 31), utc(2028, 2, 29)),
        (utc(2028, 1, 30), 0, utc(2028, 1, 30), utc(2028, 2, 29)),
        (utc(2028, 1, 29), 0, utc(2028, 1, 29), utc(2028, 2, 29)),
        (utc(2028, 1, 28), 0, utc(2028, 1, 28), utc(2028, 2, 28)),
        # 2100 is not (divisible by 100, not by 400); 2000 was
        (utc(2100, 1, 31), 0, utc(2100, 1, 31), utc(2100, 2, 28)),
        (utc(2000, 1, 31), 0, utc(2000, 1, 31), utc(2000, 2, 29)),
        # ordered on a leap day: day 29 is the anchor, Feb 28 in common years
        (utc(2028, 2, 29), 1, utc(2028, 3, 29), utc(2028, 4, 29)),
        (utc(2028, 2, 29), 11, utc(2029, 1, 29), utc(2029, 2, 28)),
        (utc(2028, 2, 29), 12, utc(2029, 2, 28), utc(2029, 3, 29)),
        (utc(2028, 2, 29), 48, utc(2032, 2, 29), utc(2032, 3, 29)),
        # crossing year ends
        (utc(2027, 11, 30), 1, utc(2027, 12, 30), utc(2028, 1, 30)),
        (utc(2027, 11, 30), 2, utc(2028, 1, 30), utc(2028, 2, 29)),
        (utc(2027, 12, 31), 0, utc(2027, 12, 31), utc(2028, 1, 31)),
        (utc(2027, 12, 31), 2, utc(2028, 2, 29), utc(2028, 3, 31)),
        (utc(2027, 12, 31), 14, utc(2029, 2, 28), utc(2029, 3, 31)),
        # time of day kept, to the microsecond
        (
            datetime(2027, 5, 15, 23, 59, 59, 999_999, tzinfo=UTC),
            7,
            datetime(2027, 12, 15, 23, 59, 59, 999_999, tzinfo=UTC),
            datetime(2028, 1, 15, 23, 59, 59, 999_999, tzinfo=UTC),
        ),
    ],
)
def test_monthly_bounds(ordered: datetime, n: int, start: datetime, end: datetime) -> None:
    assert period_bounds("monthly", 30, ordered, n) == (start, end)


def test_monthly_ignores_billing_days() -> None:
    assert period_bounds(BillingType.MONTHLY, 0, utc(2027, 1, 31), 1) == (
        utc(2027, 2, 28),
        utc(2027, 3, 31),
    )


# --- recurring and one time -------------------------------------------------------------

@pytest.mark.parametrize(
    ("days", "ordered", "n", "start", "end"),
    [
        (28, utc(2027, 12, 20, 8, 0), 0, utc(2027, 12, 20, 8, 0), utc(2028, 1, 17, 8, 0)),
        # Dec 20 + 28 = Jan 17 (11 days left in Dec + 17)
        (28, utc(2027, 12, 20, 8, 0), 1, utc(2028, 1, 17, 8, 0), utc(2028, 2, 14, 8, 0)),
        # Feb 14 + 28 = Mar 13 in a leap year (15 days to Feb 29, + 13)
        (28, utc(2027, 12, 20, 8, 0), 2, utc(2028, 2, 14, 8, 0), utc(2028, 3, 13, 8, 0)),
        # 30 days from Feb 1 2028: Feb has 29 days -> Mar 2
        (30, utc(2028, 2, 1), 0, utc(2028, 2, 1), utc(2028, 3, 2)),
        # ... and Mar 1 in 2027 (28 days) + 2 = Mar 3
        (30, utc(2027, 2, 1), 0, utc(2027, 2, 1), utc(2027, 3, 3)),
        # 2100-02-28 + 1 day is March 1 (no Feb 29)
        (1, utc(2100, 2, 28), 0, utc(2100, 2, 28), utc(2100, 3, 1)),
        # 365 days from 2028-01-01 ends 2028-12-31 (366-day year)
        (365, utc(2028, 1, 1), 0, utc(2028, 1, 1), utc(2028, 12, 31)),
    ],
)
def test_recurring_bounds(
    days: int, ordered: datetime, n: int, start: datetime, end: datetime
) -> None:
    assert period_bounds("recurring", days, ordered, n) == (start, end)


def test_one_time_has_a_single_period() -> None:
    ordered = utc(2028, 2, 15)
    assert period_bounds("one_time", 30, ordered, 0) == (ordered, utc(2028, 3, 16))
    with pytest.raises(ValueError, match="no period 1"):
        period_bounds("one_time", 30, ordered, 1)
    assert released_at("one_time", 30, ordered) == utc(2028, 3, 16)
    assert released_at("recurring", 30, ordered) is None
    assert released_at("monthly", 30, ordered) is None


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("weekly", 7, utc(2027, 1, 1), 0), "weekly"),
        (("recurring", 0, utc(2027, 1, 1), 0), "billing_days"),
        (("one_time", -3, utc(2027, 1, 1), 0), "billing_days"),
        (("recurring", 30, utc(2027, 1, 1), -1), "no period -1"),
        (("recurring", 30, datetime(2027, 1, 1), 0), "timezone-aware"),
    ],
)
def test_bad_input_is_rejected(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        period_bounds(*args)


def test_other_offsets_are_converted_to_utc_first() -> None:
    # 2027-01-31 23:30 at UTC-5 is 2027-02-01 04:30 UTC: the anchor is the 1st, in UTC.
    ordered = datetime(2027, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert period_bounds("monthly", 0, ordered, 1) == (
        utc(2027, 3, 1, 4, 30),
        utc(2027, 4, 1, 4, 30),
    )


# --- which period, which renewals -------------------------------------------------------

@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2027, 1, 31, 10, 29, 59), None),  # before the order
        (utc(2027, 1, 31), 0),  # at the order
        (utc(2027, 2, 28, 10, 29, 59), 0),  # the last second of period 0
        (utc(2027, 2, 28), 1),  # period 1 starts on the clamped day
        (utc(2027, 3, 30, 23, 59, 59), 1),
        (utc(2027, 3, 31, 10, 29, 59), 1),
        (utc(2027, 3, 31), 2),
        (utc(2028, 1, 31), 12),  # a year later, across the year end
        (utc(2028, 2, 29), 13),  # leap Feb 29 is the clamped anchor
    ],
)
def test_monthly_period_index(now: datetime, expected: int | None) -> None:
    assert period_index_at("monthly", 0, utc(2027, 1, 31), now) == expected


def test_recurring_and_one_time_period_index() -> None:
    ordered = utc(2027, 12, 20)
    assert period_index_at("recurring", 28, ordered, utc(2028, 1, 17, 10, 29, 59)) == 0
    assert period_index_at("recurring", 28, ordered, utc(2028, 1, 17)) == 1
    assert period_index_at("recurring", 28, ordered, utc(2028, 3, 13)) == 3
    assert period_index_at("one_time", 28, ordered, utc(2028, 1, 17, 10, 29, 59)) == 0
    assert period_index_at("one_time", 28, ordered, utc(2028, 1, 17)) is None
    assert period_index_at("one_time", 28, ordered, utc(2027, 12, 19)) is None


def test_periods_due() -> None:
    ordered = utc(2027, 1, 31)
    # a fresh order (period 0 paid at order time), still inside period 0: nothing due
    assert periods_due("monthly", 0, ordered, 0, utc(2027, 2, 27)) == range(0)
    # the renewal job runs on the boundary: period 1 is due
    assert list(periods_due("monthly", 0, ordered, 0, utc(2027, 2, 28))) == [1]
    # the job was down for months: every missed period, in order
    assert list(periods_due("monthly", 0, ordered, 0, utc(2027, 5, 1))) == [1, 2, 3]
    assert list(periods_due("monthly", 0, ordered, 2, utc(2027, 5, 1))) == [3]
    assert periods_due("monthly", 0, ordered, 3, utc(2027, 5, 1)) == range(0)
    assert periods_due("monthly", 0, ordered, 5, utc(2027, 5, 1)) == range(0)
    assert periods_due("monthly", 0, ordered, 0, utc(2026, 1, 1)) == range(0)
    # one-time packages never renew
    assert periods_due("one_time", 28, ordered, 0, utc(2028, 1, 1)) == range(0)
    assert list(periods_due("recurring", 28, utc(2027, 12, 20), 0, utc(2028, 3, 13))) == [1, 2, 3]


# --- properties -------------------------------------------------------------------------

orders = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
)


@given(orders, st.integers(0, 2_400))
def test_monthly_periods_tile_time_and_last_a_month(ordered: datetime, n: int) -> None:
    start, end = period_bounds("monthly", 0, ordered, n)
    assert period_bounds("monthly", 0, ordered, n + 1)[0] == end
    assert timedelta(days=28) <= end - start <= timedelta(days=31)
    assert start.time() == ordered.time()
    # the original day, or the last day of a month too short for it
    last_day_of_month = (start + timedelta(days=1)).day == 1
    assert start.day == ordered.day or (start.day < ordered.day and last_day_of_month)
    assert period_index_at("monthly", 0, ordered, start) == n
    assert period_index_at("monthly", 0, ordered, end - timedelta(microseconds=1)) == n


@given(orders, st.integers(1, 400), st.integers(0, 200))
def test_recurring_periods_tile_time(ordered: datetime, days: int, n: int) -> None:
    start, end = period_bounds("recurring", days, ordered, n)
    assert end - start == timedelta(days=days)
    assert start == ordered + timedelta(days=days * n)
    assert period_index_at("recurring", days, ordered, start) == n
    assert period_index_at("recurring", days, ordered, end - timedelta(microseconds=1)) == n
