"""Dataset files (spec/dataset.md): `loader import FILE`, all of it or nothing.

A dataset describes existing state, so nothing in it is charged: each account's balance
becomes one opening ledger entry (`opening:<number>`) and orders arrive already paid, in the
period that contains the import time. The import runs in three steps:

1. `parse_dataset`: the shape of every record (types, ranges, unknown fields, duplicates),
   with no database; every problem is collected under its JSON path.
2. `_check_references`: references against the file overlaid on the database (parents,
   owners, rate groups, products, opt-ins, cycles) and the refusals that protect live money
   state on a re-import. Problems of steps 1 and 2 are reported together.
3. `_write`: upserts keyed on natural keys, in one transaction, so importing the same file
   twice gives the same state. Nothing is ever deleted (`import-rates --replace` does that).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from loader.ratedeck import (
    DIRECTIONS,
    MAX_INT,
    acquire_import_lock,
    copy_rates,
    create_staging,
    max_price_micros,
    merge_staged_rates,
    money,
)
from rater.errors import InputError
from rater.money import format_micros, parse_percent_bp
from rater.packages.periods import period_bounds, period_index_at
from rater.prefixes import normalize_prefix

ADMIN = "admin"
MAX_PROBLEMS_SHOWN = 50
REQUIRED = object()  # marks a field with no default
_UNSET = object()  # product_owner not given: take the nearest owner up the chain

Checker = Callable[[Any, str], Any]


# --- collecting problems -------------------------------------------------------------------

class Problems:
    """Every problem found in a pass; the message shows the first MAX_PROBLEMS_SHOWN."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def at(self, path: str, message: str) -> None:
        self.messages.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if not self.messages:
            return
        shown = self.messages[:MAX_PROBLEMS_SHOWN]
        more = len(self.messages) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        raise InputError(
            f"{self.source}: {len(self.messages)} problem(s), nothing imported:\n  "
            + "\n  ".join(shown) + tail
        )


# --- single values: each checker takes (value, path) and raises InputError ---------------

def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: expected a string, got {_show(value)}")
    return value


def _name(value: Any, where: str) -> str:
    text = _text(value, where).strip()
    if not text:
        raise InputError(f"{where}: must not be empty")
    return text


def _account_number(value: Any, where: str) -> str:
    if not (isinstance(value, str) and len(value) == 10 and value.isdigit() and value.isascii()):
        raise InputError(f"{where}: {_show(value)} is not a 10-digit account number (a string)")
    return value


def _owner(value: Any, where: str) -> str | None:
    """"admin" (stored as None) or a reseller's account number."""
    if value == ADMIN or value is None:
        return None
    return _account_number(value, where)


def _amount(value: Any, where: str) -> int:
    if isinstance(value, Decimal):  # a JSON number, read exactly
        value = str(value)
    return money(value, where)


def _signed_amount(value: Any, where: str) -> int:
    if isinstance(value, Decimal):
        value = str(value)
    return money(value, where, signed=True)


