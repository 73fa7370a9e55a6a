"""`rater product-prefixes`: a package's prefixes picked from rate groups by filter.

The filter and planning rules alone (rater/packages/destinations.py), then the command
through the CLI entry point on the example dataset (config/example-dataset.md), against real
PostgreSQL and Redis. Some tests add this deck to `wholesale` (outbound; 0.03/min for GB
mobiles) so that the filters have more to choose from:

    4474 United Kingdom Mobile - O2         GB mobile     4917 Germany Mobile - O2  DE mobile
    4475 United Kingdom Mobile - Vodafone   GB mobile     33   France               FR fixed
    4477 United Kingdom Mobile - EE         GB mobile     336  France Mobile        FR mobile
    4420 United Kingdom - London            GB fixed      1900 US Premium_A         US premium
    44800 United Kingdom Freephone          GB tollfree   1976 US PremiumXA         US premium

With the example's own rates, wholesale's outbound GB rates are 44 (fixed) and 447
(mobile); its inbound ones 44 "UK DID". Admin's rate groups are wholesale and admin-retail;
R1's (1000000001) only r1-retail. Products: UK 100 (admin, outbound, prefix 44), Inbound 500
(admin, inbound, 1), Welcome 10 (admin, both, 44 and 1), DE Mobile 60 (R1, outbound, 4915).
"""

from __future__ import annotations

import io
import json
import queue
import re
import threading
from pathlib import Path

import psycopg
import pytest

from loader.ratedeck import import_rate_deck
from loader.sync import redis_client, run_sync, sync_once
from rater.cli import main
from rater.clock import FixedClock
from rater.commands.common import current_snapshot
from rater.config import Config
from rater.errors import InputError
from rater.ledger.client import Ledger
from rater.packages.destinations import (
    Destination,
    RateFilter,
    RateMatch,
    like_pattern,
    pick,
    plan_add,
    plan_remove,
)
from rater.rating.chain import LegPlan, resolve_leg
from rater.redis_client import keyspace_of, make_redis
from tests.conftest import EXAMPLE_NOW as IMPORT_TIME

REPO = Path(__file__).resolve().parents[1]
R1, R2, ALICE, CAROL = "1000000001", "1000000002", "2000000001", "2000000003"
GB_MOBILES = [("447", "United Kingdom Mobile"), ("4474", "United Kingdom Mobile - O2"),
              ("4475", "United Kingdom Mobile - Vodafone"),
              ("4477", "United Kingdom Mobile - EE")]
DECK = """prefix,destination,country,call_type,price_per_min
4474,United Kingdom Mobile - O2,GB,mobile,0.0300
4475,United Kingdom Mobile - Vodafone,GB,mobile,0.0300
4477,United Kingdom Mobile - EE,GB,mobile,0.0300
4420,United Kingdom - London,GB,fixed,0.0050
44800,United Kingdom Freephone,GB,tollfree,0
4917,Germany Mobile - O2,DE,mobile,0.0400
33,France,FR,fixed,0.0070
336,France Mobile,FR,mobile,0.0500
1900,US Premium_A,US,premium,0.5000
1976,US PremiumXA,US,premium,0.5000
"""


# --- the rules alone -------------------------------------------------------------------------

def test_a_destination_pattern_is_literal_but_for_the_star():
    assert like_pattern("*mobile*") == "%mobile%"
    assert like_pattern("US Premium_A") == "US Premium\\_A"
    assert like_pattern("100%") == "100\\%"
    assert like_pattern("a\\b*") == "a\\\\b%"


