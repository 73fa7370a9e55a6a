"""Offers: the products an account may see and at what price, and a reseller's opt-in that
puts a product on offer to its customers.

The rules (who may see, order or opt into what) are visibility.py's; this module reads the
rows they need and prices what is offered (charges.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rater.errors import InputError
from rater.packages import store
from rater.packages.charges import level_charges, selling_price
from rater.packages.context import Env, Refused, chain_of, opt_ins_of, path_of, resolve_product
from rater.packages.pricing import ResellerType
from rater.packages.store import AccountRow, OptInRow, ProductRow
from rater.packages.visibility import (
    RESELLER,
    OptInState,
    Party,
    opt_in_refusal,
    order_refusal,
)

# --- opt-in --------------------------------------------------------------------------------

def opt_in(
    env: Env, reseller: str, product_ref: str | int, *, price_micros: int | None = None,
    setup_fee_micros: int | None = None, display: bool = True,
) -> OptInRow:
    """Opt reseller `reseller` into a product (or update its opt-in).

    A margin reseller sells at its own `price_micros` (required) and setup fee (default:
    the setup fee it pays itself); a commission reseller sells at its parent's price and
    takes neither. `display` False hides the product from the reseller's customers (it can
    still assign it). Raises Refused naming the rule, or InputError for the prices.
    """
    conn = env.conn
    path = path_of(conn, reseller)
    product = resolve_product(conn, product_ref, path[1:])
    rows = opt_ins_of(conn, product, path)
    refusal = opt_in_refusal(product, [a.party() for a in path],
                             {k: v.state() for k, v in rows.items()})
    if refusal is not None:
        raise Refused.of(refusal)
    me = path[0]
    if me.reseller_type == ResellerType.COMMISSION:
        if price_micros is not None or setup_fee_micros is not None:
            raise InputError("a commission reseller sells at its parent's price: "
                             "give neither --price nor --setup-fee")
        row = OptInRow(reseller, product.id, True, None, None, display)
    else:
        if price_micros is None:
            raise InputError("--price is required: a margin reseller sells at its own price")
        if setup_fee_micros is None:
            setup_fee_micros = level_charges(product, chain_of(path, product), rows)[0] \
                .setup_fee_micros
        row = OptInRow(reseller, product.id, True, price_micros, setup_fee_micros, display)
    store.upsert_opt_in(conn, row)
    return row


# --- listing -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Offer:
    """A product as one account sees it."""

    product: ProductRow
    can_order: bool
    refusal: str | None = None           # why it cannot order it (with --all)
    price_micros: int | None = None      # what it pays per period
    setup_fee_micros: int | None = None  # what it pays at its first order
    own: bool = False                    # a reseller's own product
    can_opt_in: bool | None = None       # resellers only, from here on
    opted_in: bool | None = None
    display: bool | None = None
    sell_price_micros: int | None = None
    sell_setup_fee_micros: int | None = None

    def as_dict(self) -> dict[str, Any]:
        p = self.product
        data = {
            "product_id": p.id, "name": p.name, "owner": p.owner or "admin",
            "billing_type": p.billing_type, "billing_days": p.billing_days,
            "free_minutes": p.free_minutes, "applicable_for": p.applicable_for,
            "charge_type": p.charge_type, "can_order": self.can_order,
            "reason": self.refusal, "price_micros": self.price_micros,
            "setup_fee_micros": self.setup_fee_micros,
        }
        if self.can_opt_in is not None or self.own:
            data.update(own=self.own, can_opt_in=self.can_opt_in, opted_in=self.opted_in,
                        display_in_my_products=self.display,
                        sell_price_micros=self.sell_price_micros,
                        sell_setup_fee_micros=self.sell_setup_fee_micros)
        return data


def offers(env: Env, account: str, *, include_refused: bool = False) -> list[Offer]:
    """The products `account` may see: those it may order (customers) or opt into or order
    (resellers), and a reseller's own products; with `include_refused`, every product of
    its sellers too, each with the rule that hides it."""
    conn = env.conn
    path = path_of(conn, account)
    me = path[0]
    is_reseller = me.kind == RESELLER
    owners: list[str | None] = [None, *(a.number for a in path[1:])]
    if is_reseller:
        owners.append(me.number)
    parties = [a.party() for a in path]
    out = []
    for product in store.products_of_owners(conn, owners):
        if product.owner == me.number:
            out.append(Offer(product, False, "not_offered", own=True, sell_price_micros=
                             product.price, sell_setup_fee_micros=product.setup_fee))
            continue
        rows = opt_ins_of(conn, product, path)
        states = {k: v.state() for k, v in rows.items()}
        refusal = order_refusal(product, parties, states)
        price = setup = None
        if refusal is None:
            first = level_charges(product, chain_of(path, product), rows)[0]
            price, setup = first.price_micros, first.setup_fee_micros
        offer = Offer(product, refusal is None, None if refusal is None else refusal.rule, price,
                      setup)
        if is_reseller:
            offer = _reseller_view(offer, product, path, rows, parties, states)
        if offer.can_order or offer.can_opt_in or include_refused:
            out.append(offer)
    return out


def _reseller_view(
    offer: Offer, product: ProductRow, path: Sequence[AccountRow],
    rows: Mapping[str, OptInRow], parties: Sequence[Party], states: Mapping[str, OptInState],
) -> Offer:
    may = opt_in_refusal(product, parties, states) is None
    mine = rows.get(path[0].number)
    opted = bool(mine and mine.opt_in)
    sell = selling_price(product, chain_of(path, product), rows) if opted and may else None
    return dataclasses.replace(
        offer, can_opt_in=may, opted_in=opted,
        display=mine.display_in_my_products if mine else None,
        sell_price_micros=sell.price_micros if sell else None,
        sell_setup_fee_micros=sell.setup_fee_micros if sell else None,
    )
