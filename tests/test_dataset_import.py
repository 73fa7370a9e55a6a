"""`loader import FILE` on a real PostgreSQL: the example dataset, idempotency and refusals."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from loader.cli import main as loader_main
from loader.dataset import import_dataset, import_dataset_file
from rater.errors import InputError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "example-dataset.json"
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
TABLES = ("rate_groups", "rates", "blocked_prefixes", "accounts", "dids", "products",
          "product_prefixes", "reseller_products", "orders", "ledger_entries",
          "reference_version")


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url) as c:
        yield c


@pytest.fixture
def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def state(pg: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row of the tables an import writes."""
    return {
        t: pg.execute(
            f"SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '')"
            f" FROM {t} x"
        ).fetchone()
        for t in TABLES
    }


def refused(conn: psycopg.Connection, pg: psycopg.Connection, data: dict, *needles: str) -> str:
    """Import `data`, expect an InputError containing every needle, and no change at all."""
    before = state(pg)
    with pytest.raises(InputError) as info:
        import_dataset(conn, data, source="test.json", now=NOW)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    assert state(pg) == before
    return message


def account(data: dict, number: str) -> dict:
    return next(a for a in data["accounts"] if a["number"] == number)


# --- the example -------------------------------------------------------------------------

def test_example_imports_with_hand_computed_values(conn, pg):
    summary = import_dataset_file(conn, EXAMPLE, now=NOW)
    assert summary == {
        "currency": "USD", "rate_groups": 4, "rates": 26, "blocked_prefixes": 5,
        "accounts": 9, "dids": 3, "products": 4, "product_prefixes": 5,
        "reseller_products": 3, "orders": 6, "orders_created": 6,
        "opening_entries_created": 9,
    }
    counts = {t: n for t, (n, _) in state(pg).items()}
    assert counts["rates"] == 26 and counts["accounts"] == 9 and counts["ledger_entries"] == 9

    # "0.0050" -> 5000 micro-units; the ASTPP "^447.*" form is stored as 447.
    assert pg.execute(
        "SELECT price_per_min, connect_fee, init_inc, inc FROM rates r JOIN rate_groups g"
        " ON g.id = r.rate_group_id WHERE g.name = 'wholesale' AND direction = 'outbound'"
        " AND prefix = '44'"
    ).fetchone() == (5000, 0, 1, 1)
    assert pg.execute(
        "SELECT price_per_min, connect_fee, init_inc, inc FROM rates r JOIN rate_groups g"
        " ON g.id = r.rate_group_id WHERE g.name = 'admin-retail' AND prefix = '447'"
    ).fetchone() == (100000, 50000, 30, 6)
    assert pg.execute(
        "SELECT included_seconds FROM rates r JOIN rate_groups g ON g.id = r.rate_group_id"
        " WHERE g.name = 'r2-retail' AND prefix = '1'"
    ).fetchone() == (10,)
    assert pg.execute(
        "SELECT prefix FROM blocked_prefixes b JOIN rate_groups g ON g.id = b.rate_group_id"
        " WHERE g.name = 'admin-retail' ORDER BY prefix"
    ).fetchall() == [("1900",), ("4490",)]
    assert dict(pg.execute("SELECT name, owner FROM rate_groups").fetchall()) == {
        "wholesale": None, "admin-retail": None, "r1-retail": "1000000001",
        "r2-retail": "1000000002",
    }
    assert pg.execute(
        "SELECT markup_bp FROM rate_groups WHERE name = 'r2-retail'").fetchone() == (1000,)

    assert pg.execute(
        "SELECT parent, kind, reseller_type, billing, credit_limit FROM accounts"
        " WHERE number = '1000000002'"
    ).fetchone() == ("1000000001", "reseller", "commission", "postpaid", 50_000_000)
    assert pg.execute(
        "SELECT status, max_channels FROM accounts WHERE number = '2000000005'"
    ).fetchone() == ("suspended", 0)
    assert pg.execute(
        "SELECT max_channels FROM accounts WHERE number = '2000000004'").fetchone() == (2,)

    # One opening entry per account; 100 + 0 + 1 + 0 + 10 - 5 + 5 + 5 + 0 = 116.00.
    assert pg.execute(
        "SELECT amount, kind FROM ledger_entries WHERE id = 'opening:1000000001'"
    ).fetchone() == (100_000_000, "opening")
    assert pg.execute(
        "SELECT amount FROM ledger_entries WHERE id = 'opening:2000000004'"
    ).fetchone() == (-5_000_000,)
    assert pg.execute("SELECT sum(amount) FROM ledger_entries").fetchone() == (116_000_000,)

    assert pg.execute(
        "SELECT buy_cost, price, setup_fee, commission_bp, billing_type, billing_days,"
        " free_minutes, charge_type FROM products WHERE owner IS NULL AND name = 'UK 100'"
    ).fetchone() == (3_000_000, 5_000_000, 1_000_000, 1000, "recurring", 30, 100,
                     "utilized_days")
    assert pg.execute(
        "SELECT rp.reseller, rp.price, rp.setup_fee FROM reseller_products rp"
        " JOIN products p ON p.id = rp.product_id WHERE p.name = 'UK 100'"
        " ORDER BY rp.reseller"
    ).fetchall() == [("1000000001", 6_000_000, 1_500_000), ("1000000002", None, None)]
    assert pg.execute("SELECT account FROM dids WHERE number = '442071234567'"
                      ).fetchone() == ("2000000021",)


