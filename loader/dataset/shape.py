"""Step 1 of an import: the shape of every record (types, ranges, unknown fields,
duplicates), with no database; every problem collected under its JSON path."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from loader.dataset.values import (
    REQUIRED,
    UNSET,
    Problems,
    _account_number,
    _amount,
    _blocked_prefix,
    _currency,
    _did_number,
    _flag,
    _list,
    _name,
    _nullable,
    _one_of,
    _owner,
    _percent,
    _prefix,
    _show,
    _signed_amount,
    _text,
    _time,
    _whole,
)
from loader.ratedeck import (
    DIRECTIONS,
    max_price_micros,
)
from rater.errors import InputError
from rater.money import format_micros

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
            rec.values["product_owner"] = UNSET
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