def _percent(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InputError(f"{where}: expected a decimal string, got {_show(value)}")
    bp = parse_percent_bp(str(value), where)
    if bp < 0:
        raise InputError(f"{where}: {_show(value)} must not be negative")
    return bp


def _whole(minimum: int, maximum: int = MAX_INT) -> Checker:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected a whole number, got {_show(value)}")
        if not minimum <= value <= maximum:
            raise InputError(f"{where}: {value} must be between {minimum} and {maximum}")
        return value
    return check


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{where}: expected true or false, got {_show(value)}")
    return value


def _one_of(*options: str) -> Checker:
    def check(value: Any, where: str) -> str:
        if value not in options:
            raise InputError(f"{where}: {_show(value)} is not one of {', '.join(options)}")
        return value
    return check


def _prefix(value: Any, where: str) -> str:
    try:
        return normalize_prefix(value)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def _blocked_prefix(value: Any, where: str) -> str:
    try:
        return normalize_prefix(value, allow_catch_all=False)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def _did_number(value: Any, where: str) -> str:
    if not (isinstance(value, str) and value.isdigit() and value.isascii()):
        raise InputError(f"{where}: {_show(value)} is not a DID number (a string of digits)")
    return value


def _time(value: Any, where: str) -> datetime:
    text = _text(value, where)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{where}: {text!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        if len(text) != 10:  # a bare date means midnight UTC, as on the command line
            raise InputError(f"{where}: {text!r} has no time zone (add Z or +00:00)")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _currency(value: Any, where: str) -> str:
    if not (isinstance(value, str) and len(value) == 3 and value.isalpha() and value.isupper()):
        raise InputError(f"{where}: {_show(value)} is not a 3-letter currency code")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list, got {_show(value)}")
    return value


def _nullable(check: Checker) -> Checker:
    def nullable(value: Any, where: str) -> Any:
        return None if value is None else check(value, where)
    return nullable


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value) if value is None or isinstance(value, bool) else repr(value)


# --- record specifications: field -> (default, checker); defaults are already parsed -----

TOP = {
    "currency": ("USD", _currency),
    "rate_groups": ([], _list), "accounts": ([], _list), "dids": ([], _list),
    "products": ([], _list), "reseller_products": ([], _list), "orders": ([], _list),
}
RATE_GROUP = {
    "name": (REQUIRED, _name),
    "owner": (None, _owner),
    "markup_percent": (0, _percent),
    "rates": ([], _list),
    "blocked_prefixes": ([], _list),
}
RATE = {
    "prefix": (REQUIRED, _prefix),
    "destination": ("", _text),
    "country": ("", _text),
    "call_type": ("", _text),
    "direction": ("outbound", _one_of(*DIRECTIONS)),
    "price_per_min": (REQUIRED, _amount),
    "connect_fee": (0, _amount),
    "included_seconds": (0, _whole(0)),
    "init_inc": (1, _whole(1)),
    "inc": (1, _whole(1)),
}
ACCOUNT = {
    "number": (REQUIRED, _account_number),
    "name": ("", _text),
    "parent": (None, _nullable(_account_number)),
    "kind": (REQUIRED, _one_of("reseller", "customer")),
    "reseller_type": (None, _nullable(_one_of("margin", "commission"))),
    "billing": ("prepaid", _one_of("prepaid", "postpaid")),
    "balance": (0, _signed_amount),
    "credit_limit": (0, _amount),
    "rate_group": (REQUIRED, _name),
    "max_channels": (0, _whole(0)),
    "status": ("active", _one_of("active", "suspended", "deleted")),
}
DID = {
    "number": (REQUIRED, _did_number),
    "account": (REQUIRED, _account_number),
}
PRODUCT = {
    "name": (REQUIRED, _name),
    "owner": (None, _owner),
    "category": ("package", _text),
    "country": ("", _text),
    "description": ("", _text),
    "status": ("active", _one_of("active", "inactive")),
    "buy_cost": (0, _amount),
    "price": (0, _amount),
    "setup_fee": (0, _amount),
    "commission_percent": (0, _percent),
    "billing_type": ("recurring", _one_of("one_time", "recurring", "monthly")),
    "billing_days": (30, _whole(1)),
    "free_minutes": (0, _whole(0, 10_000_000)),
    "applicable_for": ("outbound", _one_of("inbound", "outbound", "both")),
    "charge_type": ("full", _one_of("full", "utilized_days", "utilized_minutes", "highest")),
    "can_be_purchased": (True, _flag),
    "reseller_can_resell": (True, _flag),
    "admin_customers_can_order": (True, _flag),
    "reseller_customers_can_order": (True, _flag),
    "release_if_no_balance": (True, _flag),
    "rate_group": (None, _nullable(_name)),
    "apply_to_existing": (False, _flag),
    "email_notification": (False, _flag),
    "prefixes": ([], _list),
}
PRODUCT_PREFIX = {
    "prefix": (REQUIRED, _prefix),
    "destination": ("", _text),
}
RESELLER_PRODUCT = {
    "reseller": (REQUIRED, _account_number),
    "product": (REQUIRED, _name),
    "product_owner": (None, _owner),  # only to pick between same-named products
    "opt_in": (True, _flag),
    "price": (None, _nullable(_amount)),
    "setup_fee": (None, _nullable(_amount)),
    "display_in_my_products": (True, _flag),
}
ORDER = {
    "id": (REQUIRED, _name),
    "account": (REQUIRED, _account_number),
    "product": (REQUIRED, _name),
    "product_owner": (None, _owner),
    "ordered_at": (REQUIRED, _time),
    "used_seconds": (0, _whole(0, 2**62)),
}


@dataclass
class Record:
    """One parsed object: its JSON path and the fields that passed their checks."""

    path: str
    values: dict[str, Any]
    children: dict[str, list[Record]] = field(default_factory=dict)
    given: set[str] = field(default_factory=set)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str) -> Any:
        return self.values.get(name)


