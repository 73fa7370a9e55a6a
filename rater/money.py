"""Money as integer micro-units (10^-6 of the currency); conversions happen only here."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from rater.errors import MoneyFormatError

MICROS_PER_UNIT = 1_000_000


def parse_micros(text: str | int, where: str = "amount") -> int:
    """Convert a decimal string such as "0.0100" into micro-units, exactly.

    Raises MoneyFormatError (naming `where`) when the text is not a number or has more
    than six decimals, because rounding an input price silently would change the bill.
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise MoneyFormatError(f"{where}: expected a decimal string, got {text!r}")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise MoneyFormatError(f"{where}: {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise MoneyFormatError(f"{where}: {text!r} is not a finite amount")
    micros = value * MICROS_PER_UNIT
    if micros != micros.to_integral_value():
        raise MoneyFormatError(f"{where}: {text!r} has more than 6 decimals")
    return int(micros)


def format_micros(micros: int) -> str:
    """Render micro-units as a decimal string with six decimals ("-1.500000")."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_UNIT)
    return f"{sign}{whole}.{frac:06d}"


def parse_percent_bp(text: str | int, where: str = "percent") -> int:
    """Convert a percentage string ("2.5") into basis points (250), exactly."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise MoneyFormatError(f"{where}: {text!r} is not a decimal number") from None
    bp = value * 100
    if not value.is_finite() or bp != bp.to_integral_value():
        raise MoneyFormatError(f"{where}: {text!r} has more than 2 decimals")
    return int(bp)


def div_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half-up to an integer, exactly (numerator >= 0,
    denominator > 0): the one rounding rule of every charge, price and refund."""
    return (2 * numerator + denominator) // (2 * denominator)
