"""Pure rating math for one leg at one level: (rate, seconds) -> integer micro-units.

Rounding is half-up to the micro-unit, once, on the cumulative cost of the paid seconds,
so a call billed in chunks as ``paid_cost(b) - paid_cost(a)`` adds up to its final cost.
The Redis scripts repeat `paid_cost` with doubles through `paid_cost_parts`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rater.money import div_half_up

BP_PER_UNIT = 10_000
SECONDS_PER_MINUTE = 60
# paid_cost = price * (10000 + markup_bp) * seconds / PAID_COST_DEN, rounded half-up.
PAID_COST_DEN = SECONDS_PER_MINUTE * BP_PER_UNIT
# Bounds under which the Lua form of paid_cost is exact in IEEE doubles (see paid_cost_parts).
LUA_MAX_PAID_SECONDS = 10_000_000
LUA_EXACT_LIMIT = 2**53


@dataclass(frozen=True, slots=True)
class Tariff:
    """The parts of a rate that price a leg; money in micro-units, markup in basis points."""

    price_per_min_micros: int
    connect_fee_micros: int = 0
    included_seconds: int = 0
    init_inc: int = 1
    inc: int = 1
    markup_bp: int = 0

    def __post_init__(self) -> None:
        for name in ("price_per_min_micros", "connect_fee_micros", "included_seconds",
                     "markup_bp"):
            _check_int(name, getattr(self, name), minimum=0)
        _check_int("init_inc", self.init_inc, minimum=1)
        _check_int("inc", self.inc, minimum=1)

    @classmethod
    def trusted(cls, price_per_min_micros: int, connect_fee_micros: int, included_seconds: int,
                init_inc: int, inc: int, markup_bp: int) -> Tariff:
        """A Tariff from values already validated (a loaded rating snapshot's columns),
        built without `__post_init__`'s checks: the lookup path builds one per distinct
        rate, and validating costs more than the rest of the lookup."""
        t = _new_tariff(cls)
        _set(t, "price_per_min_micros", price_per_min_micros)
        _set(t, "connect_fee_micros", connect_fee_micros)
        _set(t, "included_seconds", included_seconds)
        _set(t, "init_inc", init_inc)
        _set(t, "inc", inc)
        _set(t, "markup_bp", markup_bp)
        return t

    @property
    def costs_nothing(self) -> bool:
        """True when no duration of this tariff can cost money."""
        return self.price_per_min_micros == 0 and self.connect_fee_micros == 0


_new_tariff = object.__new__
_set = object.__setattr__  # what a frozen dataclass's own __init__ uses


@dataclass(frozen=True, slots=True)
class LegCost:
    """What one level pays for a leg: seconds charged, taken from packages, paid, and money."""

    charged_seconds: int
    free_seconds: int
    paid_seconds: int
    cost_micros: int


def _check_int(name: str, value: object, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")


def charged_seconds(t: Tariff, billed: int) -> int:
    """Seconds charged for `billed` seconds: included seconds off, then the increments.

    ``0`` if nothing is left after the included seconds, else
    ``init_inc + ceil(max(0, d' - init_inc) / inc) * inc`` with ``d' = billed - included``.
    """
    _check_int("billed", billed, minimum=0)
    rest = billed - t.included_seconds
    if rest <= 0:
        return 0
    over = max(0, rest - t.init_inc)
    return t.init_inc + -(-over // t.inc) * t.inc


def _paid_cost_num(t: Tariff) -> int:
    return t.price_per_min_micros * (BP_PER_UNIT + t.markup_bp)


def paid_cost(t: Tariff, paid_seconds: int) -> int:
    """Cost of the first `paid_seconds` paid seconds, markup included, no connect fee.

    ``round_half_up(price * (10000 + markup_bp) * paid_seconds / 600000)``; cumulative, so
    the charge for seconds ``a..b`` is ``paid_cost(t, b) - paid_cost(t, a)``.
    """
    _check_int("paid_seconds", paid_seconds, minimum=0)
    return div_half_up(_paid_cost_num(t) * paid_seconds, PAID_COST_DEN)


def paid_cost_parts(t: Tariff) -> tuple[int, int, int]:
    """``(q, r, den)`` such that ``paid_cost(t, P) == q*P + (2*r*P + den) // (2*den)``.

    This is the form the Lua scripts compute with doubles: ``q, r = divmod(num, den)`` keeps
    every intermediate below 2**53 (so exact) for ``P <= LUA_MAX_PAID_SECONDS``, and the
    floor of the quotient is exact too because the quotient stays at least ``1/(2*den)``
    away from the next integer, far more than a double's spacing at that size.
    Raises ValueError for a price too high for that guarantee (about 27 000 units/min).
    """
    q, r = divmod(_paid_cost_num(t), PAID_COST_DEN)
    if q * LUA_MAX_PAID_SECONDS + LUA_MAX_PAID_SECONDS >= LUA_EXACT_LIMIT:
        raise ValueError(
            f"price_per_min_micros: {t.price_per_min_micros} with markup_bp {t.markup_bp} "
            "is too high to be rated exactly in the Redis scripts"
        )
    return q, r, PAID_COST_DEN


def money_due(t: Tariff, paid_seconds: int) -> int:
    """Connect fee plus `paid_cost`, or 0 when no second is paid (the fee is once per leg)."""
    if paid_seconds == 0:
        return 0
    return t.connect_fee_micros + paid_cost(t, paid_seconds)


def leg_cost(t: Tariff, billed: int, free_available: int) -> LegCost:
    """Price `billed` seconds, taking package seconds first: ``free = min(bucket, charged)``."""
    _check_int("free_available", free_available, minimum=0)
    charged = charged_seconds(t, billed)
    free = min(free_available, charged)
    paid = charged - free
    return LegCost(charged, free, paid, money_due(t, paid))


def max_paid_seconds(t: Tariff, funds_micros: int) -> int | None:
    """The most paid seconds whose `money_due` fits `funds_micros`; None when unlimited.

    Negative funds count as 0: a cost of 0 always fits. Exact inversion of the rounding:
    ``paid_cost(P) <= M`` iff ``2*num*P + den < 2*den*(M+1)``, so
    ``P_max = (den*(2M+1) - 1) // (2*num)`` with ``M = funds - connect_fee``.
    """
    _check_int("funds_micros", funds_micros, minimum=None)
    money = max(funds_micros, 0) - t.connect_fee_micros
    if money < 0:
        return 0
    num = _paid_cost_num(t)
    if num == 0:
        return None
    return (PAID_COST_DEN * (2 * money + 1) - 1) // (2 * num)


def max_billed_seconds(t: Tariff, funds_micros: int, free_seconds: int, cap: int) -> int:
    """The largest billed duration ``d <= cap`` whose `leg_cost` fits `funds_micros`.

    Cost grows with duration, so this inverts it: the paid seconds the money buys, plus
    `free_seconds`, bound the charged seconds; then the largest ``d`` whose step
    ``charged_seconds(d)`` stays within that bound. A cost of 0 always fits, so with no
    (or negative) funds the answer still covers the included and package seconds.
    """
    _check_int("free_seconds", free_seconds, minimum=0)
    _check_int("cap", cap, minimum=0)
    paid_max = max_paid_seconds(t, funds_micros)
    if paid_max is None:
        return cap
    budget = free_seconds + paid_max
    if budget < t.init_inc:
        d = t.included_seconds
    else:
        d = t.included_seconds + t.init_inc + (budget - t.init_inc) // t.inc * t.inc
    return min(d, cap)


def first_block_seconds(t: Tariff) -> int:
    """Billed seconds up to the end of the first charged block (refuse a call below it)."""
    return t.included_seconds + t.init_inc


def billed_seconds_from_usec(answered_usec: int, hangup_usec: int) -> int:
    """Billed seconds from FreeSWITCH microsecond timestamps, rounded up; 0 if never answered.

    FreeSWITCH reports an unanswered channel's answer time as 0. A hangup before the answer
    is a bad event and raises ValueError rather than billing a guess.
    """
    _check_int("answered_usec", answered_usec, minimum=0)
    _check_int("hangup_usec", hangup_usec, minimum=0)
    if answered_usec == 0:
        return 0
    if hangup_usec < answered_usec:
        raise ValueError(f"hangup_usec {hangup_usec} is before answered_usec {answered_usec}")
    return -(-(hangup_usec - answered_usec) // 1_000_000)


def billed_seconds_from_msec(billmsec: int) -> int:
    """Billed seconds from ``variable_billmsec``, rounded up (``billsec`` is truncated)."""
    _check_int("billmsec", billmsec, minimum=0)
    return -(-billmsec // 1000)
