"""Package lifecycle commands: products, opt-in, order, assign, terminate, renew, apply-product.

Money in `--json` output is integer micro-units. A refusal prints the rule it broke and
exits 1 (with `--json`: ``{"ok": false, "reason": RULE, "account": ..., "message": ...}``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rater.commands.common import (
    add_config_argument,
    add_json_argument,
    add_now_argument,
    config_from,
    print_json,
)
from rater.money import format_micros, parse_micros
from rater.packages.context import Env, Refused, open_env
from rater.packages.offers import offers, opt_in
from rater.packages.orders import apply_product, place_order
from rater.packages.renewals import renew_due
from rater.packages.termination import terminate


def register(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "products", "products an account may see and order, with its price", _list)
    p.add_argument("account", help="account number")
    p.add_argument("--all", action="store_true",
                   help="also the products it may not order, each with the rule")

    p = _parser(sub, "opt-in", "opt a reseller into a product (or change its opt-in)", _opt_in)
    p.add_argument("reseller", help="reseller account number")
    p.add_argument("product", help="product name or id")
    p.add_argument("--price", help="selling price per period (margin resellers: required)")
    p.add_argument("--setup-fee", help="selling setup fee (margin; default: the one it pays)")
    p.add_argument("--hide", action="store_true",
                   help="do not display it to the reseller's customers (it can still assign)")

    for name, helptext, assigned in (
        ("order", "order a product for an account, as the account itself", False),
        ("assign", "assign a product to an account, as its seller (bypasses can_be_purchased)",
         True),
    ):
        p = _parser(sub, name, helptext, _order, now=True)
        p.add_argument("account", help="account number")
        p.add_argument("product", help="product name or id")
        p.add_argument("--id", dest="order_id",
                       help="order id (default: generated); retry with the same id and --now")
        p.set_defaults(assigned=assigned)

    p = _parser(sub, "terminate", "end an order early, refunding by its charge type",
                _terminate, now=True)
    p.add_argument("order", help="order id")

    _parser(sub, "renew", "renew or release every order whose period has ended", _renew,
            now=True)

    p = _parser(sub, "apply-product",
                "order a product for every customer on its rate group (apply_to_existing)",
                _apply_product, now=True)
    p.add_argument("product", help="product name or id")


def _parser(
    sub: argparse._SubParsersAction, name: str, helptext: str,
    action: Callable[[Env, argparse.Namespace], int], *, now: bool = False,
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=helptext, description=helptext)
    add_config_argument(p)
    add_json_argument(p)
    if now:
        add_now_argument(p)
    p.set_defaults(func=_run, action=action)
    return p


def _run(args: argparse.Namespace) -> int:

    with open_env(config_from(args)) as env:
        try:
            result = args.action(env, args)
        except Refused as exc:
            if not args.json:
                raise
            print_json(exc.as_dict())
            return 1
    return result


def _money(micros: int | None) -> str:
    return "-" if micros is None else format_micros(micros)


def _list(env: Env, args: argparse.Namespace) -> int:

    found = offers(env, args.account, include_refused=args.all)
    if args.json:
        print_json({"account": args.account, "products": [o.as_dict() for o in found]})
        return 0
    for o in found:
        p = o.product
        state = "own" if o.own else ("orderable" if o.can_order else f"no: {o.refusal}")
        line = (f"{p.id:>5}  {p.name:<24} {p.owner or 'admin':<10} {p.billing_type:<9} "
                f"{p.free_minutes:>6} min  price {_money(o.price_micros)}  "
                f"setup {_money(o.setup_fee_micros)}  {state}")
        if o.can_opt_in is not None:
            line += f"  opt-in: {'yes' if o.opted_in else 'no'}"
        if o.sell_price_micros is not None:
            line += f"  sells at {_money(o.sell_price_micros)}"
        print(line)
    if not found:
        print(f"no products for account {args.account}")
    return 0


def _opt_in(env: Env, args: argparse.Namespace) -> int:

    price = None if args.price is None else parse_micros(args.price, "--price")
    setup = None if args.setup_fee is None else parse_micros(args.setup_fee, "--setup-fee")
    row = opt_in(env, args.reseller, args.product, price_micros=price, setup_fee_micros=setup,
                 display=not args.hide)
    data = {"ok": True, "reseller": row.reseller, "product_id": row.product_id,
            "price_micros": row.price, "setup_fee_micros": row.setup_fee,
            "display_in_my_products": row.display_in_my_products}
    if args.json:
        print_json(data)
    else:
        sells = "its parent's price" if row.price is None else _money(row.price)
        print(f"{row.reseller} opted into product {row.product_id}: sells at {sells}"
              f"{'' if row.display_in_my_products else ' (hidden)'}")
    return 0


def _order(env: Env, args: argparse.Namespace) -> int:

    placed = place_order(env, args.account, args.product, now=args.now,
                         order_id=args.order_id, assigned=args.assigned)
    if args.json:
        print_json(placed.as_dict())
        return 0
    what = "already placed" if placed.replayed else "placed"
    print(f"order {placed.order_id} {what}: {placed.product.name} for {placed.account}, "
          f"period 0 {placed.period_start:%Y-%m-%d %H:%M} - {placed.period_end:%Y-%m-%d %H:%M}")
    for level, (account, price, setup) in enumerate(placed.charges):
        print(f"  level {level} {account}: price {_money(price)} setup {_money(setup)}")
    return 0


def _terminate(env: Env, args: argparse.Namespace) -> int:

    done = terminate(env, args.order, now=args.now)
    if args.json:
        print_json(done.as_dict())
        return 0
    print(f"order {done.order_id} terminated{' (already)' if done.replayed else ''}: "
          f"used {done.used} of period {done.period_no}")
    for level, (account, paid, refund) in enumerate(done.refunds):
        print(f"  level {level} {account}: paid {_money(paid)} refunded {_money(refund)}")
    return 0


def _renew(env: Env, args: argparse.Namespace) -> int:

    summary = renew_due(env, args.now)
    if args.json:
        print_json(summary.as_dict())
    else:
        print(f"renewed: {len(summary.renewed)}, released: {len(summary.released)}, "
              f"failed: {len(summary.failed)}")
        for order, error in summary.failed:
            print(f"  {order}: {error}")
    return 1 if summary.failed else 0


def _apply_product(env: Env, args: argparse.Namespace) -> int:

    applied = apply_product(env, args.product, now=args.now)
    if args.json:
        print_json(applied.as_dict())
        return 0
    print(f"product {applied.product_id}: ordered {len(applied.ordered)}, "
          f"skipped {len(applied.skipped)} (already active), refused {len(applied.refused)}")
    for account, rule in applied.refused:
        print(f"  {account}: {rule}")
    return 0
