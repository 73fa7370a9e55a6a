"""Rating math: hand-worked tables first, then properties (hypothesis)."""

from __future__ import annotations

import itertools
import math
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rater.rating.tariff import (
    LUA_MAX_PAID_SECONDS,
    LegCost,
    Tariff,
    billed_seconds_from_msec,
    billed_seconds_from_usec,
    charged_seconds,
    first_block_seconds,
    leg_cost,
    max_billed_seconds,
    max_paid_seconds,
    money_due,
    paid_cost,
    paid_cost_parts,
)
from tests import golden_vectors

# DESIGN §4 worked example: 0.10/min, connect 0.05, init_inc 30, inc 6.
WORKED = Tariff(price_per_min_micros=100_000, connect_fee_micros=50_000, init_inc=30, inc=6)


# --- validation -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("init_inc", 0),
        ("inc", 0),
        ("price_per_min_micros", -1),
        ("connect_fee_micros", -1),
        ("included_seconds", -1),
        ("markup_bp", -1),
        ("price_per_min_micros", 0.1),
        ("inc", True),
    ],
)
def test_tariff_rejects_bad_fields_naming_them(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"price_per_min_micros": 100_000, field: value}
    with pytest.raises(ValueError, match=field):
        Tariff(**kwargs)  # type: ignore[arg-type]


def test_negative_durations_are_rejected() -> None:
    with pytest.raises(ValueError, match="billed"):
        charged_seconds(WORKED, -1)
    with pytest.raises(ValueError, match="paid_seconds"):
        paid_cost(WORKED, -1)
    with pytest.raises(ValueError, match="free_available"):
        leg_cost(WORKED, 10, -1)


# --- charged seconds --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("included", "init_inc", "inc", "billed", "expected"),
    [
        (0, 1, 1, 0, 0),  # nothing billed, nothing charged
        (0, 1, 1, 1, 1),  # per-second: s = d
        (0, 1, 1, 59, 59),
        (0, 30, 6, 0, 0),  # d == 0 -> 0 even with a 30 s first block
        (0, 30, 6, 1, 30),  # 1 <= init_inc -> the whole first block: 30
        (0, 30, 6, 30, 30),  # exactly the first block
        (0, 30, 6, 31, 36),  # 30 + ceil(1/6)*6 = 30 + 6
        (0, 30, 6, 36, 36),  # 30 + ceil(6/6)*6 = 36
        (0, 30, 6, 37, 42),  # 30 + ceil(7/6)*6 = 30 + 12
        (0, 30, 6, 65, 66),  # DESIGN: 30 + ceil(35/6)*6 = 30 + 36
        (0, 60, 60, 61, 120),  # 60 + ceil(1/60)*60
        (0, 1, 60, 2, 61),  # 1 + ceil(1/60)*60
        (10, 30, 6, 10, 0),  # d' = 10 - 10 = 0 -> 0
        (10, 30, 6, 11, 30),  # d' = 1 -> first block 30
        (10, 30, 6, 40, 30),  # d' = 30 -> 30
        (10, 30, 6, 41, 36),  # d' = 31 -> 30 + 6
        (60, 1, 1, 59, 0),  # all inside the included minute
        (60, 1, 1, 61, 1),  # d' = 1
    ],
)
def test_charged_seconds_table(
    included: int, init_inc: int, inc: int, billed: int, expected: int
) -> None:
    t = Tariff(100_000, included_seconds=included, init_inc=init_inc, inc=inc)
    assert charged_seconds(t, billed) == expected


