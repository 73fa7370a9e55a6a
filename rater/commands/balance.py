"""`rater balance N` and `rater topup N AMOUNT --ref ID`: live money of an account."""

from __future__ import annotations

import argparse

from rater.commands.common import (
    add_config_argument,
    add_json_argument,
    config_from,
    current_snapshot,
    open_ledger,
    print_json,
)
from rater.errors import InputError, UnknownAccount
from rater.ledger.client import Entry, Ledger
from rater.money import format_micros, parse_micros
from rater.rating.snapshot import Snapshot


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("balance", help="live balance, credit floor and package buckets")
    add_config_argument(p)
    add_json_argument(p)
    p.add_argument("account")
    p.set_defaults(func=run_balance)

    p = sub.add_parser("topup", help="credit an account, exactly once per reference")
    add_config_argument(p)
    add_json_argument(p)
    p.add_argument("account")
    p.add_argument("amount", help="decimal amount in the currency, e.g. 10.00")
    p.add_argument("--ref", required=True, help="unique reference (a replay is a no-op)")
    p.set_defaults(func=run_topup)


def balance_of(snap: Snapshot, ledger: Ledger, number: str) -> dict:
    """The `rater balance --json` document."""
    acct = snap.account(number)
    if acct is None:
        raise UnknownAccount(f"account {number} is not in the rating snapshot")
    state = ledger.account_state(acct.tag, number)
    if state is None:
        raise UnknownAccount(f"account {number} is not in Redis (run `loader sync`)")
    buckets = []
    for order in snap.orders_of(number):
        b = ledger.bucket_state(acct.tag, order.order_id)
        product = snap.product(order.product_id)
        buckets.append({
            "order": order.order_id,
            "product": product.name if product else "",
            "seconds_left": 0 if b is None else b.seconds_left,
            "seconds_held": 0 if b is None else b.seconds_held,
            "period": order.period_no,
            "period_end": order.period_end,
        })
    return {
        "account": number,
        "balance_micros": state.balance_micros,
        "held_micros": state.held_micros,
        "available_micros": state.balance_micros - state.held_micros - acct.floor_micros,
        "floor_micros": acct.floor_micros,
        "live_legs": state.live_legs,
        "buckets": buckets,
    }


def topup(snap: Snapshot, ledger: Ledger, number: str, amount_micros: int, ref: str) -> dict:
    """Credit `amount_micros` once per `ref`; a replay changes nothing."""
    if amount_micros <= 0:
        raise InputError(f"amount: must be positive, got {format_micros(amount_micros)}")
    if not ref or any(c.isspace() for c in ref):
        raise InputError("--ref: must be a non-empty reference without spaces")
    acct = snap.account(number)
    if acct is None:
        raise UnknownAccount(f"account {number} is not in the rating snapshot")
    op = f"topup:{ref}"
    res = ledger.apply(op, acct.tag, [Entry(number, amount_micros, op, "topup", ref)],
                       allow_below_floor=True)
    if not res.ok:
        raise UnknownAccount(f"account {number}: {res.reason} (run `loader sync`)")
    return {"account": number, "ref": ref, "amount_micros": amount_micros,
            **{k: v for k, v in balance_of(snap, ledger, number).items() if k != "account"}}


def run_balance(args: argparse.Namespace) -> int:
    client, ledger = open_ledger(config_from(args))
    doc = balance_of(current_snapshot(client, ledger.keys), ledger, args.account)
    if args.json:
        print_json(doc)
        return 0
    print(f"account {doc['account']}: balance {format_micros(doc['balance_micros'])}, "
          f"held {format_micros(doc['held_micros'])}, floor {format_micros(doc['floor_micros'])}, "
          f"available {format_micros(doc['available_micros'])}, live legs {doc['live_legs']}")
    for b in doc["buckets"]:
        print(f"  {b['product']} (order {b['order']}): {b['seconds_left']} s left")
    return 0


def run_topup(args: argparse.Namespace) -> int:
    amount = parse_micros(args.amount, "amount")
    client, ledger = open_ledger(config_from(args))
    doc = topup(current_snapshot(client, ledger.keys), ledger, args.account, amount, args.ref)
    if args.json:
        print_json(doc)
    else:
        print(f"account {args.account}: credited {format_micros(amount)} (ref {args.ref}); "
              f"balance {format_micros(doc['balance_micros'])}")
    return 0