def test_filters_are_checked_and_echoed_as_typed():
    f = RateFilter.of(country="GB", destination="*mobile - o2", code="^447.*")
    assert f.code == "447"  # ASTPP's pattern form is accepted, as in rate decks
    assert f.describe() == "--country GB --code 447 --destination '*mobile - o2'"
    assert RateFilter().empty and not f.empty
    with pytest.raises(InputError, match="--code: 'abc' is not a prefix"):
        RateFilter.of(code="abc")
    with pytest.raises(InputError, match=re.escape("--code: '^.*': a catch-all is not allowed")):
        RateFilter.of(code="^.*")
    with pytest.raises(InputError, match="--country: must not be empty"):
        RateFilter.of(country=" ")


def test_one_destination_per_prefix_named_by_the_first_group_outbound_first():
    rates = [RateMatch("wholesale", "inbound", "44", "UK DID", "GB", "did"),
             RateMatch("wholesale", "outbound", "44", "United Kingdom", "GB", "fixed"),
             RateMatch("admin-retail", "outbound", "447", "UK Mobile (retail)", "GB", "mobile"),
             RateMatch("wholesale", "outbound", "447", "United Kingdom Mobile", "GB", "mobile")]
    assert pick(rates) == [Destination("44", "United Kingdom"),
                           Destination("447", "UK Mobile (retail)")]


def test_add_skips_what_the_product_has_and_remove_what_it_lacks():
    picked = [Destination("44", "United Kingdom"), Destination("447", "UK Mobile")]
    have = [Destination("44", "UK (as the product names it)"), Destination("1", "US")]
    added = plan_add(picked, have)
    assert added.changed == (Destination("447", "UK Mobile"),)
    assert added.unchanged == (Destination("44", "United Kingdom"),)
    removed = plan_remove(picked, have)
    assert removed.changed == (Destination("44", "UK (as the product names it)"),)
    assert removed.unchanged == (Destination("447", "UK Mobile"),)


# --- the command on the example dataset -----------------------------------------------------

@pytest.fixture
def deck(example, pg) -> Config:
    import_rate_deck(pg, "wholesale", io.StringIO(DECK))
    return example