@dataclass
class Dataset:
    """The parsed file: records per section, each with its JSON path."""

    currency: str
    rate_groups: list[Record]
    accounts: list[Record]
    dids: list[Record]
    products: list[Record]
    reseller_products: list[Record]
    orders: list[Record]


def _fields(obj: Any, path: str, spec: dict, problems: Problems) -> Record:
    if not isinstance(obj, dict):
        problems.at(path or "(top level)", f"expected an object, got {_show(obj)}")
        return Record(path, {})
    rec = Record(path, {}, given=set(obj))
    prefix = f"{path}." if path else ""
    for key in obj:
        if key not in spec:
            problems.at(f"{prefix}{key}", "unknown field")
    for key in getattr(obj, "duplicates", ()):
        problems.at(f"{prefix}{key}", "appears twice in the same object")
    for key, (default, check) in spec.items():
        where = f"{prefix}{key}"
        if key not in obj:
            if default is REQUIRED:
                problems.at(where, "required")
            else:
                rec.values[key] = list(default) if isinstance(default, list) else default
            continue
        try:
            rec.values[key] = check(obj[key], where)
        except InputError as exc:
            problems.add(str(exc))
    return rec


def _section(rec: Record, key: str, spec: dict, problems: Problems) -> list[Record]:
    items = rec.values.get(key) or []
    base = f"{rec.path}.{key}" if rec.path else key
    children = [_fields(obj, f"{base}[{i}]", spec, problems) for i, obj in enumerate(items)]
    rec.children[key] = children
    return children


def _duplicates(
    records: Iterable[Record], key: Callable[[Record], Any], field_name: str, what: str,
    problems: Problems,
) -> None:
    """Report every record whose key another record already has, naming both paths."""
    first: dict[Any, str] = {}
    for rec in records:
        try:
            k = key(rec)
        except KeyError:
            continue
        if k in first:
            where = f"{rec.path}.{field_name}" if field_name else rec.path
            problems.at(where, f"duplicate {what} (first at {first[k]})")
        else:
            first[k] = rec.path


def parse_dataset(data: Any, problems: Problems) -> Dataset:
    """Check the shape of every record of a loaded JSON document (no database)."""
    top = _fields(data, "", TOP, problems)
    groups = _section(top, "rate_groups", RATE_GROUP, problems)
    for g in groups:
        rates = _section(g, "rates", RATE, problems)
        _duplicates(rates, lambda r: (r["direction"], r["prefix"]), "prefix",
                    "direction and prefix in this rate group", problems)
        if "markup_percent" in g.values:
            cap = max_price_micros(g["markup_percent"])
            for r in rates:
                if r.get("price_per_min") is not None and r["price_per_min"] > cap:
                    problems.at(f"{r.path}.price_per_min",
                                f"{format_micros(r['price_per_min'])} with this group's markup"
                                " is too high to be rated exactly")
        blocked = []
        for j, value in enumerate(g.values.get("blocked_prefixes") or []):
            where = f"{g.path}.blocked_prefixes[{j}]"
            try:
                blocked.append(Record(where, {"prefix": _blocked_prefix(value, where)}))
            except InputError as exc:
                problems.add(str(exc))
        _duplicates(blocked, lambda r: r["prefix"], "", "blocked prefix", problems)
        g.children["blocked_prefixes"] = blocked
    _duplicates(groups, lambda r: r["name"], "name", "rate group name", problems)

    accounts = _section(top, "accounts", ACCOUNT, problems)
    for a in accounts:
        _check_account_shape(a, problems)
    _duplicates(accounts, lambda r: r["number"], "number", "account number", problems)

    dids = _section(top, "dids", DID, problems)
    _duplicates(dids, lambda r: r["number"], "number", "DID number", problems)

    products = _section(top, "products", PRODUCT, problems)
    for p in products:
        prefixes = _section(p, "prefixes", PRODUCT_PREFIX, problems)
        _duplicates(prefixes, lambda r: r["prefix"], "prefix", "prefix in this product",
                    problems)
        if p.get("apply_to_existing") and p.values.get("rate_group", 0) is None:
            problems.at(f"{p.path}.apply_to_existing", "needs a rate_group to apply to")
    _duplicates(products, lambda r: (r["owner"], r["name"]), "name",
                "product name for this owner", problems)

    rps = _section(top, "reseller_products", RESELLER_PRODUCT, problems)
    orders = _section(top, "orders", ORDER, problems)
    _duplicates(orders, lambda r: r["id"], "id", "order id", problems)
    for rec in (*rps, *orders):
        if "product_owner" not in rec.given:
            rec.values["product_owner"] = _UNSET
    return Dataset(top.values.get("currency", "USD"), groups, accounts, dids, products, rps,
                   orders)


