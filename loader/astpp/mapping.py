"""ASTPP 6 rows -> this project's dataset document (spec: `loader import`). Pure: no I/O.

Flag meanings come from ASTPP's schema comments and portal forms (several are inverted, 0
meaning yes): README, "Syncing from ASTPP", has the table. Every row that cannot be carried
is listed with its reason instead of failing the whole sync; the dataset validation of
`loader.dataset` still checks what is carried.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from loader.astpp.model import (
    ADMIN,
    CUSTOMER,
    NOT_CARRIED_TYPES,
    RESELLER,
    AccountPlan,
    Known,
    Mapping,
    Unmapped,
    amount,
    flag_yes,
    iso,
    micros,
    negate,
    whole,
)
from loader.astpp.packages import PackageMapping
from loader.astpp.source import AstppData
from rater.prefixes import normalize_prefix

__all__ = ["AccountPlan", "Known", "Mapping", "Unmapped", "amount", "iso", "map_astpp",
           "micros"]


class _Mapper(PackageMapping):
    def __init__(self, data: AstppData, known: Known, now: datetime) -> None:
        self.data, self.known, self.now = data, known, now
        self.unmapped: list[Unmapped] = []
        self.numbers: dict[int, str] = {}         # ASTPP account id -> number
        self.kinds: dict[str, str] = {}           # number -> reseller | customer
        self.rtypes: dict[str, str | None] = {}
        self.parents: dict[str, str | None] = {}
        self.groups: dict[int, dict[str, Any]] = {}   # pricelist id -> rate group record
        self.group_of: dict[str, int] = {}        # number -> pricelist id
        self.packages: dict[int, dict[str, Any]] = {}
        self.product_key: dict[int, tuple[str, str]] = {}
        self.opt_ins: set[tuple[str, int]] = set()
        self.plans: dict[str, AccountPlan] = {}
        self.billing: dict[str, str] = {}

    def skip(self, table: str, row_id: Any, reason: str) -> None:
        self.unmapped.append(Unmapped(table, row_id, reason))

    def owner(self, reseller_id: Any) -> str | None:
        """Number of the owning reseller, "admin" for 0, None when not carried."""
        rid = int(reseller_id or 0)
        return ADMIN if rid == 0 else self.numbers.get(rid)

    # --- accounts ----------------------------------------------------------------------

    def accounts(self) -> list[dict[str, Any]]:
        rows = {int(r["id"]): r for r in self.data["accounts"]}
        for r in rows.values():
            kind_code = int(r["type"] if r["type"] is not None else 0)
            number = str(r["number"] or "")
            if kind_code in NOT_CARRIED_TYPES:
                self.skip("accounts", r["id"], f"{number or 'no number'} is "
                          f"{NOT_CARRIED_TYPES[kind_code]}")
                continue
            if kind_code not in (CUSTOMER, RESELLER):
                self.skip("accounts", r["id"], f"unknown account type {kind_code}")
                continue
            if not (len(number) == 10 and number.isdigit() and number.isascii()):
                self.skip("accounts", r["id"], f"number {number!r} is not 10 digits, the "
                          "account number form this project uses")
                continue
            self.numbers[int(r["id"])] = number
        # Parents first: walk each account's chain; a missing or non-reseller parent drops it.
        order: list[dict[str, Any]] = []
        state: dict[int, bool] = {}

        def resolve(aid: int, seen: tuple[int, ...] = ()) -> bool:
            if aid in state:
                return state[aid]
            r = rows[aid]
            parent_id = int(r["reseller_id"] or 0)
            ok = True
            if parent_id:
                if parent_id in seen or parent_id not in rows:
                    self.skip("accounts", aid, f"its reseller (ASTPP id {parent_id}) "
                              "does not exist or forms a cycle")
                    ok = False
                elif parent_id not in self.numbers or not resolve(parent_id, (*seen, aid)):
                    self.skip("accounts", aid, f"its reseller (ASTPP id {parent_id}) is "
                              "not carried")
                    ok = False
                elif int(rows[parent_id]["type"] or 0) != RESELLER:
                    self.skip("accounts", aid, f"its parent (ASTPP id {parent_id}) is not a "
                              "reseller")
                    ok = False
            state[aid] = ok
            if ok:
                order.append(r)
            else:
                self.numbers.pop(aid, None)
            return ok

        for aid in list(self.numbers):
            resolve(aid)
        for r in order:
            number = self.numbers[int(r["id"])]
            self.kinds[number] = "reseller" if int(r["type"] or 0) == RESELLER else "customer"
            self.rtypes[number] = (("margin" if flag_yes(r["is_distributor"]) else "commission")
                                   if self.kinds[number] == "reseller" else None)
            pid = int(r["reseller_id"] or 0)
            self.parents[number] = self.numbers[pid] if pid else None
        return order

    def account_records(self, order: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in order:
            number = self.numbers.get(int(r["id"]))
            if number is None:
                continue  # dropped with its reseller
            parent = self.parents[number]
            group_id = int(r["pricelist_id"] or 0)
            group = self.groups.get(group_id)
            if group is None:
                self.skip("accounts", r["id"], f"{number}: its pricelist (id {group_id}) is "
                          "not carried")
                self._drop(number, int(r["id"]))
                continue
            if group["owner"] != (parent or ADMIN):
                self.skip("accounts", r["id"],
                          f"{number}: pricelist {group['name']!r} belongs to {group['owner']}"
                          f", but the account's parent is {parent or ADMIN}: here an account "
                          "pays at a rate group its parent owns")
                self._drop(number, int(r["id"]))
                continue
            postpaid = int(r["posttoexternal"] or 0) == 1
            # ASTPP keeps a postpaid account's balance as what it owes (calls add to it);
            # here a balance is what the account has, so the sign flips.
            astpp_balance = amount(r["balance"])
            balance = negate(astpp_balance) if postpaid else astpp_balance
            seeded = number in self.known.openings
            if seeded:
                balance = amount(Decimal(self.known.openings[number]) / 1_000_000)
            status = ("deleted" if int(r["deleted"] or 0) == 1
                      else "active" if int(r["status"] or 0) == 0 else "suspended")
            credit = amount(r["credit_limit"]) if postpaid else "0"
            if Decimal(credit) < 0:
                self.skip("accounts", r["id"], f"{number}: negative credit limit {credit} "
                          "carried as 0")
                credit = "0"
            name = (r["company_name"] or
                    f"{r['first_name'] or ''} {r['last_name'] or ''}").strip()
            rec = {
                "number": number, "name": name, "parent": parent,
                "kind": self.kinds[number], "billing": "postpaid" if postpaid else "prepaid",
                "balance": balance, "credit_limit": credit, "rate_group": group["name"],
                "max_channels": whole(r["maxchannels"]), "status": status,
            }
            if self.rtypes[number]:
                rec["reseller_type"] = self.rtypes[number]
            out.append(rec)
            self.group_of[number] = group_id
            self.billing[number] = rec["billing"]
            self.plans[number] = AccountPlan(
                int(r["id"]), number, name, rec["kind"], self.rtypes[number], parent or ADMIN,
                rec["billing"], balance, not seeded, credit, status, rec["max_channels"],
                group["name"])
        return out

    def _drop(self, number: str, aid: int) -> None:
        """An account dropped after its children were resolved: drop them too."""
        self.numbers.pop(aid, None)
        for child, parent in list(self.parents.items()):
            if parent == number and child in self.numbers.values():
                cid = next(k for k, v in self.numbers.items() if v == child)
                self.skip("accounts", cid, f"{child}: its reseller {number} is not carried")
                self._drop(child, cid)

    # --- rate groups, rates, DIDs ----------------------------------------------------------

    def rate_groups(self) -> None:
        names: dict[str, int] = {}
        for r in self.data["pricelists"]:
            name = str(r["name"] or "").strip() or f"pricelist {r['id']}"
            names[name] = names.get(name, 0) + 1
        for r in self.data["pricelists"]:
            owner = self.owner(r["reseller_id"])
            if owner is None:
                self.skip("pricelists", r["id"], f"its owner (ASTPP id {r['reseller_id']}) is "
                          "not carried")
                continue
            name = str(r["name"] or "").strip() or f"pricelist {r['id']}"
            if names[name] > 1:
                name = f"{name} #{r['id']}"
            try:
                markup = Decimal(str(r["markup"] or "0").strip() or "0")
            except ArithmeticError:
                self.skip("pricelists", r["id"], f"markup {r['markup']!r} is not a number; "
                          "carried as 0")
                markup = Decimal(0)
            status = int(r["status"] or 0)
            if status != 0:
                self.skip("pricelists", r["id"], f"{name!r} is "
                          f"{'inactive' if status == 1 else 'deleted'} in ASTPP: the group is "
                          "kept for its accounts but carries no rates, so their calls find no "
                          "rate, as in ASTPP")
            self.groups[int(r["id"])] = {
                "name": name, "owner": owner, "markup_percent": amount(max(markup, Decimal(0))),
                "rates": [], "_active": status == 0,
                "_init_inc": whole(r["initially_increment"]) or 1,
                "_inc": whole(r["inc"]) or 1,
            }

    def routes(self) -> None:
        seen: dict[tuple[int, str], Any] = {}
        for r in self.data["routes"]:
            group = self.groups.get(int(r["pricelist_id"] or 0))
            if int(r["accountid"] or 0) != 0:
                self.skip("routes", r["id"], f"{r['pattern']!r} is a rate for one account "
                          "(accountid); rates here belong to rate groups")
                continue
            if group is None:
                self.skip("routes", r["id"], f"{r['pattern']!r}: its pricelist "
                          f"(id {r['pricelist_id']}) is not carried")
                continue
            if int(r["status"] or 0) != 0:
                self.skip("routes", r["id"], f"{r['pattern']!r} is inactive")
                continue
            if not group["_active"]:
                continue  # reported once on the pricelist
            try:
                prefix = normalize_prefix(str(r["pattern"] or ""))
            except ValueError as exc:
                self.skip("routes", r["id"], str(exc))
                continue
            key = (int(r["pricelist_id"]), prefix)
            if key in seen:
                self.skip("routes", r["id"], f"{r['pattern']!r} is the same prefix as route "
                          f"#{seen[key]} of this pricelist")
                continue
            seen[key] = r["id"]
            group["rates"].append({
                "prefix": prefix, "destination": str(r["comment"] or ""),
                "call_type": str(r["call_type"] or ""), "direction": "outbound",
                "price_per_min": amount(r["cost"]), "connect_fee": amount(r["connectcost"]),
                "included_seconds": whole(r["includedseconds"]),
                # 0 means "the pricelist's default"; a pricelist's 0 means 1 (ASTPP's Lua)
                "init_inc": whole(r["init_inc"]) or group["_init_inc"],
                "inc": whole(r["inc"]) or group["_inc"],
            })

    def dids(self, accounts: Iterable[str]) -> list[dict[str, Any]]:
        carried = set(accounts)
        out: list[dict[str, Any]] = []
        seen: dict[str, Any] = {}
        for r in self.data["dids"]:
            number = str(r["number"] or "").lstrip("+")
            owner = self.numbers.get(int(r["accountid"] or 0))
            if int(r["accountid"] or 0) == 0:
                self.skip("dids", r["id"], f"{r['number']} is not assigned to an account")
                continue
            if owner is None or owner not in carried:
                self.skip("dids", r["id"], f"{r['number']}: its account (ASTPP id "
                          f"{r['accountid']}) is not carried")
                continue
            if int(r["status"] or 0) != 0:
                self.skip("dids", r["id"], f"{r['number']} is inactive")
                continue
            if not (number.isdigit() and number.isascii()):
                self.skip("dids", r["id"], f"{r['number']!r} is not a number of digits")
                continue
            if number in seen:
                self.skip("dids", r["id"], f"{number} duplicates DID #{seen[number]}")
                continue
            seen[number] = r["id"]
            out.append({"number": number, "account": owner})
            self.plans[owner].dids.append(number)
            inc = whole(r["inc"]) or 1
            rate = {
                "prefix": number, "destination": f"DID {number}", "call_type": "DID",
                "direction": "inbound", "price_per_min": amount(r["cost"]),
                "connect_fee": amount(r["connectcost"]),
                "included_seconds": whole(r["includedseconds"]),
                # ASTPP bills an initial block of 0 as ceil(d / inc) * inc: init_inc = inc
                "init_inc": whole(r["init_inc"]) or inc, "inc": inc,
            }
            # Every level of the owner's chain pays at its own group: ASTPP 6 keeps one
            # per-minute DID rate (its reseller_pricing table is gone), so each level gets it.
            level: str | None = owner
            while level is not None:
                group = self.groups[self.group_of[level]]
                if group["_active"] and not any(
                        x["direction"] == "inbound" and x["prefix"] == number
                        for x in group["rates"]):
                    group["rates"].append(dict(rate))
                level = self.parents.get(level)
        return out

    def blocked(self) -> None:
        for r in self.data["block_patterns"]:
            self.skip("block_patterns", r["id"], f"{r['blocked_patterns']!r} is blocked for "
                      "one account; here blocked prefixes belong to rate groups (add it to "
                      "the group with `loader import`)")


def map_astpp(data: AstppData, known: Known | None = None,
              now: datetime | None = None) -> Mapping:
    """Turn the ASTPP rows into a dataset document (see `loader.dataset`).

    `known` is what this project already holds: an account already seeded keeps its opening
    balance, an order already imported keeps its time and usage, since both are live here.
    """
    m = _Mapper(data, known or Known(), (now or datetime.now(UTC)).astimezone(UTC))
    order = m.accounts()
    m.rate_groups()
    m.routes()
    accounts = m.account_records(order)
    # Accounts dropped after their record was built (a reseller dropped late) go too.
    accounts = [a for a in accounts if a["number"] in m.numbers.values()]
    m.plans = {n: p for n, p in m.plans.items() if n in m.numbers.values()}
    dids = m.dids(a["number"] for a in accounts)
    products = m.products()
    rps = m.reseller_products()
    orders = m.orders()
    m.blocked()
    carried = set(m.numbers.values())
    groups = []
    for gid, g in m.groups.items():
        if g["owner"] != ADMIN and g["owner"] not in carried:
            m.skip("pricelists", gid, f"{g['name']!r}: its owner {g['owner']} is not carried")
            continue
        groups.append({k: v for k, v in g.items() if not k.startswith("_")})
    dataset = {"rate_groups": groups, "accounts": accounts, "dids": dids,
               "products": products, "reseller_products": rps, "orders": orders}
    return Mapping(dataset, dict(m.numbers), m.billing, list(m.plans.values()), m.unmapped,
                   [g["name"] for g in groups],
                   {g["name"]: gid for gid, g in m.groups.items()})
