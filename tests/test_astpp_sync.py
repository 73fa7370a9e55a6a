"""`loader sync-astpp` against a real MariaDB holding ASTPP 6's schema (tests/astpp/
schema.sql, verbatim from ASTPP) and data these tests write: two resellers (margin and
commission), customers under each and under admin, prefixes written `^44.*` and `4915`,
an inbound DID, a package with its counter, money rows. Every expected amount is worked
out by hand in the comment above it, with this project's rules (README, "Money rules").

The MariaDB server is private to the run (tests/mariadb_server.py), started once per
session; `RATER_TEST_MYSQL_URL` names an existing one instead.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from loader.astpp.run import run_sync_astpp, sync_astpp_once
from loader.cli import main as loader_main
from rater.cli import main as rater_main
from rater.errors import InputError

pymysql = pytest.importorskip("pymysql", reason="PyMySQL (a project dependency) is missing")

from tests.mariadb_server import MariaDBServer, find_binaries  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "tests" / "astpp" / "schema.sql"
# The tests' own clock, injected everywhere (--now): no test depends on the date.
NOW = datetime.now(UTC).replace(microsecond=0)
_counter = itertools.count()


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[str]:
    """URL of a MySQL/MariaDB server (database part empty) for the whole session."""
    url = os.environ.get("RATER_TEST_MYSQL_URL")
    if url:
        yield url
        return
    if find_binaries() is None:
        pytest.skip("no MariaDB server binaries (mariadbd/mysqld and mariadb-install-db): "
                    "install Debian's mariadb-server, or set RATER_TEST_MYSQL_URL")
    server = MariaDBServer().start()
    try:
        yield server.url("")
    finally:
        server.stop()


def _db_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def _connect(url: str):
    parts = urlsplit(url)
    return pymysql.connect(host=parts.hostname, port=parts.port or 3306,
                           user=parts.username or "root", password=parts.password or "",
                           database=parts.path.lstrip("/") or None, autocommit=True)


@pytest.fixture
def astpp_url(mysql_server: str) -> Iterator[str]:
    """A fresh database with ASTPP's tables, empty."""
    name = f"astpp_{os.getpid()}_{next(_counter)}"
    with _connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8")
    url = _db_url(mysql_server, name)
    with _connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")  # as ASTPP's own installation runs
        for statement in SCHEMA.read_text().split(";\n"):
            if statement.strip() and "CREATE TABLE" in statement:
                cur.execute(statement)
    yield url
    with _connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def sql(url: str, *statements: str, args: tuple = ()) -> None:
    """Run statements the way ASTPP's portal would (sql_mode '': missing NOT NULL columns
    take their implicit defaults)."""
    with _connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        for s in statements:
            cur.execute(s, args or None)


def ts(delta: timedelta = timedelta()) -> str:
    return (NOW + delta).strftime("%Y-%m-%d %H:%M:%S")


# ASTPP ids used below: accounts 2 R1, 3 R2, 4 C1, 5 C2, 6 C3; pricelists 1-4.
R1, R2, C1, C2, C3 = "1000000001", "1000000002", "2000000001", "2000000002", "2000000003"


