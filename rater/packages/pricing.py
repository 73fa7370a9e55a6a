"""What each level of a reseller chain pays for a product (DESIGN §5; pure, micro-units).

Selling price of a seller: the product's owner (admin or the owning reseller) sells at the
product's price, a margin reseller at its own opt-in price, a commission reseller at its
parent's selling price. The ordering account pays its seller's selling price. Above it:

- a margin reseller pays the product's buy cost when its parent is the owner and the owner
  is admin, else its parent's selling price;
- a commission reseller pays its parent's selling price * (1 - commission%), half-up to the
  micro-unit, with the product's commission (the one admin sets on the product).

Setup fees follow the same path: the owner's setup fee is the product's, a margin reseller's
is its opt-in setup fee, a commission reseller's is its parent's. The ordering account pays
its seller's; a margin reseller pays its parent's (there is no "buy setup fee", so under admin
it pays the product's); a commission reseller pays its parent's * (1 - commission%), like the
price, so its commission covers the whole order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from rater.money import div_half_up

ADMIN = "admin"
BP_PER_UNIT = 10_000


class AccountKind(StrEnum):
    CUSTOMER = "customer"
    RESELLER = "reseller"


class ResellerType(StrEnum):
    MARGIN = "margin"
    COMMISSION = "commission"


@dataclass(frozen=True, slots=True)
class Product:
    """A product's prices as its owner (``"admin"`` or a reseller's number) set them."""

    owner: str
    price_micros: int
    buy_cost_micros: int = 0
    setup_fee_micros: int = 0
    commission_bp: int = 0

    def __post_init__(self) -> None:
        for name in ("price_micros", "buy_cost_micros", "setup_fee_micros"):
            _check_amount(name, getattr(self, name))
        _check_amount("commission_bp", self.commission_bp)
        if self.commission_bp > BP_PER_UNIT:
            raise ValueError(f"commission_bp: must be <= {BP_PER_UNIT}, got {self.commission_bp}")


@dataclass(frozen=True, slots=True)
class OptIn:
    """A reseller's opt-in of a product: the price and setup fee it sells at (margin only)."""

    price_micros: int
    setup_fee_micros: int = 0

    def __post_init__(self) -> None:
        _check_amount("price_micros", self.price_micros)
        _check_amount("setup_fee_micros", self.setup_fee_micros)


@dataclass(frozen=True, slots=True)
class ChainLevel:
    """One account of the chain; resellers carry their type and, if opted in, their opt-in."""

    account: str
    kind: AccountKind
    reseller_type: ResellerType | None = None
    opt_in: OptIn | None = None

    def __post_init__(self) -> None:
        AccountKind(self.kind)
        if self.reseller_type is not None:
            ResellerType(self.reseller_type)
        elif self.kind == AccountKind.RESELLER:
            raise ValueError(f"reseller_type: reseller {self.account} has none")


@dataclass(frozen=True, slots=True)
class LevelCharge:
    """What one account of the chain pays for the order."""

    account: str
    price_micros: int
    setup_fee_micros: int


def _check_amount(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: must be an int >= 0, got {value!r}")


def _less_commission(amount: int, commission_bp: int) -> int:
    """``amount * (1 - commission_bp/10000)``, rounded half-up to the micro-unit."""
    return div_half_up(amount * (BP_PER_UNIT - commission_bp), BP_PER_UNIT)


def chain_charges(product: Product, chain: Sequence[ChainLevel]) -> list[LevelCharge]:
    """Price and setup fee each level pays, ordered from the ordering account up.

    `chain` runs from the ordering account up to, not including, ``product.owner``; every
    level above the first must be a reseller. Raises ValueError for an empty chain, a
    customer above the first level, or a margin reseller that sells without an opt-in.
    """
    if not chain:
        raise ValueError("chain: empty; it must start with the ordering account")
    for level in chain[1:]:
        if level.kind != AccountKind.RESELLER:
            raise ValueError(f"chain: {level.account} sells to a child but is not a reseller")

    # Walk down from the owner: sell_price[i] / sell_setup[i] are what chain[i]'s seller (its
    # parent, or the owner above the last level) sells at.
    n = len(chain)
    sell_price = [0] * n
    sell_setup = [0] * n
    price, setup = product.price_micros, product.setup_fee_micros
    for i in range(n - 1, -1, -1):
        sell_price[i], sell_setup[i] = price, setup
        level = chain[i]
        if i > 0 and level.reseller_type == ResellerType.MARGIN:
            if level.opt_in is None:
                raise ValueError(f"opt_in: margin reseller {level.account} has not opted in")
            price, setup = level.opt_in.price_micros, level.opt_in.setup_fee_micros

    charges = [LevelCharge(chain[0].account, sell_price[0], sell_setup[0])]
    for i in range(1, n):
        level = chain[i]
        parent_is_owner = i == n - 1
        if level.reseller_type == ResellerType.COMMISSION:
            paid = _less_commission(sell_price[i], product.commission_bp)
            paid_setup = _less_commission(sell_setup[i], product.commission_bp)
        elif parent_is_owner and product.owner == ADMIN:
            paid, paid_setup = product.buy_cost_micros, sell_setup[i]
        else:
            paid, paid_setup = sell_price[i], sell_setup[i]
        charges.append(LevelCharge(level.account, paid, paid_setup))
    return charges
