"""Money conversions and the one rounding rule, with hand-worked figures."""

from __future__ import annotations

import pytest

from rater.errors import MoneyFormatError
from rater.money import div_half_up, format_micros, parse_micros, parse_percent_bp


def test_decimal_strings_become_exact_micros():
    assert parse_micros("0.0100") == 10_000
    assert parse_micros("12.345678") == 12_345_678
    assert parse_micros("-1.5") == -1_500_000
    assert parse_micros(3) == 3_000_000
    assert format_micros(-1_500_000) == "-1.500000"
    assert format_micros(10_000) == "0.010000"


@pytest.mark.parametrize("text", ["0.0000001", "abc", "NaN", "1,5"])
def test_amounts_that_would_need_rounding_or_are_not_numbers_are_refused(text):
    with pytest.raises(MoneyFormatError, match="price"):
        parse_micros(text, where="price")


def test_percent_in_basis_points():
    assert parse_percent_bp("2.5") == 250
    with pytest.raises(MoneyFormatError):
        parse_percent_bp("2.555")


def test_division_rounds_half_up():
    # 0.4 -> 0, 0.5 -> 1, 1.5 -> 2, 2.49 -> 2
    assert [div_half_up(n, d) for n, d in ((4, 10), (5, 10), (15, 10), (249, 100))] == [
        0, 1, 2, 2]
    # 37 s at 0.0125/min with 10 % markup: 12,500 * 11,000 * 37 / 600,000 = 8,479.1666 -> 8,479
    assert div_half_up(12_500 * 11_000 * 37, 600_000) == 8_479
    # a 9.99 price less 12.5 % commission: 9,990,000 * 8,750 / 10,000 = 8,741,250 exactly
    assert div_half_up(9_990_000 * 8_750, 10_000) == 8_741_250
