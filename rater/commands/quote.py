"""`rater quote`: the decision and cost per level for a call, explained."""

from __future__ import annotations

import argparse
import time

from rater.commands.common import (
    add_config_argument,
    add_json_argument,
    add_now_argument,
    config_from,
    current_snapshot,
    open_ledger,
    print_json,
)
from rater.money import format_micros
from rater.quote import Quote, quote


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quote", help="explain how a call would be rated now")
    add_config_argument(p)
    add_json_argument(p)
    add_now_argument(p)
    p.add_argument("--account", help="account number (inbound: optional, found by DID)")
    p.add_argument("--destination", required=True, help="dialled number (inbound: the DID)")
    p.add_argument("--direction", choices=("outbound", "inbound"), default="outbound")
    p.add_argument("--duration", type=int, default=60, help="billed seconds to price")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    client, ledger = open_ledger(cfg)
    snap = current_snapshot(client, ledger.keys)
    now = time.time() if args.now is None else args.now.timestamp()
    q = quote(snap, ledger, account=args.account, destination=args.destination,
              direction=args.direction, duration=max(0, args.duration),
              cap_seconds=cfg.rating.max_call_seconds, now_epoch=now)
    if args.json:
        print_json(q.as_dict())
    else:
        print_quote(q)
    return 0


def print_quote(q: Quote) -> None:
    verdict = "ALLOWED" if q.allowed else f"REFUSED: {q.reason}"
    who = f" (at {q.refused_by})" if q.refused_by and not q.allowed else ""
    print(f"{q.direction} call to {q.destination}: {verdict}{who}")
    if q.detail:
        print(f"  {q.detail}")
    if q.allowed:
        print(f"  max duration: {q.max_seconds} s")
    for i, lv in enumerate(q.levels):
        print(f"  level {i}: account {lv.account}, rate group {lv.rate_group}, "
              f"prefix {lv.prefix or '(any)'} {lv.destination_name}")
        print(f"    {format_micros(lv.price_per_min_micros)}/min"
              f"{f' +{lv.markup_bp / 100:g}% markup' if lv.markup_bp else ''}, "
              f"connect {format_micros(lv.connect_fee_micros)}, "
              f"{lv.included_seconds}s included, {lv.init_inc}/{lv.inc}")
        print(f"    balance {format_micros(lv.balance_micros)}, held "
              f"{format_micros(lv.held_micros)}, floor {format_micros(lv.floor_micros)}, "
              f"live legs {lv.live_legs}{f'/{lv.max_channels}' if lv.max_channels else ''}")
        for p in lv.packages:
            print(f"    package {p.product} (order {p.order}): {p.seconds_left} s left")
        print(f"    max {lv.max_seconds} s; {q.duration} s billed -> {lv.charged_seconds} s "
              f"charged, {lv.free_seconds} s free, cost {format_micros(lv.cost_micros)}")