def load_world(url: str) -> None:
    """The ASTPP data every test starts from."""
    sql(url,
        # pricelists: id, name, markup (%), initially_increment, inc, status, owner
        "INSERT INTO pricelists (id, name, markup, initially_increment, inc, status,"
        " reseller_id) VALUES"
        " (1, 'wholesale', '0', 1, 1, 0, 0),"
        " (2, 'admin-retail', '0', 0, 0, 0, 0),"
        " (3, 'r1-retail', '10', 30, 6, 0, 2),"
        " (4, 'r2-retail', '0', 0, 0, 0, 3)",
        # accounts: type -1 admin, 0 customer, 1 reseller, 3 provider; posttoexternal 1 =
        # postpaid (balance = what it owes); is_distributor 0 = margin (0 means yes)
        "INSERT INTO accounts (id, number, reseller_id, pricelist_id, status, deleted, type,"
        " posttoexternal, credit_limit, balance, maxchannels, is_distributor, first_name,"
        " company_name) VALUES"
        " (1, 'admin', 0, 1, 0, 0, -1, 0, 0, 0, 0, 1, 'Admin', ''),"
        f" (2, '{R1}', 0, 1, 0, 0, 1, 0, 0, 100.00000, 0, 0, '', 'Reseller One'),"
        f" (3, '{R2}', 0, 1, 0, 0, 1, 1, 50.00000, 5.00000, 0, 1, '', 'Reseller Two'),"
        f" (4, '{C1}', 2, 3, 0, 0, 0, 0, 0, 10.00000, 2, 1, 'Alice', ''),"
        f" (5, '{C2}', 3, 4, 0, 0, 0, 1, 20.00000, 0, 0, 1, 'Bob', ''),"
        f" (6, '{C3}', 0, 2, 1, 0, 0, 0, 0, 3.00000, 0, 1, 'Carol', ''),"
        " (7, '12345', 0, 2, 0, 0, 0, 0, 0, 1.00000, 0, 1, 'Short', ''),"
        " (8, '3000000001', 0, 1, 0, 0, 3, 0, 0, 0, 0, 1, 'Carrier', ''),"
        " (9, '2000000009', 2, 3, 0, 1, 0, 0, 0, 0, 0, 1, 'Gone', ''),"
        " (10, '2000000010', 2, 2, 0, 0, 0, 0, 0, 1.00000, 0, 1, 'Wrong group', '')",
        # routes: pattern, cost per minute, connect cost, included seconds, init_inc, inc
        # (0 = the pricelist's default), accountid (non-zero: one account's own rate)
        "INSERT INTO routes (id, pattern, comment, connectcost, includedseconds, cost,"
        " pricelist_id, inc, init_inc, call_type, accountid, status) VALUES"
        " (1, '^44.*', 'UK', 0, 0, 0.01000, 1, 0, 0, 'STANDARD', 0, 0),"
        " (2, '4915', 'DE mobile', 0, 0, 0.04000, 1, 0, 0, 'STANDARD', 0, 0),"
        " (3, '^1.*', 'US', 0, 0, 0.00400, 1, 0, 0, 'STANDARD', 0, 0),"
        " (4, '^44.*', 'UK', 0, 0, 0.02000, 2, 0, 0, 'STANDARD', 0, 0),"
        " (5, '^44.*', 'UK', 0.01000, 0, 0.02000, 3, 0, 0, 'STANDARD', 0, 0),"
        " (6, '^447.*', 'UK mobile', 0, 0, 0.10000, 3, 60, 60, 'MOBILE', 0, 0),"
        " (7, '1', 'US', 0, 10, 0.01000, 3, 0, 0, 'STANDARD', 0, 0),"
        " (8, '^44.*', 'UK', 0, 0, 0.03000, 4, 0, 0, 'STANDARD', 0, 0),"
        " (9, '^49.*', 'DE', 0, 0, 0.05000, 3, 0, 0, 'STANDARD', 4, 0),"
        " (10, '^33.*', 'FR', 0, 0, 0.05000, 3, 0, 0, 'STANDARD', 0, 1),"
        " (11, '^4x.*', 'typo', 0, 0, 0.05000, 3, 0, 0, 'STANDARD', 0, 0)",
        # an inbound DID of C1: 0.005/min, billed by the minute (initial block 0, inc 60)
        "INSERT INTO dids (id, number, accountid, parent_id, connectcost, includedseconds,"
        " cost, init_inc, inc, status) VALUES"
        " (1, '442071234567', 4, 2, 0, 0, 0.00500, 0, 60, 0),"
        " (2, '15550000000', 0, 0, 0, 0, 0.00500, 0, 60, 0)",
        # products: category 1 package, 3 refill; can_resell/can_purchase/release 0 = yes;
        # applicable_for 1 = outbound; billing_type 1 = recurring
        "INSERT INTO products (id, name, description, product_category, buy_cost, price,"
        " setup_fee, can_resell, commission, billing_type, billing_days, free_minutes,"
        " applicable_for, release_no_balance, can_purchase, status, is_deleted, reseller_id)"
        " VALUES"
        " (1, 'UK 100', '100 UK minutes', 1, 3, 5, 1, 0, 10, 1, 30, 100, 1, 0, 0, 0, 0, 0),"
        " (2, 'Refill 10', 'a refill', 3, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
        "INSERT INTO package_patterns (id, product_id, patterns, destination) VALUES"
        " (1, 1, '^44.*', 'UK')",
        # R1 opts in (is_owner 1 = not the owner, is_optin 0 = yes) at its own price
        "INSERT INTO reseller_products (id, product_id, account_id, reseller_id, status,"
        " price, setup_fee, commission, is_owner, is_optin) VALUES"
        " (1, 1, 2, 0, 0, 6.00000, 1.50000, 10, 1, 0)",
        f"INSERT INTO orders (id, order_id, order_date, accountid, reseller_id) VALUES"
        f" (1, 'ORD1', '{ts(-timedelta(days=5))}', 4, 2)",
        "INSERT INTO order_items (id, order_id, product_category, product_id, accountid,"
        " reseller_id, free_minutes, is_terminated, termination_date) VALUES"
        " (1, 1, 1, 1, 4, 2, 100, 0, '0000-00-00 00:00:00')",
        # C1 has used 5970 of the package's 6000 free seconds: 30 left
        "INSERT INTO counters (id, product_id, package_id, accountid, used_seconds, type,"
        " status) VALUES (1, 1, 1, 4, 5970, 0, 1)",
        "INSERT INTO block_patterns (id, accountid, blocked_patterns) VALUES (1, 4, '4490')",
        # C1's refill made before the first sync: already in its balance of 10
        "INSERT INTO invoice_details (id, accountid, order_item_id, charge_type, description,"
        f" debit, credit, created_date) VALUES (1, 4, 0, 'REFILL', 'refill', 0, 10,"
        f" '{ts(-timedelta(days=1))}')",
        )