def _check_account_shape(a: Record, problems: Problems) -> None:
    kind, rtype = a.get("kind"), a.get("reseller_type")
    if kind == "reseller" and rtype is None and "reseller_type" in a.values:
        problems.at(f"{a.path}.reseller_type", "required for a reseller (margin or commission)")
    if kind == "customer" and rtype is not None:
        problems.at(f"{a.path}.reseller_type", "only resellers have a reseller_type")
    if a.get("billing") == "prepaid" and a.get("credit_limit"):
        problems.at(f"{a.path}.credit_limit",
                    "only postpaid accounts have a credit limit (set billing to postpaid)")
    if a.get("parent") is not None and a.get("parent") == a.get("number"):
        problems.at(f"{a.path}.parent", "an account cannot be its own parent")


# --- the file overlaid on the database -------------------------------------------------------

@dataclass
class _Account:
    parent: str | None
    kind: str | None
    reseller_type: str | None
    rate_group: str | None
    path: str | None = None  # None: only in the database


@dataclass
class _Product:
    id: int | None
    reseller_can_resell: bool
    free_minutes: int
    billing_type: str
    billing_days: int


@dataclass
class _World:
    groups: dict[str, str | None]                     # name -> owner (None = admin)
    accounts: dict[str, _Account]
    products: dict[tuple[str | None, str], _Product]  # (owner, name)
    opt_ins: dict[tuple[str, str | None, str], bool]  # (reseller, owner, name) -> opt_in
    db_accounts: dict[str, _Account]
    orders: dict[str, tuple]                          # id -> (account, product_id, at, used)
    openings: dict[str, int]                          # account -> opening amount

    def ancestors(self, number: str) -> list[str | None]:
        """Strict ancestors of an account, nearest first, ending with None (admin)."""
        chain: list[str | None] = []
        seen = {number}
        acct = self.accounts.get(number)
        while acct is not None and acct.parent is not None and acct.parent not in seen:
            seen.add(acct.parent)
            chain.append(acct.parent)
            acct = self.accounts.get(acct.parent)
        chain.append(None)
        return chain


def _load_world(conn: psycopg.Connection, ds: Dataset) -> _World:
    groups: dict[str, str | None] = dict(
        conn.execute("SELECT name, owner FROM rate_groups").fetchall()
    )
    db_accounts = {
        number: _Account(parent, kind, rtype, group)
        for number, parent, kind, rtype, group in conn.execute(
            "SELECT a.number, a.parent, a.kind, a.reseller_type, g.name"
            " FROM accounts a JOIN rate_groups g ON g.id = a.rate_group_id"
        )
    }
    products: dict[tuple[str | None, str], _Product] = {}
    ids: dict[int, tuple[str | None, str]] = {}
    for pid, owner, name, resell, free, btype, bdays in conn.execute(
        "SELECT id, owner, name, reseller_can_resell, free_minutes, billing_type, billing_days"
        " FROM products"
    ):
        products[(owner, name)] = _Product(pid, resell, free, btype, bdays)
        ids[pid] = (owner, name)
    opt_ins = {
        (reseller, *ids[pid]): opt_in
        for reseller, pid, opt_in in conn.execute(
            "SELECT reseller, product_id, opt_in FROM reseller_products"
        )
    }
    order_ids = [o["id"] for o in ds.orders if "id" in o.values]
    orders = {
        oid: (account, pid, at, used)
        for oid, account, pid, at, used in conn.execute(
            "SELECT id, account, product_id, ordered_at, used_seconds FROM orders"
            " WHERE id = ANY(%s)", (order_ids,)
        )
    }
    numbers = [a["number"] for a in ds.accounts if "number" in a.values]
    openings = {
        account: amount
        for account, amount in conn.execute(
            "SELECT account, amount FROM ledger_entries WHERE kind = 'opening' AND id = ANY(%s)",
            ([f"opening:{n}" for n in numbers],),
        )
    }
    world = _World(groups, dict(db_accounts), products, opt_ins, db_accounts,
                   orders, openings)
    # Overlay the file.
    for g in ds.rate_groups:
        if "name" in g.values and "owner" in g.values:
            world.groups[g["name"]] = g["owner"]
    for a in ds.accounts:
        if "number" in a.values:
            world.accounts[a["number"]] = _Account(
                a.get("parent"), a.get("kind"), a.get("reseller_type"), a.get("rate_group"),
                a.path,
            )
    for p in ds.products:
        if "name" in p.values and "owner" in p.values:
            old = world.products.get((p["owner"], p["name"]))
            world.products[(p["owner"], p["name"])] = _Product(
                old.id if old else None, p.get("reseller_can_resell"), p.get("free_minutes"),
                p.get("billing_type"), p.get("billing_days"),
            )
    return world


