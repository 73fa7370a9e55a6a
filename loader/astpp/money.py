"""Money moves one way: ASTPP -> here, each ASTPP money row at most once.

ASTPP records every change of a balance made in its portal as an `invoice_details` row
(`credit` raises what the account has, `debit` lowers it: a refill, a voucher, a manual
post-charge, an invoice payment, a commission, their taxes). The rule:

- an account seen for the first time is seeded from ASTPP's balance (`loader.dataset` writes
  its opening ledger entry); every money row ASTPP has for it at that instant is already in
  that balance, so each is recorded here as ``opening`` and never applied. An account that
  was already here (a `loader import` of a file) keeps its opening balance, and its ASTPP
  rows of that instant are likewise not applied: only later rows are;
- a money row that appears later becomes one `balance_adjustments` row with ref
  ``astpp:invoice_details:<id>`` (unique), which `loader sync` applies to the live balance
  exactly once (`loader.adjustments`); it is recorded as ``adjustment``;
- rows of package or DID orders (`order_item_id` set) are recorded as ``not_carried``:
  this daemon charges the packages it renews itself, so carrying ASTPP's charges for them
  would charge twice.

A balance is never overwritten: ASTPP's `accounts.balance` is read only to seed. The record
lives in `astpp_money` (created here, beside the project's schema), keyed by the ASTPP row id.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import psycopg

from loader.astpp.mapping import Mapping, amount, micros
from loader.astpp.source import AstppData
from rater.db import one_row

STATE_DDL = """
CREATE TABLE IF NOT EXISTS astpp_money (
    id              bigint PRIMARY KEY,          -- ASTPP invoice_details.id
    account         text NOT NULL,
    amount          bigint NOT NULL,             -- micro-units, credit - debit
    disposition     text NOT NULL CHECK (disposition IN
                        ('opening', 'adjustment', 'not_carried', 'zero')),
    charge_type     text NOT NULL DEFAULT '',
    seen_at         timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS astpp_accounts (
    number          text PRIMARY KEY,            -- first carried by a sync at seen_at
    seen_at         timestamptz NOT NULL
)"""

REF_PREFIX = "astpp:invoice_details:"


@dataclass(frozen=True)
class MoneyRow:
    id: int
    account: str
    amount_micros: int
    charge_type: str
    description: str
    disposition: str


@dataclass
class MoneyPlan:
    """Every ASTPP money row not yet recorded here, with what the sync does with it."""

    rows: list[MoneyRow] = field(default_factory=list)
    first_seen: list[str] = field(default_factory=list)  # accounts carried for the first time

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.disposition for r in self.rows))


def ensure_state(conn: psycopg.Connection) -> None:
    conn.execute(STATE_DDL)


def plan_money(conn: psycopg.Connection, data: AstppData, mapping: Mapping) -> MoneyPlan:
    """Classify the money rows not yet recorded (reads only)."""
    exists = one_row(conn.execute("SELECT to_regclass('astpp_accounts') IS NOT NULL"))[0]
    recorded: set[int] = set()
    seen: set[str] = set()
    if exists:
        recorded = {r[0] for r in conn.execute("SELECT id FROM astpp_money")}
        seen = {r[0] for r in conn.execute("SELECT number FROM astpp_accounts")}
    seeding = {p.number for p in mapping.plans} - seen
    plan = MoneyPlan(first_seen=sorted(seeding))
    for r in data["invoice_details"]:
        account = mapping.numbers.get(int(r["accountid"] or 0))
        if account is None or account not in mapping.billing or int(r["id"]) in recorded:
            continue
        value = micros(r["credit"]) - micros(r["debit"])
        if account in seeding:
            disposition = "opening"
        elif int(r["order_item_id"] or 0) != 0:
            disposition = "not_carried"
        elif value == 0:
            disposition = "zero"
        else:
            disposition = "adjustment"
        plan.rows.append(MoneyRow(int(r["id"]), account, value, str(r["charge_type"] or ""),
                                  str(r["description"] or ""), disposition))
    return plan


def record_money(conn: psycopg.Connection, plan: MoneyPlan, now: datetime) -> int:
    """Write the plan in the caller's transaction: one balance adjustment per new money row
    (ref unique: a replay inserts nothing) and one `astpp_money` row each. Returns how many
    adjustments were queued."""
    queued = 0
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO astpp_accounts (number, seen_at) VALUES (%s, %s)"
                        " ON CONFLICT (number) DO NOTHING",
                        [(number, now) for number in plan.first_seen])
        for row in plan.rows:
            if row.disposition == "adjustment":
                cur.execute(
                    "INSERT INTO balance_adjustments (account, amount, ref, note, created_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (ref) DO NOTHING",
                    (row.account, row.amount_micros, f"{REF_PREFIX}{row.id}",
                     f"ASTPP {row.charge_type}: {row.description}"[:500], now))
                queued += cur.rowcount
            cur.execute(
                "INSERT INTO astpp_money (id, account, amount, disposition, charge_type, seen_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (row.id, row.account, row.amount_micros, row.disposition, row.charge_type, now))
    return queued


def describe_row(row: MoneyRow) -> str:
    what = {"opening": "already in the opening balance",
            "adjustment": "to apply as an adjustment",
            "not_carried": "not carried (a package or DID order charge: this daemon charges "
                           "the packages it renews itself)",
            "zero": "nothing to apply (0)"}[row.disposition]
    value = amount(Decimal(row.amount_micros) / 1_000_000)
    return f"invoice_details #{row.id} {row.account} {row.charge_type} {value}: {what}"
