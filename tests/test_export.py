"""`rater export accounts|cdrs` in both formats, from a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from loader.dataset import import_dataset_file

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "rater.toml"
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def seeded(database_url: str, pg: psycopg.Connection, monkeypatch) -> str:
    """The example dataset plus three legs (config/example-dataset.md); returns the URL."""
    monkeypatch.setenv("RATER_DATABASE_URL", database_url)
    with psycopg.connect(database_url) as conn:
        import_dataset_file(conn, REPO / "config" / "example-dataset.json", now=NOW)
    pg.execute(
        "INSERT INTO cdrs (uuid, account, direction, caller, destination, answered_at,"
        " hangup_at, billed_seconds, hangup_cause, total_cost, recorded_at) VALUES"
        " ('leg-1', '2000000004', 'outbound', '2000000004', '447700900123',"
        "  '2026-11-15 10:00:00Z', '2026-11-15 10:01:05Z', 65, 'NORMAL_CLEARING', 160000,"
        "  '2026-11-15 10:01:06Z'),"
        " ('leg-2', '2000000021', 'outbound', '2000000021', '447700900123',"
        "  '2026-11-15 11:00:00Z', '2026-11-15 11:01:05Z', 65, 'NORMAL_CLEARING', 0,"
        "  '2026-11-15 11:01:06Z'),"
        " ('leg-3', '2000000003', 'outbound', '2000000003', '4420700000', NULL,"
        "  '2026-11-16 09:00:00Z', 0, 'NO_ANSWER', 0, '2026-11-16 09:00:01Z')"
    )
    pg.execute(
        "INSERT INTO cdr_charges (cdr_uuid, level, account, rate_group, prefix, price_per_min,"
        " charged_seconds, free_seconds, cost) VALUES"
        " ('leg-1', 0, '2000000004', 'admin-retail', '447', 100000, 66, 0, 160000),"
        " ('leg-2', 0, '2000000021', 'r2-retail', '447', 80000, 66, 66, 0),"
        " ('leg-2', 1, '1000000002', 'r1-retail', '447', 80000, 66, 0, 108000),"
        " ('leg-2', 2, '1000000001', 'wholesale', '447', 30000, 65, 0, 32500)"
    )
    pg.execute(
        "INSERT INTO package_usage (cdr_uuid, order_id, account, period_no, seconds)"
        " VALUES ('leg-2', 'ord-5', '2000000021', 0, 66)"
    )
    pg.execute(
        "INSERT INTO ledger_entries (id, account, amount, kind, ref, created_at) VALUES"
        " ('call:leg-1:0', '2000000004', -160000, 'call', 'leg-1', '2026-11-15 10:01:06Z'),"
        " ('call:leg-2:1', '1000000002', -108000, 'call', 'leg-2', '2026-11-15 11:01:06Z'),"
        " ('call:leg-2:2', '1000000001', -32500, 'call', 'leg-2', '2026-11-15 11:01:06Z')"
    )
    return database_url


def export(capsys, *args: str) -> str:
    from rater.cli import main

    assert main(["export", *args, "--config", str(CONFIG)]) == 0
    return capsys.readouterr().out


def test_accounts_json(seeded, capsys):
    rows = {a["number"]: a for a in json.loads(export(capsys, "accounts", "--format", "json"))}
    assert len(rows) == 9
    assert rows["2000000004"] == {
        "number": "2000000004", "name": "Dave (admin, postpaid, 2 channels)", "parent": None,
        "kind": "customer", "reseller_type": None, "billing": "postpaid",
        "credit_limit_micros": 50_000_000, "rate_group": "admin-retail", "max_channels": 2,
        "status": "active", "balance_micros": -5_000_000 - 160_000,
        "created_at": "2026-11-15T12:00:00Z",
    }
    assert rows["1000000002"]["balance_micros"] == -108_000
    assert rows["1000000001"]["balance_micros"] == 100_000_000 - 32_500
    assert rows["1000000002"]["reseller_type"] == "commission"
    assert rows["2000000021"]["balance_micros"] == 5_000_000


def test_accounts_csv_and_since(seeded, pg, capsys):
    pg.execute("UPDATE accounts SET created_at = '2026-11-20Z' WHERE number = '2000000022'")
    rows = list(csv.DictReader(io.StringIO(export(capsys, "accounts"))))
    assert [r["number"] for r in rows][:2] == ["1000000001", "1000000002"]
    assert rows[0]["balance_micros"] == "99967500" and rows[0]["parent"] == ""
    later = list(csv.DictReader(io.StringIO(
        export(capsys, "accounts", "--since", "2026-11-19T00:00:00Z"))))
    assert [r["number"] for r in later] == ["2000000022"]


def test_cdrs_json_one_object_per_leg(seeded, capsys):
    cdrs = json.loads(export(capsys, "cdrs", "--json"))
    assert [c["uuid"] for c in cdrs] == ["leg-1", "leg-2", "leg-3"]
    leg = cdrs[0]
    assert {k: leg[k] for k in ("account", "direction", "destination", "billed_seconds",
                                "hangup_cause", "total_cost_micros", "settlement")} == {
        "account": "2000000004", "direction": "outbound", "destination": "447700900123",
        "billed_seconds": 65, "hangup_cause": "NORMAL_CLEARING", "total_cost_micros": 160000,
        "settlement": "final",
    }
    assert leg["answered_at"] == "2026-11-15T10:00:00Z"
    assert leg["charges"] == [{
        "level": 0, "account": "2000000004", "rate_group": "admin-retail", "prefix": "447",
        "price_per_min_micros": 100000, "charged_seconds": 66, "free_seconds": 0,
        "cost_micros": 160000}]
    chain = cdrs[1]
    assert [(c["level"], c["account"], c["cost_micros"], c["free_seconds"])
            for c in chain["charges"]] == [
        (0, "2000000021", 0, 66), (1, "1000000002", 108000, 0), (2, "1000000001", 32500, 0)]
    assert chain["packages"] == [
        {"order": "ord-5", "account": "2000000021", "period_no": 0, "seconds": 66}]
    assert cdrs[2]["charges"] == [] and cdrs[2]["answered_at"] is None


def test_cdrs_csv_has_charges_as_json_and_since_filters(seeded, capsys):
    rows = list(csv.DictReader(io.StringIO(export(capsys, "cdrs", "--format", "csv"))))
    assert len(rows) == 3
    assert json.loads(rows[1]["charges"])[1]["cost_micros"] == 108000
    assert rows[0]["total_cost_micros"] == "160000" and rows[2]["answered_at"] == ""
    later = json.loads(export(capsys, "cdrs", "--json", "--since", "2026-11-16T00:00:00Z"))
    assert [c["uuid"] for c in later] == ["leg-3"]


def test_export_to_a_file(seeded, capsys, tmp_path):
    from rater.cli import main

    out = tmp_path / "cdrs.json"
    assert main(["export", "cdrs", "--json", "-o", str(out), "--config", str(CONFIG)]) == 0
    assert len(json.loads(out.read_text())) == 3
    assert "3 cdrs written" in capsys.readouterr().err


def test_empty_export_is_valid_json(database_url, monkeypatch, capsys):
    monkeypatch.setenv("RATER_DATABASE_URL", database_url)
    assert json.loads(export(capsys, "cdrs", "--json")) == []