def _who(number: str | None) -> str:
    return ADMIN if number is None else number


def _check_reseller(world: _World, number: str, where: str, role: str,
                    problems: Problems) -> bool:
    acct = world.accounts.get(number)
    if acct is None:
        problems.at(where, f"{number} is not an account in the file or the database")
        return False
    if acct.kind is None:  # its own kind is bad: reported there
        return False
    if acct.kind != "reseller":
        problems.at(where, f"{number} is a {acct.kind}; only resellers (or admin) {role}")
        return False
    return True


def _check_references(ds: Dataset, world: _World, now: datetime, problems: Problems) -> None:
    for g in ds.rate_groups:
        if g.get("owner") is not None:
            _check_reseller(world, g["owner"], f"{g.path}.owner", "own rate groups", problems)
    _check_accounts(ds, world, problems)
    for d in ds.dids:
        if "account" in d.values and d["account"] not in world.accounts:
            problems.at(f"{d.path}.account",
                        f"{d['account']} is not an account in the file or the database")
    for p in ds.products:
        if p.get("owner") is not None:
            _check_reseller(world, p["owner"], f"{p.path}.owner", "own products", problems)
        if p.get("rate_group") is not None and p["rate_group"] not in world.groups:
            problems.at(f"{p.path}.rate_group", f"no rate group named {p['rate_group']!r}")
    _check_reseller_products(ds, world, problems)
    _check_orders(ds, world, now, problems)


def _check_accounts(ds: Dataset, world: _World, problems: Problems) -> None:
    for a in ds.accounts:
        number = a.get("number")
        if number is None:
            continue
        old = world.db_accounts.get(number)
        if old is not None and "parent" in a.values and old.parent != a["parent"]:
            problems.at(f"{a.path}.parent",
                        f"{number} is already under {_who(old.parent)}; an import cannot move "
                        "an account to another parent")
        if old is not None and old.kind == "reseller" and a.get("kind") == "customer":
            problems.at(f"{a.path}.kind",
                        f"{number} is a reseller in the database; an import cannot turn a "
                        "reseller into a customer")
        parent = a.get("parent")
        if parent is not None:
            _check_reseller(world, parent, f"{a.path}.parent", "have children", problems)
        group = a.get("rate_group")
        if group is not None and "parent" in a.values:
            if group not in world.groups:
                problems.at(f"{a.path}.rate_group", f"no rate group named {group!r}")
            elif world.groups[group] != parent:
                problems.at(
                    f"{a.path}.rate_group",
                    f"{group!r} is owned by {_who(world.groups[group])}, but {number}'s parent "
                    f"is {_who(parent)}: an account pays at a rate group its parent owns",
                )
        if "balance" in a.values and number in world.openings:
            opened = world.openings[number]
            if opened != a["balance"]:
                problems.at(
                    f"{a.path}.balance",
                    f"{format_micros(a['balance'])} differs from the opening balance already "
                    f"imported ({format_micros(opened)}); change a live balance with "
                    "`rater topup` or a balance adjustment, not by re-importing",
                )
    _check_cycles(ds, world, problems)
    # Accounts only in the database that pay at a rate group whose owner the file changes.
    changed = {
        g["name"]: g for g in ds.rate_groups
        if "name" in g.values and "owner" in g.values
    }
    stuck: dict[str, list[str]] = {}
    for number, acct in world.db_accounts.items():
        g = changed.get(acct.rate_group or "")
        if g is not None and world.accounts[number].path is None and g["owner"] != acct.parent:
            stuck.setdefault(g["name"], []).append(number)
    for name, numbers in stuck.items():
        g, parent = changed[name], world.db_accounts[numbers[0]].parent
        shown = ", ".join(sorted(numbers)[:5]) + (", ..." if len(numbers) > 5 else "")
        problems.at(
            f"{g.path}.owner",
            f"{len(numbers)} account(s) in the database ({shown}) pay at {name!r} under "
            f"{_who(parent)}, so its owner must stay {_who(parent)}",
        )