def test_orders_are_imported_paid_in_their_current_period(conn, pg):
    import_dataset_file(conn, EXAMPLE, now=NOW)
    rows = {r[0]: r[1:] for r in pg.execute(
        "SELECT id, period_no, period_start, period_end, used_seconds, status FROM orders")}
    day = lambda m, d: datetime(2026, m, d, tzinfo=UTC)  # noqa: E731
    assert rows["ord-1"] == (0, day(11, 1), day(12, 1), 5970, "active")   # recurring 30 d
    assert rows["ord-3"] == (1, day(11, 15), day(12, 15), 0, "active")    # monthly, 2nd
    assert rows["ord-4"] == (0, day(11, 5), day(12, 5), 120, "active")    # one_time
    # Nothing in a dataset is charged: only the opening entries are in the ledger.
    assert pg.execute("SELECT DISTINCT kind FROM ledger_entries").fetchall() == [("opening",)]


def test_an_expired_one_time_order_is_imported_released(conn, pg):
    import_dataset_file(conn, EXAMPLE, now=datetime(2026, 12, 10, tzinfo=UTC))
    assert pg.execute(
        "SELECT status, period_no, ended_at, end_reason FROM orders WHERE id = 'ord-4'"
    ).fetchone() == ("released", 0, datetime(2026, 12, 5, tzinfo=UTC), "expired")
    assert pg.execute("SELECT period_no, period_start FROM orders WHERE id = 'ord-1'"
                      ).fetchone() == (1, datetime(2026, 12, 1, tzinfo=UTC))


def test_reimport_is_idempotent(conn, pg):
    import_dataset_file(conn, EXAMPLE, now=NOW)
    first = state(pg)
    summary = import_dataset_file(conn, EXAMPLE, now=datetime(2026, 11, 20, tzinfo=UTC))
    assert summary["orders_created"] == 0 and summary["opening_entries_created"] == 0
    after = state(pg)
    # The statement triggers bump the reference version; every row else is identical
    # (timestamps included: unchanged rows are not rewritten).
    assert {t: v for t, v in after.items() if t != "reference_version"} == {
        t: v for t, v in first.items() if t != "reference_version"}


