"""ASTPP packages -> this project's products, opt-ins and orders (part of the mapping).

`products` with category 1 are packages; `reseller_products` rows of a reseller that is not
the owner are its opt-ins; `order_items` (with `orders.order_date`) are orders, and the
current `counters` row gives the seconds already used. Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from loader.astpp.model import (
    ADMIN,
    APPLICABLE_FOR,
    BILLING_TYPES,
    PACKAGE_CATEGORY,
    AccountPlan,
    Known,
    amount,
    flag_yes,
    iso,
    whole,
)
from loader.astpp.source import AstppData
from rater.prefixes import normalize_prefix


class PackageMapping:
    """The package half of the mapper; the account half (`mapping._Mapper`) fills the
    attributes declared here before these methods run."""

    data: AstppData
    known: Known
    now: datetime
    numbers: dict[int, str]
    kinds: dict[str, str]
    rtypes: dict[str, str | None]
    parents: dict[str, str | None]
    plans: dict[str, AccountPlan]
    packages: dict[int, dict[str, Any]]
    product_key: dict[int, tuple[str, str]]
    opt_ins: set[tuple[str, int]]

    def skip(self, table: str, row_id: Any, reason: str) -> None:
        raise NotImplementedError

    def owner(self, reseller_id: Any) -> str | None:
        raise NotImplementedError

    def products(self) -> list[dict[str, Any]]:
        names: dict[tuple[str, str], int] = {}
        rows = []
        for r in self.data["products"]:
            if int(r["product_category"] or 0) != PACKAGE_CATEGORY:
                continue  # refills, DIDs, subscriptions: not packages (reported once below)
            owner = self.owner(r["reseller_id"])
            if owner is None:
                self.skip("products", r["id"], f"{r['name']!r}: its owner (ASTPP id "
                          f"{r['reseller_id']}) is not carried")
                continue
            name = str(r["name"] or "").strip() or f"product {r['id']}"
            names[(owner, name)] = names.get((owner, name), 0) + 1
            rows.append((r, owner, name))
        others = [r["id"] for r in self.data["products"]
                  if int(r["product_category"] or 0) != PACKAGE_CATEGORY]
        for pid in others:
            self.skip("products", pid, "not a package (refill, DID or subscription product): "
                      "only packages rate calls")
        patterns: dict[int, list[dict[str, Any]]] = {}
        for p in self.data["package_patterns"]:
            patterns.setdefault(int(p["product_id"]), []).append(p)
        out = []
        for r, owner, name in rows:
            if names[(owner, name)] > 1:
                name = f"{name} #{r['id']}"
            billing_type = BILLING_TYPES.get(int(r["billing_type"] or 0))
            applicable = APPLICABLE_FOR.get(int(r["applicable_for"] or 0))
            if billing_type is None or applicable is None:
                self.skip("products", r["id"], f"{name!r}: billing_type "
                          f"{r['billing_type']} or applicable_for {r['applicable_for']} "
                          "unknown")
                continue
            deleted = int(r["is_deleted"] or 0) == 1
            if deleted:
                self.skip("products", r["id"], f"{name!r} is deleted in ASTPP: carried as "
                          "inactive (orders of it are not carried)")
            prefixes, seen = [], set()
            for p in patterns.get(int(r["id"]), []):
                try:
                    prefix = normalize_prefix(str(p["patterns"] or ""))
                except ValueError as exc:
                    self.skip("package_patterns", p["id"], str(exc))
                    continue
                if prefix in seen:
                    self.skip("package_patterns", p["id"], f"{p['patterns']!r} repeats a "
                              "prefix of this package")
                    continue
                seen.add(prefix)
                prefixes.append({"prefix": prefix, "destination": str(p["destination"] or "")})
            rec = {
                "name": name, "owner": owner, "category": "package",
                "description": str(r["description"] or ""),
                "status": "active" if int(r["status"] or 0) == 0 and not deleted else "inactive",
                "buy_cost": amount(r["buy_cost"]), "price": amount(r["price"]),
                "setup_fee": amount(r["setup_fee"]),
                "commission_percent": amount(max(Decimal(r["commission"] or 0), Decimal(0))),
                "billing_type": billing_type,
                "billing_days": whole(r["billing_days"], 1),
                "free_minutes": whole(r["free_minutes"]), "applicable_for": applicable,
                "can_be_purchased": flag_yes(r["can_purchase"]),
                "reseller_can_resell": flag_yes(r["can_resell"]),
                "release_if_no_balance": flag_yes(r["release_no_balance"]),
                "prefixes": prefixes,
            }
            out.append(rec)
            self.packages[int(r["id"])] = rec
            self.product_key[int(r["id"])] = (owner, name)
        return out

    def reseller_products(self) -> list[dict[str, Any]]:
        out = []
        for r in self.data["reseller_products"]:
            if int(r["is_owner"] or 0) == 0:
                continue  # the owner's own listing of its product, not an opt-in
            product = self.packages.get(int(r["product_id"] or 0))
            reseller = self.numbers.get(int(r["account_id"] or 0))
            if product is None:
                self.skip("reseller_products", r["id"], f"product id {r['product_id']} is not "
                          "a carried package")
                continue
            if reseller is None or self.kinds.get(reseller) != "reseller" \
                    or reseller not in self.plans:
                self.skip("reseller_products", r["id"], f"account id {r['account_id']} is "
                          "not a carried reseller")
                continue
            opt_in = flag_yes(r["is_optin"]) and int(r["status"] or 0) == 0
            if opt_in and not product["reseller_can_resell"]:
                self.skip("reseller_products", r["id"], f"{product['name']!r} may not be "
                          "resold (can_resell is no)")
                continue
            rec: dict[str, Any] = {"reseller": reseller, "product": product["name"],
                                   "product_owner": product["owner"], "opt_in": opt_in}
            if self.rtypes[reseller] == "margin":
                rec["price"] = amount(r["price"])
                rec["setup_fee"] = amount(r["setup_fee"])
            if opt_in:
                self.opt_ins.add((reseller, int(r["product_id"])))
            out.append(rec)
        return out

    def orders(self) -> list[dict[str, Any]]:
        used: dict[tuple[int, int], int] = {}
        for c in self.data["counters"]:
            if int(c["status"] or 0) == 1:  # 1: the counter of the current period
                key = (int(c["accountid"] or 0), int(c["package_id"] or 0))
                used[key] = max(used.get(key, 0), whole(c["used_seconds"]))
        out = []
        for r in self.data["order_items"]:
            pid = int(r["product_id"] or 0)
            if pid not in self.packages and not any(
                    int(p["id"]) == pid and int(p["product_category"] or 0) != PACKAGE_CATEGORY
                    for p in self.data["products"]):
                self.skip("order_items", r["id"], f"product id {pid} is not carried")
                continue
            if pid not in self.packages:
                continue  # not a package: its product is reported
            product = self.packages[pid]
            account = self.numbers.get(int(r["accountid"] or 0))
            ended = iso(r["termination_date"])
            if int(r["is_terminated"] or 0) == 1 or (
                    ended is not None and r["termination_date"].replace(tzinfo=UTC) < self.now):
                self.skip("order_items", r["id"], "terminated in ASTPP")
                continue
            if account is None or account not in self.plans:
                self.skip("order_items", r["id"], f"its account (ASTPP id {r['accountid']}) "
                          "is not carried")
                continue
            if product["status"] != "active":
                self.skip("order_items", r["id"], f"{product['name']!r} is not active")
                continue
            at = iso(r["order_date"])
            if at is None or r["order_date"].replace(tzinfo=UTC) > self.now:
                self.skip("order_items", r["id"], f"order date {r['order_date']} is missing "
                          "or in the future")
                continue
            missing = self._missing_opt_in(account, product, pid)
            if missing:
                self.skip("order_items", r["id"], f"reseller {missing} sells {product['name']!r}"
                          " to this account without having opted in to it")
                continue
            oid = f"astpp-{r['id']}"
            seconds = used.get((int(r["accountid"]), int(r["order_id"] or 0)), 0)
            cap = product["free_minutes"] * 60
            if oid in self.known.orders:
                at_known, seconds = self.known.orders[oid]
                at = at_known.astimezone(UTC).isoformat().replace("+00:00", "Z")
            elif seconds > cap:
                self.skip("counters", f"order {r['order_id']}", f"{seconds} used seconds are "
                          f"more than the package's {cap}: carried as {cap}")
                seconds = cap
            out.append({"id": oid, "account": account, "product": product["name"],
                        "product_owner": product["owner"], "ordered_at": at,
                        "used_seconds": seconds})
            self.plans[account].orders.append(
                f"{oid} {product['name']!r}, {seconds} of {cap} free seconds used")
        return out

    def _missing_opt_in(self, account: str, product: dict[str, Any], pid: int) -> str | None:
        """The first reseller between the buyer and the product's owner not opted in."""
        level = self.parents.get(account)
        while level is not None and level != product["owner"]:
            if (level, pid) not in self.opt_ins:
                return level
            level = self.parents.get(level)
        if level is None and product["owner"] != ADMIN:
            return f"(owner {product['owner']} is not above the buyer)"
        return None