def _check_cycles(ds: Dataset, world: _World, problems: Problems) -> None:
    for a in ds.accounts:
        number = a.get("number")
        if number is None:
            continue
        chain = [number]
        acct = world.accounts.get(number)
        while acct is not None and acct.parent is not None:
            if acct.parent == number:
                problems.at(f"{a.path}.parent",
                            "cycle: " + " -> ".join([*chain, number]))
                break
            if acct.parent in chain:
                break  # a cycle above this account: reported on its members
            chain.append(acct.parent)
            acct = world.accounts.get(acct.parent)


def _resolve_product(
    world: _World, rec: Record, chain: list[str | None], buyer: str, problems: Problems,
) -> tuple[str | None, str] | None:
    """The product a record names: owned by an account up `chain` (nearest first)."""
    name = rec["product"]
    wanted = rec["product_owner"]
    for owner in chain:
        if wanted is not _UNSET and owner != wanted:
            continue
        if (owner, name) in world.products:
            return owner, name
    owners = "admin or one of its parents" if wanted is _UNSET else _who(wanted)
    problems.at(f"{rec.path}.product",
                f"no product {name!r} visible to {buyer} (owned by {owners})")
    return None


def _check_reseller_products(ds: Dataset, world: _World, problems: Problems) -> None:
    seen: dict[tuple, str] = {}
    for rp in ds.reseller_products:
        reseller = rp.get("reseller")
        if reseller is None or "product" not in rp.values:
            continue
        if not _check_reseller(world, reseller, f"{rp.path}.reseller", "opt in to products",
                               problems):
            continue
        key = _resolve_product(world, rp, world.ancestors(reseller), reseller, problems)
        if key is None:
            continue
        rp.values["_product"] = key
        if (reseller, key) in seen:
            problems.at(f"{rp.path}.product", f"duplicate opt-in (first at {seen[reseller, key]})")
        seen[(reseller, key)] = rp.path
        world.opt_ins[(reseller, *key)] = bool(rp.get("opt_in"))
        if not world.products[key].reseller_can_resell:
            problems.at(f"{rp.path}.product",
                        f"{key[1]!r} of {_who(key[0])} has reseller_can_resell false")
        rtype = world.accounts[reseller].reseller_type
        if rtype == "margin" and rp.get("opt_in") and rp.get("price") is None \
                and "price" in rp.values:
            problems.at(f"{rp.path}.price",
                        "required: a margin reseller sells at its own price")
        if rtype == "commission":
            for key_name in ("price", "setup_fee"):
                if rp.get(key_name) is not None:
                    problems.at(f"{rp.path}.{key_name}",
                                "a commission reseller sells at its parent's price; leave it out")


def _check_orders(ds: Dataset, world: _World, now: datetime, problems: Problems) -> None:
    for o in ds.orders:
        account = o.get("account")
        if account is None or "product" not in o.values:
            continue
        if account not in world.accounts:
            problems.at(f"{o.path}.account",
                        f"{account} is not an account in the file or the database")
            continue
        chain = world.ancestors(account)
        key = _resolve_product(world, o, chain, account, problems)
        if key is None:
            continue
        o.values["_product"] = key
        product = world.products[key]
        # Every reseller between the buyer and the owner sells the product on: it must have
        # opted in (a margin reseller's opt-in also carries its selling price).
        for level in chain[: chain.index(key[0])]:
            if level is not None and not world.opt_ins.get((level, *key)):
                problems.at(f"{o.path}.product",
                            f"reseller {level} has not opted in to {key[1]!r} of {_who(key[0])} "
                            "(add a reseller_products entry)")
        at = o.get("ordered_at")
        if at is not None and at > now:
            problems.at(f"{o.path}.ordered_at", "is in the future")
        used = o.get("used_seconds")
        if used is not None and product.free_minutes is not None \
                and used > product.free_minutes * 60:
            problems.at(f"{o.path}.used_seconds",
                        f"{used} is more than the package's {product.free_minutes * 60} free "
                        "seconds")
        old = world.orders.get(o.get("id"))
        if old is not None:
            _check_existing_order(o, old, product, problems)