def test_reimport_with_changes_updates_reference_data(conn, pg, example):
    import_dataset(conn, example, now=NOW)
    changed = copy.deepcopy(example)
    changed["rate_groups"][0]["rates"][0]["price_per_min"] = "0.0060"
    account(changed, "2000000003")["name"] = "Carol renamed"
    changed["rate_groups"][0]["rates"].append({"prefix": "33", "price_per_min": "0.01"})
    import_dataset(conn, changed, now=NOW)
    assert pg.execute(
        "SELECT price_per_min FROM rates r JOIN rate_groups g ON g.id = r.rate_group_id"
        " WHERE g.name = 'wholesale' AND direction = 'outbound' AND prefix = '44'"
    ).fetchone() == (6000,)
    assert pg.execute("SELECT count(*) FROM rates").fetchone() == (27,)
    assert pg.execute("SELECT name FROM accounts WHERE number = '2000000003'"
                      ).fetchone() == ("Carol renamed",)


def test_a_second_file_may_reference_what_the_database_holds(conn, pg, example):
    import_dataset(conn, example, now=NOW)
    more = {
        "accounts": [{"number": "2000000031", "parent": "1000000001", "kind": "customer",
                      "balance": "2.50", "rate_group": "r1-retail"}],
        "orders": [{"id": "ord-31", "account": "2000000031", "product": "UK 100",
                    "ordered_at": "2026-11-14T00:00:00Z"}],
    }
    import_dataset(conn, more, now=NOW)
    assert pg.execute("SELECT amount FROM ledger_entries WHERE id = 'opening:2000000031'"
                      ).fetchone() == (2_500_000,)
    # R1's customer gets admin's "UK 100" through R1's opt-in.
    assert pg.execute(
        "SELECT p.owner FROM orders o JOIN products p ON p.id = o.product_id"
        " WHERE o.id = 'ord-31'").fetchone() == (None,)


# --- refusals: each names the JSON path, and nothing is written ---------------------------

def test_unknown_field_and_bad_money_are_all_reported_with_their_paths(conn, pg, example):
    account(example, "2000000002")["billling"] = "prepaid"  # accounts[3]
    example["rate_groups"][0]["rates"][1]["price_per_min"] = "0.1x"
    example["rate_groups"][1]["rates"][0]["connect_fee"] = "0.0000001"
    example["products"][0]["price"] = 5.5  # a float is never money
    message = refused(
        conn, pg, example,
        "accounts[3].billling: unknown field",
        "rate_groups[0].rates[1].price_per_min: '0.1x' is not a decimal number",
        "rate_groups[1].rates[0].connect_fee: '0.0000001' has more than 6 decimals",
        "products[0].price: expected a decimal string, got 5.5",
        "4 problem(s), nothing imported",
    )
    assert message.startswith("test.json: ")


def test_bad_account_number(conn, pg, example):
    example["accounts"][0]["number"] = "12345"
    refused(conn, pg, example, "accounts[0].number: '12345' is not a 10-digit account number")


def test_unknown_parent(conn, pg, example):
    account(example, "2000000001")["parent"] = "1000000099"
    refused(conn, pg, example,
            "accounts[2].parent: 1000000099 is not an account in the file or the database")


def test_parent_must_be_a_reseller(conn, pg, example):
    example["accounts"].append({"number": "2000000099", "parent": "2000000003",
                                "kind": "customer", "rate_group": "admin-retail"})
    refused(conn, pg, example, "accounts[9].parent: 2000000003 is a customer; only resellers")


def test_parent_cycle(conn, pg, example):
    example["rate_groups"] += [{"name": "ga", "owner": "3000000002"},
                               {"name": "gb", "owner": "3000000001"}]
    example["accounts"] += [
        {"number": "3000000001", "parent": "3000000002", "kind": "reseller",
         "reseller_type": "margin", "rate_group": "ga"},
        {"number": "3000000002", "parent": "3000000001", "kind": "reseller",
         "reseller_type": "margin", "rate_group": "gb"},
    ]
    refused(conn, pg, example,
            "accounts[9].parent: cycle: 3000000001 -> 3000000002 -> 3000000001",
            "accounts[10].parent: cycle: 3000000002 -> 3000000001 -> 3000000002")


