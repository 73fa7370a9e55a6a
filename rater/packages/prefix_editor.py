"""`rater product-prefixes`: list, add and remove a product's prefixes from its owner's rates.

Who may do what, as in the portal: admin (no ``--as``) edits admin's products from admin's
rate groups; a reseller (``--as R``) edits only its own products, from its own rate groups;
a reseller's product is never edited without ``--as`` its owner. Anyone may list a product's
prefixes; with ``--as`` only that reseller's products.

An edit is one transaction with the product row locked, so two edits of one product never
interleave. The schema's triggers bump ``reference_version`` and NOTIFY ``rater_reference``
on commit: calls see the change at the next snapshot (`loader sync`, or at once under
`loader sync --watch`); package buckets in Redis keep their seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from rater.db import one_row
from rater.errors import InputError
from rater.packages import store
from rater.packages.context import Refused
from rater.packages.destinations import (
    DIRECTIONS_FOR,
    Change,
    Destination,
    RateFilter,
    RateMatch,
    like_pattern,
    pick,
    plan_add,
    plan_remove,
)
from rater.packages.store import ProductRow
from rater.packages.visibility import RESELLER
from rater.reasons import Reason

ACTIONS = ("list", "add", "remove")

_MATCHING_RATES = """
SELECT g.name, r.direction, r.prefix, r.destination, r.country, r.call_type
FROM rates r JOIN rate_groups g ON g.id = r.rate_group_id
WHERE g.owner IS NOT DISTINCT FROM %(owner)s::text
  AND (%(group)s::text IS NULL OR g.name = %(group)s)
  AND r.direction = ANY(%(directions)s)
  AND (%(country)s::text IS NULL OR lower(r.country) = lower(%(country)s))
  AND (%(call_type)s::text IS NULL OR lower(r.call_type) = lower(%(call_type)s))
  AND (%(code)s::text IS NULL OR starts_with(r.prefix, %(code)s))
  AND (%(destination)s::text IS NULL OR r.destination ILIKE %(destination)s)