def run(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["product-prefixes", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def ok(capsys, *argv: str) -> dict:
    code, out = run(capsys, *argv)
    assert (code, out["ok"]) == (0, True), out
    return out


def pairs(items: list[dict]) -> list[tuple[str, str]]:
    return [(d["prefix"], d["destination"]) for d in items]


def prefixes_of(pg: psycopg.Connection, product: str) -> list[tuple[str, str]]:
    return pg.execute(
        "SELECT x.prefix, x.destination FROM product_prefixes x JOIN products p"
        " ON p.id = x.product_id WHERE p.name = %s ORDER BY x.prefix", (product,)).fetchall()


def version(pg: psycopg.Connection) -> int:
    return pg.execute("SELECT version FROM reference_version").fetchone()[0]


def test_every_gb_mobile_prefix_of_the_retail_group_into_uk_100(example, capsys, pg):
    out = ok(capsys, "UK 100", "add", "--rate-group", "admin-retail", "--country", "GB",
             "--call-type", "mobile")
    # admin-retail's GB mobile rate is "^447.*" in the dataset: prefix 447
    assert pairs(out["added"]) == [("447", "United Kingdom Mobile")]
    assert out["skipped"] == []
    assert prefixes_of(pg, "UK 100") == [("44", "United Kingdom"),
                                         ("447", "United Kingdom Mobile")]
    assert pairs(out["prefixes"]) == prefixes_of(pg, "UK 100")


def test_every_gb_mobile_prefix_of_wholesale_in_one_transaction_then_again(
        deck, capsys, pg):
    before = version(pg)
    out = ok(capsys, "UK 100", "add", "--rate-group", "wholesale", "--country", "gb",
             "--call-type", "MOBILE")
    assert pairs(out["added"]) == GB_MOBILES
    assert [r["rate_group"] for r in out["rates"]] == ["wholesale"] * 4
    assert prefixes_of(pg, "UK 100") == [("44", "United Kingdom"), *GB_MOBILES]
    # one statement in one transaction: one reference version, the one it reports
    assert version(pg) == before + 1 == out["reference_version"]
    again = ok(capsys, "UK 100", "add", "--rate-group", "wholesale", "--country", "GB",
               "--call-type", "mobile")
    assert (again["added"], pairs(again["skipped"])) == ([], GB_MOBILES)
    assert version(pg) == before + 1  # nothing written, no new snapshot


def test_a_code_takes_every_longer_prefix_of_the_products_direction(deck, capsys, pg):
    out = ok(capsys, "UK 100", "add", "--rate-group", "wholesale", "--code", "44")
    # outbound rates only (UK 100 is outbound): not the inbound 44 "UK DID"; 44 is there
    assert [d["prefix"] for d in out["added"]] == ["4420", "447", "4474", "4475", "4477",
                                                   "44800"]
    assert pairs(out["skipped"]) == [("44", "United Kingdom")]
    assert {r["direction"] for r in out["rates"]} == {"outbound"}


def test_a_destination_pattern_over_every_rate_group_of_admin(deck, capsys, pg):
    before = version(pg)
    out = ok(capsys, "UK 100", "add", "--destination", "*MOBILE*", "--dry-run")
    # wholesale and admin-retail both have 447 and 4915: one prefix each
    assert pairs(out["added"]) == [
        ("336", "France Mobile"), ("447", "United Kingdom Mobile"),
        ("4474", "United Kingdom Mobile - O2"), ("4475", "United Kingdom Mobile - Vodafone"),
        ("4477", "United Kingdom Mobile - EE"), ("4915", "Germany Mobile"),
        ("4917", "Germany Mobile - O2")]
    assert {r["rate_group"] for r in out["rates"]} == {"wholesale", "admin-retail"}
    assert out["dry_run"] is True
    assert [d["prefix"] for d in out["prefixes"]] == [
        "336", "44", "447", "4474", "4475", "4477", "4915", "4917"]  # as it would be
    assert prefixes_of(pg, "UK 100") == [("44", "United Kingdom")]  # nothing written
    assert version(pg) == before
    # without a star the pattern is the whole name; _ and % are not wildcards
    exact = ok(capsys, "UK 100", "add", "--destination", "germany", "--dry-run")
    assert pairs(exact["added"]) == [("49", "Germany")]
    literal = ok(capsys, "UK 100", "add", "--destination", "us premium_a", "--dry-run")
    assert pairs(literal["added"]) == [("1900", "US Premium_A")]


def test_inbound_and_both_products_take_their_directions(deck, capsys, pg):
    inbound = ok(capsys, "Inbound 500", "add", "--rate-group", "wholesale", "--country", "GB")
    assert pairs(inbound["added"]) == [("44", "UK DID")]
    both = ok(capsys, "Welcome 10", "add", "--rate-group", "wholesale", "--country", "US")
    # outbound 1 "United States" and inbound 1 "US DID" are one prefix, already there
    assert pairs(both["added"]) == [("1900", "US Premium_A"), ("1976", "US PremiumXA")]
    assert pairs(both["skipped"]) == [("1", "United States")]
    assert {r["direction"] for r in both["rates"]} == {"outbound", "inbound"}


def test_remove_takes_the_same_filters(deck, capsys, pg):
    ok(capsys, "UK 100", "add", "--rate-group", "wholesale", "--code", "44")
    out = ok(capsys, "UK 100", "remove", "--country", "GB", "--call-type", "mobile")
    assert pairs(out["removed"]) == GB_MOBILES
    assert prefixes_of(pg, "UK 100") == [
        ("44", "United Kingdom"), ("4420", "United Kingdom - London"),
        ("44800", "United Kingdom Freephone")]
    again = ok(capsys, "UK 100", "remove", "--country", "GB", "--call-type", "mobile")
    assert (again["removed"], pairs(again["absent"])) == ([], GB_MOBILES)


def test_list_shows_the_prefixes_and_which_matching_rates_the_product_has(
        example, capsys):
    plain = ok(capsys, "UK 100", "list")
    assert pairs(plain["prefixes"]) == [("44", "United Kingdom")]
    assert "rates" not in plain
    out = ok(capsys, "UK 100", "list", "--rate-group", "wholesale", "--country", "GB")
    assert [(r["prefix"], r["call_type"]) for r in out["rates"]] == [
        ("44", "fixed"), ("447", "mobile")]
    assert main(["product-prefixes", "UK 100", "list", "--country", "GB"]) == 0
    text = capsys.readouterr().out
    assert "* 44 " in text and "  447 " in text  # * = already a prefix of the product


def test_a_reseller_edits_its_own_product_from_its_own_rate_groups(example, capsys, pg):
    out = ok(capsys, "DE Mobile 60", "add", "--as", R1, "--destination", "germany*")
    assert [r["rate_group"] for r in out["rates"]] == ["r1-retail", "r1-retail"]
    assert pairs(out["added"]) == [("49", "Germany")]
    assert pairs(out["skipped"]) == [("4915", "Germany Mobile")]


REFUSALS = [  # (argv, reason, words of the message)
    (["DE Mobile 60", "add", "--country", "DE"], "not_owner", "with --as 1000000001"),
    (["DE Mobile 60", "add", "--as", R2, "--country", "DE"], "not_owner",
     "reseller 1000000002 cannot edit product 'DE Mobile 60' of reseller 1000000001"),
    (["DE Mobile 60", "list", "--as", R2], "not_owner", "cannot edit"),
    (["UK 100", "add", "--as", R1, "--country", "GB"], "not_owner",
     "cannot edit product 'UK 100' of admin"),
    (["DE Mobile 60", "add", "--as", R1, "--rate-group", "wholesale"], "foreign_rate_group",
     "rate group 'wholesale' belongs to admin; product 'DE Mobile 60' takes prefixes only "
     "from reseller 1000000001's rate groups"),
    (["UK 100", "add", "--rate-group", "r1-retail"], "foreign_rate_group",
     "belongs to reseller 1000000001"),
    (["UK 100", "add", "--as", ALICE, "--country", "GB"], "not_a_reseller", "is a customer"),
    (["UK 100", "add", "--as", "1999999999", "--country", "GB"], "unknown_account",
     "no such account"),
    (["UK 200", "add", "--country", "GB"], "unknown_product", "no product named 'UK 200'"),
    (["999", "list"], "unknown_product", "no product with id 999"),
    (["UK 100", "add", "--rate-group", "retail"], "unknown_rate_group",
     "no rate group named 'retail'"),
    (["UK 100", "add", "--country", "GB", "--call-type", "satellite"], "no_match",
     "no outbound rate of admin's rate groups matches --country GB --call-type satellite"),
    (["UK 100", "remove", "--destination", "*atlantis*"], "no_match",
     "matches --destination '*atlantis*'"),
]
BAD_INPUT = [  # (argv, words of the message): refused before PostgreSQL is asked
    (["UK 100", "add"], "add needs at least one filter"),
    (["UK 100", "remove", "--code", "4x"], "--code: '4x' is not a prefix"),
    (["UK 100", "list", "--dry-run"], "--dry-run: list changes nothing"),
]


def test_refusals_say_why_and_change_nothing(example, capsys, pg):
    """One dataset for every case (nothing changes), so the quick tier stays quick."""
    before = (version(pg), prefixes_of(pg, "UK 100"), prefixes_of(pg, "DE Mobile 60"))
    for argv, reason, words in REFUSALS:
        code, out = run(capsys, *argv)
        assert (code, out["ok"], out["reason"]) == (1, False, reason), argv
        assert words in out["message"], argv
        assert main(["product-prefixes", *argv]) == 1, argv  # and in plain text, on stderr
        assert words in capsys.readouterr().err, argv
    for argv, words in BAD_INPUT:
        assert main(["product-prefixes", *argv]) == 1, argv
        assert words in capsys.readouterr().err, argv
    assert (version(pg), prefixes_of(pg, "UK 100"), prefixes_of(pg, "DE Mobile 60")) == before


# --- the change reaches calls at the next snapshot --------------------------------------------

def carol_calls(cfg: Config, uuid: str, number: str, seconds: int) -> tuple[LegPlan, int]:
    """A call of `seconds` by Carol (admin-retail; UK 100 as ord-2, 5400 s left), rated on
    the published snapshot: (its plan, what Carol paid)."""
    client = make_redis(cfg.redis)
    try:
        keys = keyspace_of(cfg.redis)
        now = IMPORT_TIME.timestamp()
        plan = resolve_leg(current_snapshot(client, keys), CAROL, "outbound", number, now)
        assert isinstance(plan, LegPlan), plan
        ledger = Ledger(client, keys, clock=FixedClock(now))
        leg = ledger.leg_keys(uuid, plan)
        assert ledger.authorize(uuid, plan, cap_seconds=3600).allowed
        assert ledger.reserve(leg, 1, seconds + 5).complete
        done = ledger.commit(leg, uuid, seconds)
        assert done.ok
        return plan, done.level_costs[0]
    finally:
        client.close()


def ord2_left(cfg: Config) -> int:
    """Seconds left in Carol's UK 100 bucket (ord-2), as Redis holds them."""
    client = make_redis(cfg.redis)
    try:
        keys = keyspace_of(cfg.redis)
        return Ledger(client, keys).bucket_state(keys.tag(CAROL), "ord-2").seconds_left
    finally:
        client.close()


def test_a_call_to_an_added_prefix_uses_package_seconds_after_the_sync_not_before(
        example, capsys, pg):
    out = ok(capsys, "UK 100", "add", "--rate-group", "admin-retail", "--country", "DE",
             "--call-type", "fixed")
    assert pairs(out["added"]) == [("49", "Germany")]
    assert ord2_left(example) == 5400
    # before the sync: 65 s to Germany at admin-retail 0.02/min, 30/6 -> 66 s = 0.022
    plan, paid = carol_calls(example, "before-sync", "4930123456", 65)
    assert plan.levels[0].buckets == ()
    assert (paid, ord2_left(example)) == (22_000, 5400)
    rds = redis_client(example)
    try:
        result = sync_once(example, rds)
    finally:
        rds.close()
    assert (result.snapshot, result.version) == ("published", out["reference_version"])
    assert ord2_left(example) == 5400  # the live bucket keeps its seconds
    # after it: the same call is free, its 66 charged seconds taken from UK 100
    plan, paid = carol_calls(example, "after-sync", "4930123456", 65)
    assert [b.order_id for b in plan.levels[0].buckets] == ["ord-2"]
    assert (paid, ord2_left(example)) == (0, 5400 - 66)


def test_sync_watch_publishes_the_change_on_notify(example, capsys, pg):
    lines: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    watcher = threading.Thread(target=run_sync, daemon=True, kwargs={
        "cfg": example, "watch": True, "as_json": True, "stop": stop, "out": lines.put})
    watcher.start()
    try:
        first = json.loads(lines.get(timeout=30))  # the sync at (re)connect
        assert first["snapshot"] in ("unchanged", "published")
        out = ok(capsys, "UK 100", "add", "--country", "DE", "--call-type", "fixed")
        published = json.loads(lines.get(timeout=30))
        assert (published["snapshot"], published["version"]) == (
            "published", out["reference_version"])
        client = make_redis(example.redis)
        try:
            snap = current_snapshot(client, keyspace_of(example.redis))
        finally:
            client.close()
        uk100 = out["product"]["id"]
        assert snap.product_match_len(uk100, "4930123456") == 2
        assert snap.product_match_len(uk100, "3312345678") == -1
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive()