def test_rate_group_must_be_owned_by_the_parent(conn, pg, example):
    account(example, "2000000003")["rate_group"] = "r1-retail"
    refused(conn, pg, example,
            "accounts[4].rate_group: 'r1-retail' is owned by 1000000001, but 2000000003's "
            "parent is admin")


def test_reseller_needs_a_type_and_customers_have_none(conn, pg, example):
    del example["accounts"][0]["reseller_type"]
    account(example, "2000000001")["reseller_type"] = "margin"
    refused(conn, pg, example, "accounts[0].reseller_type: required for a reseller",
            "accounts[2].reseller_type: only resellers have a reseller_type")


def test_order_through_a_reseller_that_has_not_opted_in(conn, pg, example):
    example["reseller_products"] = [rp for rp in example["reseller_products"]
                                    if rp["reseller"] != "1000000002"]
    refused(conn, pg, example,
            "orders[4].product: reseller 1000000002 has not opted in to 'UK 100' of admin")


def test_references_to_missing_things(conn, pg, example):
    example["dids"][0]["account"] = "2000000098"
    example["orders"][0]["product"] = "No Such"
    example["reseller_products"][0]["reseller"] = "2000000001"
    example["products"][0]["rate_group"] = "nope"
    refused(conn, pg, example,
            "dids[0].account: 2000000098 is not an account",
            "orders[0].product: no product 'No Such' visible to 2000000001",
            "reseller_products[0].reseller: 2000000001 is a customer",
            "products[0].rate_group: no rate group named 'nope'")


def test_duplicates_inside_the_file_name_both_paths(conn, pg, example):
    example["rate_groups"][0]["rates"].append({"prefix": "^44.*", "price_per_min": "1"})
    example["accounts"].append(copy.deepcopy(example["accounts"][2]))
    refused(conn, pg, example,
            "rate_groups[0].rates[7].prefix: duplicate direction and prefix in this rate group"
            " (first at rate_groups[0].rates[0])",
            "accounts[9].number: duplicate account number (first at accounts[2])")


def test_changed_opening_balance_on_reimport_is_refused(conn, pg, example):
    import_dataset(conn, example, now=NOW)
    account(example, "2000000001")["balance"] = "7.00"
    refused(conn, pg, example,
            "accounts[2].balance: 7.000000 differs from the opening balance already imported "
            "(1.000000)", "rater topup")


def test_changed_order_on_reimport_is_refused(conn, pg, example):
    import_dataset(conn, example, now=NOW)
    example["orders"][1]["used_seconds"] = 0
    example["orders"][2]["ordered_at"] = "2026-10-16T00:00:00Z"
    refused(conn, pg, example,
            "orders[1].used_seconds: order ord-2 has used 600 seconds already",
            "orders[2].ordered_at: order ord-3 was placed at 2026-10-15T00:00:00+00:00",
            "rater terminate")


def test_moving_an_imported_account_is_refused(conn, pg, example):
    import_dataset(conn, example, now=NOW)
    acct = account(example, "2000000001")
    acct["parent"], acct["rate_group"] = None, "admin-retail"
    refused(conn, pg, example, "accounts[2].parent: 2000000001 is already under 1000000001")


def test_changing_the_owner_of_a_rate_group_in_use_is_refused(conn, pg, example):
    import_dataset(conn, example, now=NOW)
    refused(conn, pg, {"rate_groups": [{"name": "r1-retail", "owner": "admin"}]},
            "rate_groups[0].owner: 3 account(s) in the database (1000000002, 2000000001, "
            "2000000002) pay at 'r1-retail' under 1000000001, so its owner must stay 1000000001")


def test_a_reseller_cannot_become_a_customer(conn, pg, example):
    import_dataset(conn, example, now=NOW)
    r2 = account(example, "1000000002")
    r2["kind"], r2["reseller_type"] = "customer", None
    refused(conn, pg, example, "accounts[1].kind: 1000000002 is a reseller in the database",
            "accounts[7].parent: 1000000002 is a customer; only resellers (or admin) have "
            "children")


