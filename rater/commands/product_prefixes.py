"""`rater product-prefixes PRODUCT list|add|remove [filters] [--dry-run] [--as R] [--json]`.

Fills a package's prefixes from its owner's rates (rater/packages/prefix_editor.py). Exits 1
with the rule it broke (with `--json`: ``{"ok": false, "reason": RULE, ...}``) for an
unknown product, account or rate group, an editor who is not the owner, or a filter that
matches no rate (the message echoes the filter).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from rater.commands.common import add_config_argument, add_json_argument, config_from, print_json
from rater.db import connect
from rater.errors import InputError
from rater.packages.context import Refused
from rater.packages.destinations import Destination, RateFilter
from rater.packages.prefix_editor import ACTIONS, Edit, edit_prefixes, owner_name

MAX_LINES = 100  # text output lists at most this many prefixes per kind; --json lists all


def register(sub: argparse._SubParsersAction) -> None:
    helptext = "list, add or remove a product's prefixes, picked from rate groups by filter"
    p = sub.add_parser("product-prefixes", help=helptext, description=helptext + (
        ". Filters select rates of the product owner's rate groups in the product's "
        "directions; add copies each one's prefix and destination, remove deletes those "
        "prefixes. Calls see the change at the next snapshot (loader sync)."))
    p.add_argument("product", help="product name or id")
    p.add_argument("action", choices=ACTIONS,
                   help="list: the product's prefixes (with filters: the matching rates too)")
    p.add_argument("--rate-group", metavar="NAME", help="only this rate group's rates")
    p.add_argument("--country", metavar="CC", help="rates of this country (any case)")
    p.add_argument("--call-type", metavar="T", help="rates of this call type (any case)")
    p.add_argument("--code", metavar="PREFIX", help="rates whose prefix starts with this")
    p.add_argument("--destination", metavar="PATTERN",
                   help="rates whose destination name matches (any case, * = anything)")
    p.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    p.add_argument("--as", dest="actor", metavar="RESELLER",
                   help="act as this reseller: its own products, from its own rate groups")
    add_config_argument(p)
    add_json_argument(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.dry_run and args.action == "list":
        raise InputError("--dry-run: list changes nothing anyway (use it with add or remove)")
    rate_filter = RateFilter.of(rate_group=args.rate_group, country=args.country,
                                call_type=args.call_type, code=args.code,
                                destination=args.destination)
    with connect(config_from(args), autocommit=True) as conn:
        try:
            edit = edit_prefixes(conn, args.product, args.action, rate_filter,
                                 actor=args.actor, dry_run=args.dry_run)
        except Refused as exc:
            if not args.json:
                raise
            print_json(exc.as_dict())
            return 1
    if args.json:
        print_json(edit.as_dict())
    else:
        _print(edit)
    return 0


def _print(edit: Edit) -> None:
    p = edit.product
    print(f"product {p.id} {p.name!r} ({owner_name(p.owner)}, {p.applicable_for})")
    if edit.change is None:
        if not edit.filter.empty:
            have = {d.prefix for d in edit.prefixes}
            print(f"rates matching {edit.filter.describe()}: {len(edit.rates)}")
            _lines(f"{'*' if r.prefix in have else ' '} {r.prefix:<12} {r.destination:<32} "
                   f"{r.rate_group} {r.direction} {r.country} {r.call_type}"
                   for r in edit.rates)
            print("(* = already a prefix of the product)")
        print(f"prefixes: {len(edit.prefixes)}")
        _lines(_destination("", d) for d in edit.prefixes)
        return
    changed, unchanged = edit.change.changed, edit.change.unchanged
    if edit.action == "add":
        verb, sign, rest = "added", "+", "already there"
    else:
        verb, sign, rest = "removed", "-", "not in the product"
    would = "would be " if edit.dry_run else ""
    print(f"{len(changed)} {would}{verb}, {len(unchanged)} {rest} "
          f"(from {len(edit.rates)} rates matching {edit.filter.describe()})")
    _lines(_destination(sign, d) for d in changed)
    _lines(_destination("=", d) for d in unchanged)
    if edit.dry_run:
        print("dry run: nothing written")
    elif changed:
        print(f"reference version {edit.version}: calls see it at the next snapshot "
              "(loader sync; loader sync --watch publishes it now)")


def _destination(sign: str, d: Destination) -> str:
    return f"{sign} {d.prefix or '(catch-all)':<12} {d.destination}".rstrip()


def _lines(lines: Iterable[str]) -> None:
    count = 0
    for count, line in enumerate(lines, 1):
        if count <= MAX_LINES:
            print(f"  {line}")
    if count > MAX_LINES:
        print(f"  ... {count - MAX_LINES} more (--json lists them all)")