# --- paid cost --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("price", "markup_bp", "paid", "expected"),
    [
        (100_000, 0, 0, 0),
        (100_000, 0, 66, 110_000),  # 100000 * 66 / 60 = 110000 exactly
        (100_000, 0, 1, 1_667),  # 100000 / 60 = 1666.67 -> 1667
        (70_000, 0, 1, 1_167),  # 70000 / 60 = 1166.67 -> 1167
        (70_000, 0, 2, 2_333),  # 140000 / 60 = 2333.33 -> 2333
        (70_000, 0, 3, 3_500),  # 210000 / 60 = 3500
        (1, 0, 29, 0),  # 29 / 60 = 0.483 -> 0
        (1, 0, 30, 1),  # 30 / 60 = 0.5 exactly -> half-up 1
        (1, 0, 89, 1),  # 89 / 60 = 1.483 -> 1
        (1, 0, 90, 2),  # 90 / 60 = 1.5 exactly -> 2
        # 12.5 % markup: 0.10/min -> 0.1125/min = 1875 micro/s
        (100_000, 1_250, 1, 1_875),  # 112500 / 60 = 1875
        (100_000, 1_250, 60, 112_500),  # one minute at 0.1125
        (100_000, 1_250, 7, 13_125),  # 1875 * 7
        # 12.5 % on 0.01/min -> 11250 micro/min = 187.5 micro/s
        (10_000, 1_250, 1, 188),  # 187.5 -> half-up 188
        (10_000, 1_250, 2, 375),  # 375 exactly
        (10_000, 1_250, 3, 563),  # 562.5 -> 563
    ],
)
def test_paid_cost_table(price: int, markup_bp: int, paid: int, expected: int) -> None:
    assert paid_cost(Tariff(price, markup_bp=markup_bp), paid) == expected


def test_paid_cost_parts_of_the_worked_rate() -> None:
    # num = 100000 * 10000 = 1e9; divmod(1e9, 600000) = (1666, 400000)
    assert paid_cost_parts(WORKED) == (1_666, 400_000, 600_000)


def test_paid_cost_parts_refuses_prices_beyond_double_precision() -> None:
    # q * 1e7 must stay below 2**53 ~ 9.007e15, i.e. q < ~9.0e8: 10^12 micro/min gives
    # q = 10^16 / 600000 ~ 1.67e10.
    with pytest.raises(ValueError, match="price_per_min_micros"):
        paid_cost_parts(Tariff(10**12))


# --- money due and leg cost -------------------------------------------------------------

def test_money_due_adds_the_connect_fee_only_when_something_is_paid() -> None:
    assert money_due(WORKED, 0) == 0
    assert money_due(WORKED, 1) == 51_667  # 50000 + 100000/60 = 50000 + 1666.67 -> 51667
    assert money_due(WORKED, 66) == 160_000  # 50000 + 110000


@pytest.mark.parametrize(
    ("billed", "free", "expected"),
    [
        # DESIGN worked example: s = 66, money = 0.05 + 0.10*66/60 = 0.16
        (65, 0, LegCost(66, 0, 66, 160_000)),
        (0, 0, LegCost(0, 0, 0, 0)),  # never answered: not even the connect fee
        # package covers all 66 s: nothing paid, so no connect fee either
        (65, 100, LegCost(66, 66, 0, 0)),
        (65, 66, LegCost(66, 66, 0, 0)),
        # package covers 30 of 66: 36 paid = 50000 + 100000*36/60 = 50000 + 60000
        (65, 30, LegCost(66, 30, 36, 110_000)),
        # package covers 65 of 66: 1 paid = 50000 + 1666.67 -> 51667
        (65, 65, LegCost(66, 65, 1, 51_667)),
        # 1 s billed is a whole 30 s first block: 50000 + 100000*30/60 = 100000
        (1, 0, LegCost(30, 0, 30, 100_000)),
    ],
)
def test_leg_cost_table(billed: int, free: int, expected: LegCost) -> None:
    assert leg_cost(WORKED, billed, free) == expected


def test_leg_cost_with_included_seconds_and_markup() -> None:
    # 0.10/min + 12.5 % = 1875 micro/s, connect 0.02, 60 s included, per second.
    t = Tariff(100_000, connect_fee_micros=20_000, included_seconds=60, markup_bp=1_250)
    assert leg_cost(t, 60, 0) == LegCost(0, 0, 0, 0)  # all included: no connect fee
    assert leg_cost(t, 61, 0) == LegCost(1, 0, 1, 21_875)  # 20000 + 1875
    assert leg_cost(t, 120, 0) == LegCost(60, 0, 60, 132_500)  # 20000 + 1875*60 = 20000+112500
    assert leg_cost(t, 120, 20) == LegCost(60, 20, 40, 95_000)  # 20000 + 1875*40 = 20000+75000