ORDER BY r.prefix, g.name, r.direction DESC
"""


def owner_name(owner: str | None) -> str:
    return "admin" if owner is None else f"reseller {owner}"


@dataclass(frozen=True, slots=True)
class Edit:
    """What one command found and did. `change` is None for `list`; `prefixes` are the
    product's prefixes afterwards (as they would be, on a dry run); `version` is the
    reference version the next snapshot carries."""

    product: ProductRow
    action: str
    filter: RateFilter
    dry_run: bool
    rates: tuple[RateMatch, ...]
    change: Change | None
    prefixes: tuple[Destination, ...]
    version: int

    def as_dict(self) -> dict[str, Any]:
        p = self.product
        data: dict[str, Any] = {
            "ok": True, "action": self.action, "dry_run": self.dry_run,
            "product": {"id": p.id, "name": p.name, "owner": p.owner or "admin",
                        "applicable_for": p.applicable_for},
            "filter": self.filter.as_dict(),
        }
        if not self.filter.empty:
            data["rates"] = [r.as_dict() for r in self.rates]
        if self.change is not None:
            done, left = ("added", "skipped") if self.action == "add" else ("removed", "absent")
            data[done] = [d.as_dict() for d in self.change.changed]
            data[left] = [d.as_dict() for d in self.change.unchanged]
        data["prefixes"] = [d.as_dict() for d in self.prefixes]
        data["reference_version"] = self.version
        return data


def edit_prefixes(
    conn: psycopg.Connection, product_ref: str, action: str, rate_filter: RateFilter, *,
    actor: str | None = None, dry_run: bool = False,
) -> Edit:
    """List, add or remove (`action`) the prefixes `rate_filter` selects, as `actor` (a
    reseller's number; None = admin). Raises Refused (unknown product, account or rate
    group; not the owner; a filter that matches no rate) or InputError, changing nothing."""
    if action not in ACTIONS:
        raise InputError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    if action != "list" and rate_filter.empty:
        raise InputError(f"{action} needs at least one filter (--rate-group, --country, "
                         "--call-type, --code, --destination)")
    with conn.transaction():
        if actor is not None:
            _check_reseller(conn, actor)
        product = resolve_product(conn, product_ref, actor)
        if action != "list" or actor is not None:
            check_owner(product, actor)
        if action != "list":
            conn.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", (product.id,))
        existing = product_destinations(conn, product.id)
        rates: tuple[RateMatch, ...] = ()
        if not rate_filter.empty:
            rates = matching_rates(conn, product, rate_filter)
        change = None
        if action != "list":
            planner = plan_add if action == "add" else plan_remove
            change = planner(pick(rates), existing)
        after = _after(existing, action, change)
        if change is not None and change.changed and not dry_run:
            _write(conn, product.id, action, change)
            after = product_destinations(conn, product.id)
        version = one_row(conn.execute("SELECT version FROM reference_version"))[0]
    return Edit(product, action, rate_filter, dry_run, rates, change, after, version)


def _check_reseller(conn: psycopg.Connection, number: str) -> None:
    row = conn.execute("SELECT kind FROM accounts WHERE number = %s", (number,)).fetchone()
    if row is None:
        raise Refused(Reason.UNKNOWN_ACCOUNT, number, "--as: no such account")
    if row[0] != RESELLER:
        raise Refused("not_a_reseller", number, f"--as: account {number} is a {row[0]}")


def resolve_product(conn: psycopg.Connection, ref: str, actor: str | None) -> ProductRow:
    """A product by name (the actor's own first, since names are unique per owner) or id."""
    named = store.products_named(conn, ref)
    own = [p for p in named if p.owner == actor]
    if own:
        return own[0]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        ids = ", ".join(f"{p.id} ({owner_name(p.owner)})" for p in named)
        raise InputError(f"product {ref!r} is ambiguous: ids {ids}; give the id")
    if ref.isdigit():
        found = store.product(conn, int(ref))
        if found is not None:
            return found
        raise Refused("unknown_product", None, f"no product with id {ref}")
    raise Refused("unknown_product", None, f"no product named {ref!r}")


def check_owner(product: ProductRow, actor: str | None) -> None:
    """Only the owner edits a product: admin its own, a reseller (`--as`) its own."""
    if product.owner == actor:
        return
    if actor is None:
        raise Refused("not_owner", product.owner,
                      f"product {product.name!r} belongs to reseller {product.owner}: edit it "
                      f"as its owner, with --as {product.owner} (from its rate groups)")
    raise Refused("not_owner", actor,
                  f"reseller {actor} cannot edit product {product.name!r} of "
                  f"{owner_name(product.owner)}")


def product_destinations(conn: psycopg.Connection, product_id: int) -> tuple[Destination, ...]:
    rows = conn.execute(
        "SELECT prefix, destination FROM product_prefixes WHERE product_id = %s"
        " ORDER BY prefix", (product_id,)).fetchall()
    return tuple(Destination(*r) for r in rows)


def matching_rates(
    conn: psycopg.Connection, product: ProductRow, rate_filter: RateFilter
) -> tuple[RateMatch, ...]:
    """The rates of the product owner's rate groups, in the product's directions, that the
    filter selects. Raises Refused for a rate group that is unknown or another owner's, and
    for a filter that selects nothing (the message echoes the filter)."""
    if rate_filter.rate_group is not None:
        row = conn.execute("SELECT owner FROM rate_groups WHERE name = %s",
                           (rate_filter.rate_group,)).fetchone()
        if row is None:
            raise Refused("unknown_rate_group", None,
                          f"no rate group named {rate_filter.rate_group!r}")
        if row[0] != product.owner:
            raise Refused("foreign_rate_group", product.owner,
                          f"rate group {rate_filter.rate_group!r} belongs to "
                          f"{owner_name(row[0])}; product {product.name!r} takes prefixes "
                          f"only from {owner_name(product.owner)}'s rate groups")
    directions = DIRECTIONS_FOR[product.applicable_for]
    f = rate_filter
    rows = conn.execute(_MATCHING_RATES, {
        "owner": product.owner, "group": f.rate_group, "directions": list(directions),
        "country": f.country, "call_type": f.call_type, "code": f.code,
        "destination": None if f.destination is None else like_pattern(f.destination),
    }).fetchall()
    if not rows:
        raise Refused("no_match", product.owner,
                      f"no {' or '.join(directions)} rate of {owner_name(product.owner)}'s "
                      f"rate groups matches {f.describe()}")
    return tuple(RateMatch(*r) for r in rows)


def _write(conn: psycopg.Connection, product_id: int, action: str, change: Change) -> None:
    """One statement: the triggers bump the reference version once per edit."""
    prefixes = [d.prefix for d in change.changed]
    if action == "add":
        conn.execute(
            "INSERT INTO product_prefixes (product_id, prefix, destination)"
            " SELECT %s, p, d FROM unnest(%s::text[], %s::text[]) AS x(p, d)"
            " ON CONFLICT (product_id, prefix) DO NOTHING",
            (product_id, prefixes, [d.destination for d in change.changed]))
    else:
        conn.execute("DELETE FROM product_prefixes WHERE product_id = %s AND prefix = ANY(%s)",
                     (product_id, prefixes))


def _after(
    existing: tuple[Destination, ...], action: str, change: Change | None
) -> tuple[Destination, ...]:
    if change is None:
        return existing
    if action == "add":
        return tuple(sorted((*existing, *change.changed)))
    gone = {d.prefix for d in change.changed}
    return tuple(d for d in existing if d.prefix not in gone)
