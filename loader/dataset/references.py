"""Step 2 of an import: references checked against the file overlaid on the database
(parents, owners, rate groups, products, opt-ins, cycles), and the refusals that protect
live money state on a re-import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from loader.dataset.shape import (
    Dataset,
    Record,
)
from loader.dataset.values import (
    ADMIN,
    UNSET,
    Problems,
)
from rater.money import format_micros

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
class World:
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


def load_world(conn: psycopg.Connection, ds: Dataset) -> World:
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
    world = World(groups, dict(db_accounts), products, opt_ins, db_accounts,
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


def _check_reseller(world: World, number: str, where: str, role: str,
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


def check_references(ds: Dataset, world: World, now: datetime, problems: Problems) -> None:
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


def _check_accounts(ds: Dataset, world: World, problems: Problems) -> None:
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


def _check_cycles(ds: Dataset, world: World, problems: Problems) -> None:
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
    world: World, rec: Record, chain: list[str | None], buyer: str, problems: Problems,
) -> tuple[str | None, str] | None:
    """The product a record names: owned by an account up `chain` (nearest first)."""
    name = rec["product"]
    wanted = rec["product_owner"]
    for owner in chain:
        if wanted is not UNSET and owner != wanted:
            continue
        if (owner, name) in world.products:
            return owner, name
    owners = "admin or one of its parents" if wanted is UNSET else _who(wanted)
    problems.at(f"{rec.path}.product",
                f"no product {name!r} visible to {buyer} (owned by {owners})")
    return None


def _check_reseller_products(ds: Dataset, world: World, problems: Problems) -> None:
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


def _check_orders(ds: Dataset, world: World, now: datetime, problems: Problems) -> None:
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