# --- authorization ----------------------------------------------------------------------

@pytest.mark.parametrize("case", golden_vectors.cases(), ids=golden_vectors.ids())
def test_golden_decisions_level_by_level(case: golden_vectors.Case) -> None:
    """tests/golden/decisions.json, each level on its own: what it affords (capped), whether
    that covers its first charged block, and what the billed seconds cost it. The order in
    which levels refuse is authorize.lua's alone (test_ledger.py runs the same vectors)."""
    for lv in case.levels:
        if lv.balance is None:
            continue
        t = lv.tariff
        uncapped = max_billed_seconds(t, lv.funds, lv.free, 10**12)
        cost = leg_cost(t, case.billed, lv.free)
        assert {
            "max_seconds": max_billed_seconds(t, lv.funds, lv.free, case.cap),
            "enough_for_first_block": t.costs_nothing or uncapped >= first_block_seconds(t),
            "charged": cost.charged_seconds, "free": cost.free_seconds,
            "cost": cost.cost_micros,
        } == lv.expect


def test_max_billed_seconds_of_free_and_connect_only_tariffs() -> None:
    assert max_billed_seconds(Tariff(0), 0, 0, 7_200) == 7_200
    assert max_billed_seconds(Tariff(0), -1, 0, 7_200) == 7_200  # costs nothing, ever
    connect_only = Tariff(0, connect_fee_micros=50_000)
    assert max_paid_seconds(connect_only, 50_000) is None  # the fee pays for any length
    assert max_billed_seconds(connect_only, 50_000, 0, 7_200) == 7_200
    assert max_billed_seconds(connect_only, 49_999, 0, 7_200) == 0


def test_included_seconds_are_always_affordable_but_below_the_first_block() -> None:
    t = Tariff(100_000, included_seconds=60, init_inc=30, inc=6)
    assert max_billed_seconds(t, 0, 0, 3_600) == 60
    assert first_block_seconds(t) == 90  # 60 included + 30 first block: refuse at 60
    assert first_block_seconds(WORKED) == 30
    assert Tariff(0).costs_nothing
    assert not Tariff(0, connect_fee_micros=1).costs_nothing


# --- billed duration --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("answered", "hangup", "expected"),
    [
        (0, 1_700_000_065_000_000, 0),  # never answered
        (1_000_000, 1_000_000, 0),  # answered and hung up at once
        (1_000_000, 1_000_001, 1),  # 1 µs is a started second
        (1_000_000, 66_000_000, 65),  # exactly 65 s
        (1_000_000, 66_000_001, 66),  # 65.000001 s -> 66
        (1_700_000_000_000_000, 1_700_000_064_200_000, 65),  # 64.2 s (billsec says 64)
    ],
)
def test_billed_seconds_from_usec(answered: int, hangup: int, expected: int) -> None:
    assert billed_seconds_from_usec(answered, hangup) == expected


def test_billed_seconds_from_usec_rejects_hangup_before_answer() -> None:
    with pytest.raises(ValueError, match="before"):
        billed_seconds_from_usec(2_000_000, 1_000_000)


@pytest.mark.parametrize(
    ("billmsec", "expected"),
    [(0, 0), (1, 1), (999, 1), (1_000, 1), (1_001, 2), (64_999, 65), (65_000, 65)],
)
def test_billed_seconds_from_msec(billmsec: int, expected: int) -> None:
    assert billed_seconds_from_msec(billmsec) == expected


# --- properties -------------------------------------------------------------------------

tariffs = st.builds(
    Tariff,
    price_per_min_micros=st.integers(0, 1_000 * 1_000_000),  # up to 1000 units/min
    connect_fee_micros=st.integers(0, 10_000_000),
    included_seconds=st.integers(0, 120),
    init_inc=st.integers(1, 120),
    inc=st.integers(1, 120),
    markup_bp=st.integers(0, 10_000),
)
paid_seconds = st.integers(0, LUA_MAX_PAID_SECONDS)


def _reference_paid_cost(t: Tariff, paid: int) -> int:
    """An independent oracle: Decimal with ROUND_HALF_UP on the exact quotient."""
    exact = Decimal(t.price_per_min_micros) * (10_000 + t.markup_bp) * paid / 600_000
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@given(tariffs, paid_seconds)
def test_paid_cost_matches_decimal_half_up(t: Tariff, paid: int) -> None:
    assert paid_cost(t, paid) == _reference_paid_cost(t, paid)


