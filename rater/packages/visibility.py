"""Who may see, order, be assigned and opt into a product (pure: no I/O).

An account's `path` is the account itself followed by its ancestors up to the top of its
tree (the account under admin); admin is implied above the last one. The `chain` of an order
is the path up to, not including, the product's owner: the accounts that pay for it.

Rules, each refusal naming the rule it broke (checked in this order):

``product_inactive``           the product's status is not active
``account_inactive``           the account (or, for ``seller_inactive``, a reseller selling
``seller_inactive``            the product on) is suspended or deleted
``not_offered``                the product's owner is not above the account
``not_purchasable``            can_be_purchased is off: only an assignment by the seller
``admin_customers_cannot_order``    a customer of admin, admin_customers_can_order off
``reseller_customers_cannot_order`` a customer of a reseller, reseller_customers_can_order off
``reseller_cannot_resell``     a reseller would sell it on (or buy it), reseller_can_resell off
``reseller_not_opted_in``      a reseller between the account and the owner has not opted in
``not_in_my_products``         the account's seller opted in but hides it from its customers
``not_a_reseller``             only resellers opt in

Self-service (order, opt-in) obeys every rule. An assignment by the seller (the account's
parent) bypasses the customer-side switches (``not_purchasable``, ``*_cannot_order``,
``not_in_my_products``) but not the resale chain: every reseller in between must still have
opted in, since that is what lets it assign the product ("allow to opt-in & assign").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

ACTIVE = "active"
RESELLER = "reseller"
CUSTOMER = "customer"


class ProductRules(Protocol):
    """The product fields the rules read (store.ProductRow has them all)."""

    # read-only (properties), so a frozen dataclass such as store.ProductRow matches
    @property
    def owner(self) -> str | None: ...  # None = admin
    @property
    def status(self) -> str: ...
    @property
    def can_be_purchased(self) -> bool: ...
    @property
    def reseller_can_resell(self) -> bool: ...
    @property
    def admin_customers_can_order(self) -> bool: ...
    @property
    def reseller_customers_can_order(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Party:
    """One account of a path: who it is and who sells to it (parent None = admin)."""

    number: str
    parent: str | None
    kind: str
    reseller_type: str | None = None
    status: str = ACTIVE


@dataclass(frozen=True, slots=True)
class OptInState:
    """A reseller's opt-in row for one product."""

    opt_in: bool = True
    display: bool = True


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an operation is refused: the rule, the account that caused it, a sentence."""

    rule: str
    account: str | None
    message: str


def seller_chain(path: Sequence[Party], owner: str | None) -> list[Party] | None:
    """The accounts that pay for a product of `owner` ordered by ``path[0]``.

    ``path[:i]`` where ``path[i]`` is the owner (the whole path for admin); None when the
    owner is not strictly above the account.
    """
    if not path:
        return None
    if owner is None:
        return list(path)
    for i, party in enumerate(path):
        if party.number == owner:
            return list(path[:i]) if i > 0 else None
    return None


def order_refusal(
    product: ProductRules,
    path: Sequence[Party],
    opt_ins: Mapping[str, OptInState],
    *,
    assigned: bool = False,
) -> Refusal | None:
    """Why ``path[0]`` may not order the product (or be assigned it by its seller); None if
    it may. A reseller ordering for its own use buys it like a reseller would (it must be
    allowed to resell) but needs no opt-in of its own."""
    account = path[0]
    early = _common(product, path)
    if early is not None:
        return early
    chain = seller_chain(path, product.owner)
    assert chain is not None  # _common checked it
    if not assigned:
        if not product.can_be_purchased:
            return Refusal("not_purchasable", account.number,
                           "the product cannot be purchased; only its seller can assign it")
        if account.kind == CUSTOMER:
            if account.parent is None and not product.admin_customers_can_order:
                return Refusal("admin_customers_cannot_order", account.number,
                               "customers of admin cannot order this product")
            if account.parent is not None and not product.reseller_customers_can_order:
                return Refusal("reseller_customers_cannot_order", account.number,
                               "customers of a reseller cannot order this product")
    resale = _resale_refusal(product, chain, opt_ins, buyer_resells=account.kind == RESELLER)
    if resale is not None:
        return resale
    if not assigned:
        return _hidden(chain, opt_ins)
    return None


def opt_in_refusal(
    product: ProductRules, path: Sequence[Party], opt_ins: Mapping[str, OptInState]
) -> Refusal | None:
    """Why reseller ``path[0]`` may not opt into the product; None if it may."""
    account = path[0]
    if account.kind != RESELLER:
        return Refusal("not_a_reseller", account.number, "only resellers opt into products")
    early = _common(product, path)
    if early is not None:
        return early
    chain = seller_chain(path, product.owner)
    assert chain is not None
    return _resale_refusal(product, chain, opt_ins, buyer_resells=True) or _hidden(
        chain, opt_ins
    )


def _common(product: ProductRules, path: Sequence[Party]) -> Refusal | None:
    account = path[0]
    if product.status != ACTIVE:
        return Refusal("product_inactive", None, "the product is not active")
    if account.status != ACTIVE:
        return Refusal("account_inactive", account.number, f"account is {account.status}")
    if seller_chain(path, product.owner) is None:
        owner = product.owner or "admin"
        return Refusal("not_offered", account.number,
                       f"the product's owner ({owner}) does not sell to this account")
    return None


def _resale_refusal(
    product: ProductRules,
    chain: Sequence[Party],
    opt_ins: Mapping[str, OptInState],
    *,
    buyer_resells: bool,
) -> Refusal | None:
    sellers = chain[1:]
    if (sellers or buyer_resells) and not product.reseller_can_resell:
        who = sellers[0].number if sellers else chain[0].number
        return Refusal("reseller_cannot_resell", who, "resellers cannot resell this product")
    for seller in sellers:
        if seller.status != ACTIVE:
            return Refusal("seller_inactive", seller.number,
                           f"reseller {seller.number} is {seller.status}")
        state = opt_ins.get(seller.number)
        if state is None or not state.opt_in:
            return Refusal("reseller_not_opted_in", seller.number,
                           f"reseller {seller.number} has not opted into this product")
    return None


def _hidden(chain: Sequence[Party], opt_ins: Mapping[str, OptInState]) -> Refusal | None:
    if len(chain) < 2:  # sold by its owner, which has no opt-in to hide
        return None
    seller = chain[1]
    state = opt_ins.get(seller.number)
    if state is not None and not state.display:
        return Refusal("not_in_my_products", chain[0].number,
                       f"reseller {seller.number} does not display this product")
    return None