def _check_existing_order(o: Record, old: tuple, product: _Product, problems: Problems) -> None:
    account, product_id, at, used = old
    how = "; use `rater terminate` and `rater order` to change an order, not a re-import"
    if account != o["account"]:
        problems.at(f"{o.path}.account", f"order {o['id']} belongs to {account}{how}")
    if product.id != product_id:
        problems.at(f"{o.path}.product", f"order {o['id']} is for another product{how}")
    if o.get("ordered_at") is not None and at != o["ordered_at"]:
        problems.at(f"{o.path}.ordered_at",
                    f"order {o['id']} was placed at {at.astimezone(UTC).isoformat()}{how}")
    if o.get("used_seconds") is not None and used != o["used_seconds"]:
        problems.at(f"{o.path}.used_seconds",
                    f"order {o['id']} has used {used} seconds already; live usage is not "
                    "changed by a re-import")


# --- writing -----------------------------------------------------------------------------

def _upsert(
    conn: psycopg.Connection, table: str, keys: tuple[str, ...], cols: tuple[str, ...],
    rows: list[tuple], *, conflict: str | None = None, touch: tuple[str, ...] = (),
    insert_only: tuple[str, ...] = (),
) -> None:
    """INSERT rows laid out as keys + cols + touch + insert_only.

    On conflict, `cols` and `touch` are updated only where some of `cols` differ, so an
    unchanged row is not rewritten; with no `cols` a conflicting row is left alone.
    """
    if not rows:
        return
    all_cols = (*keys, *cols, *touch, *insert_only)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*cols, *touch))
    old = ", ".join(f"t.{c}" for c in cols)
    new = ", ".join(f"EXCLUDED.{c}" for c in cols)
    action = (f"DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new})" if cols
              else "DO NOTHING")
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} AS t ({', '.join(all_cols)})"
            f" VALUES ({', '.join(['%s'] * len(all_cols))})"
            f" ON CONFLICT ({conflict or ', '.join(keys)}) {action}",
            rows,
        )


def _depth(world: _World, number: str) -> int:
    return len(world.ancestors(number))


def _write(conn: psycopg.Connection, ds: Dataset, world: _World, now: datetime) -> dict:
    _upsert(conn, "rate_groups", ("name",), ("owner", "markup_bp"),
            [(g["name"], g["owner"], g["markup_percent"]) for g in ds.rate_groups])
    gids: dict[str, int] = dict(conn.execute("SELECT name, id FROM rate_groups").fetchall())

    # Parents before children: the parent foreign key is checked row by row.
    accounts = sorted(ds.accounts, key=lambda a: _depth(world, a["number"]))
    _upsert(
        conn, "accounts", ("number",),
        ("name", "parent", "kind", "reseller_type", "billing", "credit_limit", "rate_group_id",
         "max_channels", "status"),
        [(a["number"], a["name"], a["parent"], a["kind"], a["reseller_type"], a["billing"],
          a["credit_limit"], gids[a["rate_group"]], a["max_channels"], a["status"], now, now)
         for a in accounts],
        touch=("updated_at",), insert_only=("created_at",),
    )

    rates = [
        (gids[g["name"]], r["direction"], r["prefix"], r["destination"], r["country"],
         r["call_type"], r["price_per_min"], r["connect_fee"], r["included_seconds"],
         r["init_inc"], r["inc"])
        for g in ds.rate_groups for r in g.children["rates"]
    ]
    create_staging(conn)
    copy_rates(conn, rates)
    merge_staged_rates(conn)
    blocked = [(gids[g["name"]], b["prefix"])
               for g in ds.rate_groups for b in g.children["blocked_prefixes"]]
    _upsert(conn, "blocked_prefixes", ("rate_group_id", "prefix"), (), blocked)

    product_cols = (
        "category", "country", "description", "status", "buy_cost", "price", "setup_fee",
        "commission_bp", "billing_type", "billing_days", "free_minutes", "applicable_for",
        "charge_type", "can_be_purchased", "reseller_can_resell", "admin_customers_can_order",
        "reseller_customers_can_order", "release_if_no_balance", "rate_group_id",
        "apply_to_existing", "email_notification",
    )
    product_rows = []
    for p in ds.products:
        values = {**p.values, "commission_bp": p["commission_percent"],
                  "rate_group_id": gids.get(p["rate_group"]) if p["rate_group"] else None}
        product_rows.append(
            (p["owner"], p["name"], *(values[c] for c in product_cols), now)
        )
    _upsert(conn, "products", ("owner", "name"), product_cols, product_rows,
            conflict="(COALESCE(owner, '')), name", touch=("updated_at",))
    pids = {(owner, name): pid for pid, owner, name in
            conn.execute("SELECT id, owner, name FROM products")}
    _upsert(conn, "product_prefixes", ("product_id", "prefix"), ("destination",),
            [(pids[(p["owner"], p["name"])], x["prefix"], x["destination"])
             for p in ds.products for x in p.children["prefixes"]])

    rp_rows = []
    for rp in ds.reseller_products:
        margin = world.accounts[rp["reseller"]].reseller_type == "margin"
        setup_fee = rp["setup_fee"] if rp["setup_fee"] is not None or not margin else 0
        rp_rows.append((rp["reseller"], pids[rp["_product"]], rp["opt_in"], rp["price"],
                        setup_fee, rp["display_in_my_products"]))
    _upsert(conn, "reseller_products", ("reseller", "product_id"),
            ("opt_in", "price", "setup_fee", "display_in_my_products"), rp_rows)

    _upsert(conn, "dids", ("number",), ("account",),
            [(d["number"], d["account"]) for d in ds.dids])

    new_orders = [o for o in ds.orders if o["id"] not in world.orders]
    _upsert(conn, "orders", ("id",), (),
            [_order_row(o, world, pids, now) for o in new_orders],
            insert_only=("account", "product_id", "ordered_at", "period_no", "period_start",
                         "period_end", "used_seconds", "status", "ended_at", "end_reason",
                         "created_at", "updated_at"))

    new_openings = [a for a in ds.accounts if a["number"] not in world.openings]
    _upsert(conn, "ledger_entries", ("id",), (),
            [(f"opening:{a['number']}", a["number"], a["balance"], "opening", "import", now)
             for a in new_openings],
            insert_only=("account", "amount", "kind", "ref", "created_at"))
    return {
        "currency": ds.currency,
        "rate_groups": len(ds.rate_groups),
        "rates": len(rates),
        "blocked_prefixes": len(blocked),
        "accounts": len(ds.accounts),
        "dids": len(ds.dids),
        "products": len(ds.products),
        "product_prefixes": sum(len(p.children["prefixes"]) for p in ds.products),
        "reseller_products": len(ds.reseller_products),
        "orders": len(ds.orders),
        "orders_created": len(new_orders),
        "opening_entries_created": len(new_openings),
    }