def test_opt_in_prices_follow_the_reseller_type(conn, pg, example):
    example["reseller_products"][0].pop("price")           # R1 is a margin reseller
    example["reseller_products"][2]["price"] = "6.00"      # R2 is a commission reseller
    example["products"][2]["reseller_can_resell"] = True
    example["reseller_products"].append(
        {"reseller": "1000000001", "product": "Welcome 10", "price": "1.00"})
    example["products"][0]["reseller_can_resell"] = False
    refused(conn, pg, example,
            "reseller_products[0].price: required: a margin reseller sells at its own price",
            "reseller_products[2].price: a commission reseller sells at its parent's price",
            "reseller_products[0].product: 'UK 100' of admin has reseller_can_resell false")


def test_product_owner_picks_between_same_named_products(conn, pg, example):
    example["products"].append({"name": "UK 100", "owner": "1000000001", "price": "7.00",
                                "free_minutes": 100, "prefixes": [{"prefix": "44"}]})
    example["orders"].append({"id": "ord-7", "account": "2000000002", "product": "UK 100",
                              "ordered_at": "2026-11-02"})
    example["orders"].append({"id": "ord-8", "account": "2000000002", "product": "UK 100",
                              "product_owner": "admin", "ordered_at": "2026-11-02"})
    import_dataset(conn, example, now=NOW)
    owners = dict(pg.execute(
        "SELECT o.id, p.owner FROM orders o JOIN products p ON p.id = o.product_id"
        " WHERE o.id IN ('ord-7', 'ord-8')").fetchall())
    assert owners == {"ord-7": "1000000001", "ord-8": None}  # nearest owner by default


def test_the_error_list_is_capped(conn, pg, example):
    example["rate_groups"][0]["rates"] = [
        {"prefix": str(100 + i), "price_per_min": "x"} for i in range(70)
    ]
    message = refused(conn, pg, example, "70 problem(s)", "... and 20 more")
    assert message.count("is not a decimal number") == 50


def test_future_orders_and_overused_buckets(conn, pg, example):
    example["orders"][0]["ordered_at"] = "2026-12-01T00:00:00Z"
    example["orders"][1]["used_seconds"] = 6001
    refused(conn, pg, example, "orders[0].ordered_at: is in the future",
            "orders[1].used_seconds: 6001 is more than the package's 6000 free seconds")


def test_json_numbers_are_read_exactly(conn, pg, example, tmp_path):
    text = json.dumps(example).replace('"price": "5.00"', '"price": 5.10')
    path = tmp_path / "numbers.json"
    path.write_text(text)
    import_dataset_file(conn, path, now=NOW)
    assert pg.execute("SELECT price FROM products WHERE name = 'UK 100' AND owner IS NULL"
                      ).fetchone() == (5_100_000,)


def test_a_key_given_twice_is_refused(conn, tmp_path):
    path = tmp_path / "twice.json"
    path.write_text('{"currency": "USD", "currency": "EUR"}')
    with pytest.raises(InputError, match=r"currency: appears twice"):
        import_dataset_file(conn, path)


def test_bad_json_names_line_and_column(conn, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"accounts": [\n  {"number": "1"},\n]}')
    with pytest.raises(InputError, match=r"bad.json:3:1: not valid JSON"):
        import_dataset_file(conn, bad)


def test_loader_import_cli(database_url, pg, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RATER_DATABASE_URL", database_url)  # the environment wins
    config = REPO / "config" / "rater.toml"
    assert loader_main(["import", "--config", str(config), "--json", "--now", NOW.isoformat(),
                        str(EXAMPLE)]) == 0
    assert json.loads(capsys.readouterr().out)["accounts"] == 9
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"acounts": []}))
    assert loader_main(["import", "--config", str(config), str(bad)]) == 1
    assert "acounts: unknown field" in capsys.readouterr().err
