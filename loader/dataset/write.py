"""Step 3 of an import: upserts keyed on natural keys, in one transaction, so importing
the same file twice gives the same state. Nothing is ever deleted."""

from __future__ import annotations

from datetime import datetime

import psycopg

from loader.dataset.references import (
    World,
)
from loader.dataset.shape import (
    Dataset,
    Record,
)
from loader.ratedeck import (
    copy_rates,
    create_staging,
    merge_staged_rates,
)
from rater.packages.periods import period_bounds, period_index_at

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


def _depth(world: World, number: str) -> int:
    return len(world.ancestors(number))


def write_dataset(conn: psycopg.Connection, ds: Dataset, world: World, now: datetime) -> dict:
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


def _order_row(o: Record, world: World, pids: dict, now: datetime) -> tuple:
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