def _order_row(o: Record, world: _World, pids: dict, now: datetime) -> tuple:
    product = world.products[o["_product"]]
    at = o["ordered_at"]
    n = period_index_at(product.billing_type, product.billing_days, at, now)
    status, ended_at, end_reason = "active", None, None
    if n is None:  # a one-time package whose only period is over: imported as released
        n = 0
        status, end_reason = "released", "expired"
    start, end = period_bounds(product.billing_type, product.billing_days, at, n)
    if status == "released":
        ended_at = end
    return (o["id"], o["account"], pids[o["_product"]], at, n, start, end, o["used_seconds"],
            status, ended_at, end_reason, now, now)


# --- entry points ----------------------------------------------------------------------------

def import_dataset(
    conn: psycopg.Connection, data: Any, *, source: str = "dataset",
    now: datetime | None = None,
) -> dict:
    """Validate and import a loaded JSON document in one transaction; returns counts.

    Raises InputError listing every problem found (each under its JSON path), with nothing
    written. `now` (default: the clock) places orders in their current period.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    problems = Problems(source)
    ds = parse_dataset(data, problems)
    with conn.transaction():
        acquire_import_lock(conn)
        world = _load_world(conn, ds)
        _check_references(ds, world, now, problems)
        problems.raise_if_any()
        return _write(conn, ds, world, now)


class _Object(dict):
    """A JSON object that remembers keys given twice (json keeps only the last one)."""

    duplicates: tuple[str, ...] = ()


def _add(seen: set[str], key: str) -> bool:
    seen.add(key)
    return False


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.duplicates = tuple(k for k, _ in pairs if k in seen or _add(seen, k))
    return obj


def load_dataset_file(path: str | os.PathLike[str]) -> Any:
    """Read a dataset file as JSON (numbers with a fraction read exactly, as Decimal)."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8-sig") as f:
            return json.load(f, parse_float=Decimal, object_pairs_hook=_object_pairs)
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
        ) from None


def import_dataset_file(
    conn: psycopg.Connection, path: str | os.PathLike[str], *, now: datetime | None = None,
) -> dict:
    """`loader import FILE`: read and import a dataset file (see `import_dataset`)."""
    return import_dataset(conn, load_dataset_file(path), source=os.fspath(path), now=now)
