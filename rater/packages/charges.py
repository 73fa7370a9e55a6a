"""What each level of a chain pays for a product, and the ledger entries that charge it.

Prices per level follow DESIGN §5 (`pricing.chain_charges`); this module turns the stored
rows into its inputs, the result into one debit per level and kind (``:price``,
``:setup``), and a product's email notification into a ledger operation's `extra`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from rater.ledger.client import Entry
from rater.packages.context import Refused
from rater.packages.pricing import (
    ADMIN,
    AccountKind,
    ChainLevel,
    LevelCharge,
    OptIn,
    Product,
    ResellerType,
    chain_charges,
)
from rater.packages.store import AccountRow, OptInRow, ProductRow


def _priced(product: ProductRow) -> Product:
    return Product(product.owner or ADMIN, product.price, product.buy_cost, product.setup_fee,
                   product.commission_bp)


def _level(account: AccountRow, opt_ins: Mapping[str, OptInRow]) -> ChainLevel:
    row = opt_ins.get(account.number)
    opt = None
    if row is not None and row.opt_in and row.price is not None:
        opt = OptIn(row.price, row.setup_fee or 0)
    rtype = ResellerType(account.reseller_type) if account.reseller_type else None
    return ChainLevel(account.number, AccountKind(account.kind), rtype, opt)


def level_charges(
    product: ProductRow, chain: Sequence[AccountRow], opt_ins: Mapping[str, OptInRow]
) -> list[LevelCharge]:
    """What each account of `chain` (ordering account first) pays for one order.

    A reseller ordering for its own use pays what it would pay to sell the product on (buy
    cost under admin, its parent's price, or less its commission), not a customer's price.
    Raises Refused(reseller_not_opted_in) when a margin reseller has no selling price.
    """
    levels = [_level(a, opt_ins) for a in chain]
    try:
        if levels[0].kind != AccountKind.RESELLER:
            return chain_charges(_priced(product), levels)
        buyer = levels[0]
        if buyer.opt_in is None and buyer.reseller_type == ResellerType.MARGIN:
            buyer = dataclasses.replace(buyer, opt_in=OptIn(0))  # only prices the placeholder
        below = ChainLevel("", AccountKind.CUSTOMER)
        return chain_charges(_priced(product), [below, buyer, *levels[1:]])[1:]
    except ValueError as exc:
        raise Refused("reseller_not_opted_in", None, str(exc)) from None


def selling_price(
    product: ProductRow, chain: Sequence[AccountRow], opt_ins: Mapping[str, OptInRow]
) -> LevelCharge | None:
    """What reseller ``chain[0]``'s customers pay for the product; None if it has no price."""
    try:
        below = ChainLevel("", AccountKind.CUSTOMER)
        return chain_charges(_priced(product), [below, *(_level(a, opt_ins) for a in chain)])[0]
    except ValueError:
        return None


def charge_entries(
    op_id: str, order_id: str, chain: Sequence[AccountRow], charges: Sequence[LevelCharge],
    *, with_setup: bool,
) -> list[Entry]:
    """The debits of one charge event, one price (and setup) entry per level that pays."""
    out = []
    for level, (account, c) in enumerate(zip(chain, charges, strict=True)):
        if c.price_micros:
            out.append(Entry(account.number, -c.price_micros, f"{op_id}:{level}:price",
                             "product_price", order_id, account.floor_micros))
        if with_setup and c.setup_fee_micros:
            out.append(Entry(account.number, -c.setup_fee_micros, f"{op_id}:{level}:setup",
                             "product_setup", order_id, account.floor_micros))
    return out


def notice(
    product: ProductRow, op_id: str, account: str, kind: str, payload: dict[str, Any]
) -> dict[str, Any] | None:
    """The `extra` of a ledger op: an email notification when the product asks for one."""
    if not product.email_notification:
        return None
    body = {"product": product.name, "product_id": product.id, **payload}
    return {"notifications": [{"id": op_id, "account": account, "kind": kind, "payload": body}]}
