"""`rater quote`, `rater balance` and `rater topup` on the example dataset, through the CLI
entry point, against real PostgreSQL and Redis. Amounts from config/example-dataset.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from rater.cli import main
from tests.conftest import EXAMPLE_NOW as IMPORT_TIME

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.also_on_cluster


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_quote_explains_each_level(example, capsys):
    q = run_json(capsys, "quote", "--account", "2000000001", "--destination", "447700900123",
                 "--duration", "65", "--now", IMPORT_TIME.isoformat())
    assert (q["allowed"], q["reason"]) == (True, None)
    # customer: 30 package seconds + 0.98 / 0.08 per min = 735 paid -> 765 charged seconds;
    # 30 + floor((765 - 30) / 6) * 6 = 762 billed seconds
    assert q["max_seconds"] == 762
    customer, reseller = q["levels"]
    assert (customer["account"], customer["prefix"], customer["rate_group"]) == (
        "2000000001", "447", "r1-retail")
    # 66 charged, 30 from ord-1, 36 paid: 0.02 + 0.08 * 36/60 = 0.068
    assert (customer["charged_seconds"], customer["free_seconds"], customer["cost_micros"]) == (
        66, 30, 68_000)
    assert customer["packages"] == [{"order": "ord-1", "product": "UK 100", "seconds_left": 30}]
    # R1 at wholesale: 65 s at 0.03/min = 0.0325
    assert (reseller["account"], reseller["cost_micros"]) == ("1000000001", 32_500)


def test_quote_at_another_time_uses_that_times_packages(example, capsys):
    # ord-1's period ends 2026-12-01: after it, no package seconds, all 66 s are paid
    q = run_json(capsys, "quote", "--account", "2000000001", "--destination", "447700900123",
                 "--duration", "65", "--now", "2026-12-02T00:00:00Z")
    customer = q["levels"][0]
    assert customer["packages"] == []
    # 0.02 + 0.08 * 66/60 = 0.108
    assert (customer["free_seconds"], customer["cost_micros"]) == (0, 108_000)
    # 0.98 / 0.08 per min = 735 paid seconds; 30 + floor((735 - 30) / 6) * 6 = 732 billed
    assert q["max_seconds"] == 732


def test_quote_of_the_worked_example(example, capsys):
    q = run_json(capsys, "quote", "--account", "2000000004", "--destination", "447700900123",
                 "--duration", "65", "--now", IMPORT_TIME.isoformat())
    # 0.10/min, connect 0.05, 30/6: 66 s -> 0.16; postpaid -5.00 with a 50.00 limit: capped
    assert [lv["cost_micros"] for lv in q["levels"]] == [160_000]
    assert q["max_seconds"] == 14_400


@pytest.mark.parametrize(("account", "destination", "reason"), [
    ("2000000005", "447700900123", "account_suspended"),
    ("2000000003", "449012345678", "blocked_destination"),
    ("2000000003", "3312345678", "no_rate"),
    ("2999999999", "447700900123", "unknown_account"),
])
def test_quote_refusals(example, capsys, account, destination, reason):
    q = run_json(capsys, "quote", "--account", account, "--destination", destination,
                 "--now", IMPORT_TIME.isoformat())
    assert (q["allowed"], q["reason"], q["max_seconds"]) == (False, reason, 0)


def test_balance_shows_live_money_and_buckets(example, capsys):
    b = run_json(capsys, "balance", "2000000001")
    assert (b["account"], b["balance_micros"], b["floor_micros"]) == ("2000000001", 1_000_000, 0)
    buckets = {x["order"]: x["seconds_left"] for x in b["buckets"]}
    assert buckets["ord-1"] == 30  # 6000 - 5970 used
    pp = run_json(capsys, "balance", "2000000004")
    assert (pp["balance_micros"], pp["floor_micros"]) == (-5_000_000, -50_000_000)


def test_topup_is_applied_exactly_once_per_ref(example, capsys, rds: redis.Redis):
    first = run_json(capsys, "topup", "2000000001", "2.50", "--ref", "pay-1")
    again = run_json(capsys, "topup", "2000000001", "2.50", "--ref", "pay-1")
    assert first["balance_micros"] == again["balance_micros"] == 3_500_000
    other = run_json(capsys, "topup", "2000000001", "0.25", "--ref", "pay-2")
    assert other["balance_micros"] == 3_750_000
    outbox = [json.loads(f["e"]) for key in rds.scan_iter("rt:*:outbox")
              for _, f in rds.xrange(key)]
    assert sorted(row["id"] for e in outbox for row in e["ledger"]) == [
        "topup:pay-1", "topup:pay-2"]


def test_bad_input_is_refused_with_a_clear_message(example, capsys):
    assert main(["topup", "2000000001", "1.0000001", "--ref", "x"]) == 1
    assert "more than 6 decimals" in capsys.readouterr().err
    assert main(["topup", "2000000001", "-1", "--ref", "x"]) == 1
    assert "must be positive" in capsys.readouterr().err
    assert main(["balance", "2999999999"]) == 1
    assert "2999999999" in capsys.readouterr().err
