"""A small reseller world for the snapshot, chain and sync tests, imported as a dataset.

    admin
    ├── R1 1000000001 margin reseller, pays "wholesale" (admin's)
    │   └── R2 1000000002 commission reseller, pays "r1-sell" (R1's, markup 10 %)
    │       ├── C1 2000000001 postpaid customer, credit 20.00, pays "r2-sell" (R2's), 2 channels
    │       ├── C2 2000000002 suspended customer
    │       └── D  2000000005 deleted customer
    ├── C3 2000000003 prepaid customer directly under admin, pays "wholesale"
    └── R3 1000000003 suspended margin reseller
        └── C4 2000000004 active customer, pays "r3-sell"

Rates (price per minute; prefix "" is the catch-all, written "^.*" in the dataset):

    wholesale  out  "" 0.50 World, 44 0.010, 447 0.040, 49 0.012; in 1 0.002, 44 0.001
               blocked 4490
    r1-sell    out  1 0.008, 44 0.020, 447 0.060 (+0.01 connect, init 30, inc 6); in "" 0.004
               blocked 4471
    r2-sell    out  1 0.015, 44 0.030, 447 0.080, 4420 0.025, 49 0.050; in 1555 0.010, 44 0.006
    r3-sell    out  44 0.090

Orders placed for C1 (at NOW = 2026-01-10 12:00 UTC, 30-day recurring periods):

    o-uk-b   UK 100 (44, outbound, 100 min)          period Dec 20 - Jan 19, 600 s used
    o-uk-a   UK 100                                  period Jan 01 - Jan 31
    o-mob    UK Mobile 50 (447, both, 50 min)        period Jan 05 - Feb 04
    o-in     Inbound 10 (1555, inbound, 10 min)      period Jan 02 - Feb 01
    o-old    Old (44, inactive product)              period Jan 02 - Feb 01
    o-zero   Zero (44, 0 free minutes)               period Jan 02 - Feb 01
and for R2:
    o-r2     UK 100                                  period Jan 03 - Feb 02
"""

from __future__ import annotations

from datetime import UTC, datetime

R1, R2, R3 = "1000000001", "1000000002", "1000000003"
C1, C2, C3, C4, D = "2000000001", "2000000002", "2000000003", "2000000004", "2000000005"
DID_C1, DID_C3 = "15551230000", "33140000000"

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
NOW_EPOCH = NOW.timestamp()


def epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _rate(prefix: str, price: str, direction: str = "outbound", dest: str = "", **kw) -> dict:
    return {"prefix": prefix, "price_per_min": price, "direction": direction,
            "destination": dest, **kw}


def _product(name: str, minutes: int, applicable: str, prefixes: list[str],
             status: str = "active") -> dict:
    return {"name": name, "owner": "admin", "free_minutes": minutes, "status": status,
            "applicable_for": applicable, "billing_type": "recurring", "billing_days": 30,
            "price": "5.00", "buy_cost": "3.00",
            "prefixes": [{"prefix": p} for p in prefixes]}


def _account(number: str, parent: str | None, kind: str, group: str, **kw) -> dict:
    acct = {"number": number, "parent": parent, "kind": kind, "rate_group": group, **kw}
    if kind == "reseller":
        acct.setdefault("reseller_type", "margin")
    return acct


def _order(oid: str, account: str, product: str, at: str, used: int = 0) -> dict:
    return {"id": oid, "account": account, "product": product, "ordered_at": at,
            "used_seconds": used}


PRODUCTS = ("UK 100", "UK Mobile 50", "Inbound 10", "Old", "Zero")

WORLD = {
    "currency": "USD",
    "rate_groups": [
        {"name": "wholesale", "owner": "admin", "rates": [
            _rate("^.*", "0.50", dest="World"), _rate("44", "0.010", dest="United Kingdom"),
            _rate("447", "0.040", dest="UK Mobile"), _rate("49", "0.012", dest="Germany"),
            _rate("1", "0.002", "inbound", "North America DID"),
            _rate("44", "0.001", "inbound", "UK DID"),
        ], "blocked_prefixes": ["4490"]},
        {"name": "r1-sell", "owner": R1, "markup_percent": "10", "rates": [
            _rate("1", "0.008", dest="North America"),
            _rate("44", "0.020", dest="United Kingdom"),
            _rate("447", "0.060", dest="UK Mobile", connect_fee="0.01", init_inc=30, inc=6),
            _rate("^.*", "0.004", "inbound", "Any DID"),
        ], "blocked_prefixes": ["4471"]},
        {"name": "r2-sell", "owner": R2, "rates": [
            _rate("1", "0.015", dest="North America"),
            _rate("44", "0.030", dest="United Kingdom"),
            _rate("447", "0.080", dest="UK Mobile"),
            _rate("4420", "0.025", dest="London"),
            _rate("49", "0.050", dest="Germany"),
            _rate("1555", "0.010", "inbound", "US DID"),
            _rate("44", "0.006", "inbound", "UK DID"),
        ]},
        {"name": "r3-sell", "owner": R3, "rates": [_rate("44", "0.090")]},
    ],
    "accounts": [
        _account(R1, None, "reseller", "wholesale", balance="100.00"),
        _account(R2, R1, "reseller", "r1-sell", reseller_type="commission", balance="50.00"),
        _account(C1, R2, "customer", "r2-sell", billing="postpaid", credit_limit="20.00",
                 max_channels=2, balance="10.00"),
        _account(C2, R2, "customer", "r2-sell", status="suspended"),
        _account(D, R2, "customer", "r2-sell", status="deleted"),
        _account(C3, None, "customer", "wholesale", balance="5.00"),
        _account(R3, None, "reseller", "wholesale", status="suspended"),
        _account(C4, R3, "customer", "r3-sell"),
    ],
    "dids": [{"number": DID_C1, "account": C1}, {"number": DID_C3, "account": C3}],
    "products": [
        _product("UK 100", 100, "outbound", ["44"]),
        _product("UK Mobile 50", 50, "both", ["447"]),
        _product("Inbound 10", 10, "inbound", ["1555"]),
        _product("Old", 60, "outbound", ["44"], status="inactive"),
        _product("Zero", 0, "outbound", ["44"]),
    ],
    "reseller_products": [
        *({"reseller": R1, "product": p, "price": "6.00"} for p in PRODUCTS),
        *({"reseller": R2, "product": p} for p in PRODUCTS),
    ],
    "orders": [
        _order("o-uk-b", C1, "UK 100", "2025-12-20T00:00:00Z", used=600),
        _order("o-uk-a", C1, "UK 100", "2026-01-01T00:00:00Z"),
        _order("o-mob", C1, "UK Mobile 50", "2026-01-05T00:00:00Z"),
        _order("o-in", C1, "Inbound 10", "2026-01-02T00:00:00Z"),
        _order("o-old", C1, "Old", "2026-01-02T00:00:00Z"),
        _order("o-zero", C1, "Zero", "2026-01-02T00:00:00Z"),
        _order("o-r2", R2, "UK 100", "2026-01-03T00:00:00Z"),
    ],
}


def import_world(conn) -> None:
    """Import WORLD into a migrated database (as of NOW)."""
    from loader.dataset import import_dataset

    import_dataset(conn, WORLD, source="rating_world", now=NOW)