@pytest.fixture
def env(cfg, database_url, redis_url, monkeypatch):
    monkeypatch.setenv("RATER_DATABASE_URL", database_url)
    monkeypatch.setenv("RATER_REDIS_URL", redis_url)
    monkeypatch.chdir(REPO)
    return cfg


@pytest.fixture
def world(env, astpp_url):
    load_world(astpp_url)
    return astpp_url


def sync(url: str, *extra: str) -> None:
    assert loader_main(["sync-astpp", "--from", url, "--now", NOW.isoformat(), *extra]) == 0


def quote(capsys, account: str, destination: str, duration: int, *extra: str) -> dict:
    capsys.readouterr()
    assert rater_main(["quote", "--account", account, "--destination", destination,
                       "--duration", str(duration), "--now", NOW.isoformat(), *extra,
                       "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def balance(capsys, account: str) -> int:
    capsys.readouterr()
    assert rater_main(["balance", account, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["balance_micros"]


def costs(q: dict) -> list[tuple]:
    return [(lv["account"], lv["prefix"], lv["charged_seconds"], lv["free_seconds"],
             lv["cost_micros"]) for lv in q["levels"]]


# --- mapping, validation and publication ------------------------------------------------------

def test_margin_reseller_chain_with_a_package_quotes_by_hand(world, capsys):
    sync(world)
    q = quote(capsys, C1, "447700900123", 65)
    assert q["allowed"] is True
    # C1 at r1-retail, route ^447.* 0.10/min with init 60 inc 60, markup 10 %: 65 s -> 120
    # charged; the UK 100 package (prefix 44) has 30 s left: 90 paid s at 0.11/min = 0.165.
    # R1 at wholesale, ^44.* 0.01/min per second: 65 s -> 0.0108333.. -> 0.010833.
    assert costs(q) == [(C1, "447", 120, 30, 165_000), (R1, "44", 65, 0, 10_833)]


def test_route_without_the_caret_form_and_the_pricelist_defaults(world, capsys):
    sync(world)
    q = quote(capsys, C1, "15551234567", 40)
    # C1: route '1' (plain digits) 0.01/min, 10 included s, increments from r1-retail's
    # defaults (30/6), markup 10 %: 40 - 10 = 30 -> 30 charged s: 0.011 * 30/60 = 0.0055.
    # R1: ^1.* 0.004/min per second: 40 s -> 0.0026666.. -> 0.002667.
    assert costs(q) == [(C1, "1", 30, 0, 5_500), (R1, "1", 40, 0, 2_667)]
    q = quote(capsys, C1, "15551234567", 10)
    # within C1's 10 included seconds: C1 pays nothing; R1 pays 10 s: 0.000666.. -> 667
    assert costs(q) == [(C1, "1", 0, 0, 0), (R1, "1", 10, 0, 667)]


def test_commission_reseller_and_postpaid_customer(world, capsys):
    sync(world)
    q = quote(capsys, C2, "441234567890", 30)
    # C2 at r2-retail ^44.* 0.03/min, pricelist defaults 0/0 -> per second: 30 s = 0.015.
    # R2 at wholesale 0.01/min: 30 s = 0.005.
    assert costs(q) == [(C2, "44", 30, 0, 15_000), (R2, "44", 30, 0, 5_000)]
    # R2 is postpaid owing 5.00 in ASTPP: here it has -5.00 above a floor of -50.00.
    assert balance(capsys, R2) == -5_000_000
    assert balance(capsys, C1) == 10_000_000


def test_inbound_did_is_rated_at_every_level(world, capsys):
    sync(world)
    q = quote(capsys, C1, "442071234567", 61, "--direction", "inbound")
    # DID 0.005/min by the minute (ASTPP's initial block 0 with inc 60 = 60/60): 61 s ->
    # 120 charged. C1 at r1-retail with its 10 % markup: 0.0055 * 2 = 0.011; the package is
    # outbound only. R1 at wholesale: 0.005 * 2 = 0.01.
    assert costs(q) == [(C1, "442071234567", 120, 0, 11_000),
                        (R1, "442071234567", 120, 0, 10_000)]


def test_flags_carried_and_rows_left_out(world, capsys, pg):
    sync(world)
    # status 1 = inactive -> suspended; deleted 1 -> deleted
    q = quote(capsys, C3, "441234567890", 30)
    assert (q["allowed"], q["reason"]) == (False, "account_suspended")
    assert pg.execute("SELECT status FROM accounts WHERE number = '2000000009'"
                      ).fetchone() == ("deleted",)
    rows = dict(pg.execute("SELECT number, kind || '/' || coalesce(reseller_type, '-') || '/'"
                           " || billing || '/' || max_channels FROM accounts").fetchall())
    assert rows == {R1: "reseller/margin/prepaid/0", R2: "reseller/commission/postpaid/0",
                    C1: "customer/-/prepaid/2", C2: "customer/-/postpaid/0",
                    C3: "customer/-/prepaid/0", "2000000009": "customer/-/prepaid/0"}
    product = pg.execute("SELECT reseller_can_resell, can_be_purchased, release_if_no_balance,"
                         " applicable_for, billing_type FROM products").fetchall()
    assert product == [(True, True, True, "outbound", "recurring")]
    # the per-account route (^49.*) and the inactive one (^33.*) are not rates here
    q = quote(capsys, C1, "4930123456", 30)
    assert (q["allowed"], q["reason"]) == (False, "no_rate")


def test_dry_run_prints_accounts_and_unmappable_rows_and_writes_nothing(world, capsys, pg):
    capsys.readouterr()
    sync(world, "--dry-run")
    out = capsys.readouterr().out
    assert f"account {C1} (ASTPP id 4) 'Alice': customer under {R1}, prepaid, active, " \
           "opening balance 10, max channels 2, rate group 'r1-retail'" in out
    assert f"account {R2} (ASTPP id 3) 'Reseller Two': commission reseller under admin, " \
           "postpaid, active, opening balance -5, credit limit 50" in out
    assert "    DID 442071234567" in out
    assert "    order astpp-1 'UK 100', 5970 of 6000 free seconds used" in out
    for reason in (
        "accounts #1: admin is an administrator",
        "accounts #7: number '12345' is not 10 digits",
        "accounts #8: 3000000001 is a provider",
        "accounts #10: 2000000010: pricelist 'admin-retail' belongs to admin, but the "
        "account's parent is 1000000001",
        "routes #9: '^49.*' is a rate for one account",
        "routes #10: '^33.*' is inactive",
        "routes #11: '^4x.*' is not a prefix",
        "dids #2: 15550000000 is not assigned to an account",
        "products #2: not a package",
        "block_patterns #1: '4490' is blocked for one account",
        "invoice_details #1 2000000001 REFILL 10: already in the opening balance",
    ):
        assert reason in out, reason
    assert pg.execute("SELECT count(*) FROM accounts").fetchone() == (0,)


def test_validation_refuses_the_whole_sync_with_the_reason(world, pg):
    # a price this project cannot rate exactly: the dataset validation refuses everything
    sql(world, "UPDATE routes SET cost = 999999999999.00000 WHERE id = 4")
    with pytest.raises(InputError, match=r"price_per_min: '999999999999' is out of range"):
        sync_astpp_once(_cfg(pg), world, now=NOW)
    assert pg.execute("SELECT count(*) FROM accounts").fetchone() == (0,)


def _cfg(pg):
    from rater.config import load_config

    return load_config(REPO / "config" / "rater.toml", env={
        "RATER_DATABASE_URL": os.environ["RATER_DATABASE_URL"],
        "RATER_REDIS_URL": os.environ["RATER_REDIS_URL"]})


def test_a_second_sync_follows_ASTPP_and_keeps_live_state(world, capsys, pg):
    sync(world)
    # the portal removes R1's ^447.* route, changes a price and adds usage in ASTPP
    sql(world, "DELETE FROM routes WHERE id = 6",
        "UPDATE routes SET cost = 0.03000 WHERE id = 5",
        "UPDATE counters SET used_seconds = 0 WHERE id = 1")
    sync(world)
    q = quote(capsys, C1, "447700900123", 65)
    # C1 now at ^44.* 0.03/min + 0.01 connect, increments 30/6, markup 10 %: 65 s -> 66
    # charged; the package still has 30 s (usage is live here, not re-read): 36 paid s at
    # 0.033/min = 0.0198, + 0.01 connect = 0.0298. R1 unchanged: 0.010833.
    assert costs(q) == [(C1, "44", 66, 30, 29_800), (R1, "44", 65, 0, 10_833)]


# --- money: seeded once, then adjustments exactly once --------------------------------------

def test_balances_seed_once_and_portal_payments_apply_once_by_id(world, capsys, pg):
    sync(world)
    assert balance(capsys, C1) == 10_000_000
    # Later, in the portal: C1 refills 2.50 (ASTPP adds it to its balance), R2 (postpaid)
    # is post-charged 1.00, C1 buys a package (an order charge), and someone edits C1's
    # balance column directly.
    sql(world,
        "INSERT INTO invoice_details (id, accountid, order_item_id, charge_type, description,"
        " debit, credit) VALUES (2, 4, 0, 'REFILL', 'card', 0, 2.50000),"
        " (3, 3, 0, 'POSTCHARGE', 'fee', 1.00000, 0),"
        " (4, 4, 1, 'PACKAGE', 'UK 100', 5.00000, 0)",
        "UPDATE accounts SET balance = 999 WHERE id = 4",
        "UPDATE accounts SET balance = 6.00000 WHERE id = 3")
    sync(world)
    # 10 + 2.50 (the refill); the order charge is not carried; the balance column not read
    assert balance(capsys, C1) == 12_500_000
    assert balance(capsys, R2) == -6_000_000
    sync(world)
    sync(world)
    assert balance(capsys, C1) == 12_500_000
    assert balance(capsys, R2) == -6_000_000
    assert pg.execute("SELECT ref, amount FROM balance_adjustments ORDER BY id").fetchall() == [
        ("astpp:invoice_details:2", 2_500_000), ("astpp:invoice_details:3", -1_000_000)]
    assert dict(pg.execute("SELECT id, disposition FROM astpp_money").fetchall()) == {
        1: "opening", 2: "adjustment", 3: "adjustment", 4: "not_carried"}


def test_a_new_account_brings_its_earlier_payments_inside_its_opening_balance(world, capsys):
    sync(world)
    sql(world,
        "INSERT INTO accounts (id, number, reseller_id, pricelist_id, type, balance,"
        " maxchannels, is_distributor, first_name) VALUES"
        " (11, '2000000011', 2, 3, 0, 7.00000, 0, 1, 'Dan')",
        "INSERT INTO invoice_details (id, accountid, order_item_id, charge_type, description,"
        " debit, credit) VALUES (5, 11, 0, 'REFILL', 'first', 0, 7.00000)")
    sync(world)
    sync(world)
    assert balance(capsys, "2000000011") == 7_000_000


def test_an_account_imported_from_a_file_first_gets_only_later_ASTPP_money(world, capsys, pg):
    from loader.dataset import import_dataset

    import_dataset(pg, {
        "rate_groups": [{"name": "wholesale", "rates": [
            {"prefix": "44", "price_per_min": "0.01"}]}],
        "accounts": [{"number": R1, "kind": "reseller", "reseller_type": "margin",
                      "balance": "40", "rate_group": "wholesale"}]}, now=NOW)
    sql(world, "INSERT INTO invoice_details (id, accountid, order_item_id, charge_type,"
        " description, debit, credit) VALUES (6, 2, 0, 'REFILL', 'old', 0, 100.00000)")
    sync(world)
    # R1's opening balance stays the file's 40 (ASTPP's 100 is not re-seeded), and ASTPP's
    # refill of that instant is not applied: it is history, not a new payment
    assert balance(capsys, R1) == 40_000_000
    sql(world, "INSERT INTO invoice_details (id, accountid, order_item_id, charge_type,"
        " description, debit, credit) VALUES (7, 2, 0, 'REFILL', 'new', 0, 3.00000)")
    sync(world)
    assert balance(capsys, R1) == 43_000_000


# --- CDR write-back -------------------------------------------------------------------------

def test_write_cdrs_fills_cdrs_and_reseller_cdrs_once(world, capsys, pg):
    sync(world)
    # the call of the first test, as the flusher writes it: C1 paid 0.165 (120 s charged,
    # 30 from the package), R1 paid 0.010833 (65 s)
    answered = NOW - timedelta(minutes=5)
    pg.execute("INSERT INTO cdrs (uuid, account, direction, caller, destination, created_at,"
               " answered_at, hangup_at, billed_seconds, hangup_cause, total_cost, recorded_at)"
               " VALUES ('call-1', %s, 'outbound', '442000', '447700900123', %s, %s, %s, 65,"
               " 'NORMAL_CLEARING', 165000, %s)",
               (C1, answered, answered, answered + timedelta(seconds=65), NOW))
    pg.execute("INSERT INTO cdr_charges (cdr_uuid, level, account, rate_group, prefix,"
               " price_per_min, charged_seconds, free_seconds, cost) VALUES"
               " ('call-1', 0, %s, 'r1-retail', '447', 110000, 120, 30, 165000),"
               " ('call-1', 1, %s, 'wholesale', '44', 10000, 65, 0, 10833)", (C1, R1))
    sync(world, "--write-cdrs")
    sync(world, "--write-cdrs")  # nothing new: nothing written twice
    with _connect(world) as conn, conn.cursor() as cur:
        cur.execute("SELECT uniqueid, accountid, debit, cost, reseller_id, reseller_cost,"
                    " pattern, pricelist_id, rate_cost, billseconds, call_direction, callstart"
                    " FROM cdrs")
        assert cur.fetchall() == ((
            "call-1", 4, Decimal("0.165000"), Decimal("0.010833"), 2, Decimal("0.010833"),
            "^447.*", 3, Decimal("0.110000"), 65, "outbound", answered.replace(tzinfo=None)),)
        cur.execute("SELECT uniqueid, accountid, debit, cost, reseller_id, pattern,"
                    " pricelist_id FROM reseller_cdrs")
        assert cur.fetchall() == (
            ("call-1", 2, Decimal("0.010833"), Decimal("0.000000"), 0, "^44.*", 1),)


# --- --watch ------------------------------------------------------------------------------

def test_watch_imports_changes_and_stays_quiet_otherwise(world, capsys, env):
    lines: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    worker = threading.Thread(target=run_sync_astpp, args=(env, world), kwargs={
        "now": NOW, "watch": True, "interval": 0.05, "stop": stop, "out": lines.put})
    worker.start()
    try:
        assert lines.get(timeout=60).startswith("ASTPP: 6 account(s) carried")
        # the portal refills C1: the next poll applies it, and only then is anything printed
        sql(world, "INSERT INTO invoice_details (id, accountid, order_item_id, charge_type,"
            " description, debit, credit) VALUES (9, 4, 0, 'REFILL', 'card', 0, 1.25000)")
        assert "adjustments queued: 1, applied: 1" in lines.get(timeout=60)
        assert balance(capsys, C1) == 11_250_000
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()
    assert lines.empty()  # no poll in between printed anything: nothing had changed