@given(tariffs, paid_seconds)
def test_paid_cost_parts_agree_exactly_and_in_doubles(t: Tariff, paid: int) -> None:
    q, r, den = paid_cost_parts(t)
    assert q * paid + (2 * r * paid + den) // (2 * den) == paid_cost(t, paid)
    # What the Lua script does: every term a double, floor of a double division. Every
    # intermediate must be an exact integer below 2**53 for this to equal the int form.
    assert q * paid + 2 * r * paid + den < 2**53
    as_doubles = float(q) * float(paid) + math.floor(
        (2.0 * float(r) * float(paid) + float(den)) / (2.0 * float(den))
    )
    assert as_doubles == float(paid_cost(t, paid))


@given(tariffs, st.integers(0, 100_000), st.lists(st.integers(0, 100_000), max_size=12),
       st.integers(0, 200_000))
def test_chunks_add_up_to_the_final_cost(
    t: Tariff, final: int, cuts: list[int], free: int
) -> None:
    # Interim charges are cumulative differences, whatever the chunking.
    points = sorted({0, final, *(c for c in cuts if c <= final)})
    costs = [leg_cost(t, d, free).cost_micros for d in points]
    chunks = [b - a for a, b in itertools.pairwise(costs)]
    assert all(c >= 0 for c in chunks)
    assert sum(chunks) == leg_cost(t, final, free).cost_micros
    rate = Fraction(t.price_per_min_micros * (10_000 + t.markup_bp), 600_000)  # micro/s
    for a, b in itertools.pairwise(points):
        # each chunk of paid seconds is within a micro-unit of its exact price
        assert abs(paid_cost(t, b) - paid_cost(t, a) - rate * (b - a)) < 1


@given(tariffs, st.integers(0, 100_000), st.integers(0, 200_000))
def test_cost_never_decreases_with_duration(t: Tariff, billed: int, free: int) -> None:
    now, then = leg_cost(t, billed, free), leg_cost(t, billed + 1, free)
    assert then.charged_seconds >= now.charged_seconds
    assert then.cost_micros >= now.cost_micros


@given(tariffs, st.integers(0, 100_000))
def test_charged_seconds_rounds_up_to_the_increment(t: Tariff, billed: int) -> None:
    s = charged_seconds(t, billed)
    rest = billed - t.included_seconds
    if rest <= 0:
        assert s == 0
    elif rest <= t.init_inc:
        assert s == t.init_inc
    else:
        assert rest <= s < rest + t.inc
        assert (s - t.init_inc) % t.inc == 0


def _fits(t: Tariff, d: int, funds: int, free: int) -> bool:
    cost = leg_cost(t, d, free).cost_micros
    return cost == 0 or cost <= funds


@given(tariffs, st.integers(-1_000_000, 10**9), st.integers(0, 20_000), st.integers(0, 20_000))
def test_max_billed_seconds_is_maximal(t: Tariff, funds: int, free: int, cap: int) -> None:
    d = max_billed_seconds(t, funds, free, cap)
    assert 0 <= d <= cap
    assert _fits(t, d, funds, free)
    if d < cap:
        # cost is monotone, so the very next second not fitting proves maximality
        assert not _fits(t, d + 1, funds, free)


@given(
    st.builds(
        Tariff,
        price_per_min_micros=st.integers(0, 2_000_000),
        connect_fee_micros=st.integers(0, 200_000),
        included_seconds=st.integers(0, 20),
        init_inc=st.integers(1, 40),
        inc=st.integers(1, 30),
        markup_bp=st.integers(0, 5_000),
    ),
    st.integers(-10, 3_000_000),
    st.integers(0, 200),
    st.integers(0, 400),
)
def test_max_billed_seconds_matches_a_linear_search(
    t: Tariff, funds: int, free: int, cap: int
) -> None:
    best = max(d for d in range(cap + 1) if _fits(t, d, funds, free))
    assert max_billed_seconds(t, funds, free, cap) == best
