"""Resolving a leg into its paying levels (tests/rating_world.py: C1 -> R2 -> R1 -> admin)."""

from __future__ import annotations

import psycopg
import pytest

from loader.snapshot import build_snapshot
from rater.ledger.keys import KeySpace
from rater.rating.chain import BucketRef, LegPlan, Refusal, resolve_leg
from rater.rating.snapshot import Snapshot
from rater.rating.tariff import Tariff
from tests.rating_world import (
    C1,
    C2,
    C3,
    C4,
    DID_C1,
    DID_C3,
    NOW_EPOCH,
    R1,
    R2,
    R3,
    D,
    epoch,
    import_world,
)

KS = KeySpace(prefix="rt", shards=16)
JAN_19 = epoch("2026-01-19T00:00:00+00:00")
JAN_31 = epoch("2026-01-31T00:00:00+00:00")
FEB_01 = epoch("2026-02-01T00:00:00+00:00")
FEB_02 = epoch("2026-02-02T00:00:00+00:00")
FEB_04 = epoch("2026-02-04T00:00:00+00:00")


@pytest.fixture(scope="module")
def snap(servers, template_db) -> Snapshot:
    url = servers.new_database(template=template_db)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            import_world(conn)
            return Snapshot.from_bytes(build_snapshot(conn, KS))
    finally:
        servers.drop_database(url)


def plan(snap: Snapshot, account: str | None, destination: str, direction: str = "outbound",
         now: float = NOW_EPOCH) -> LegPlan:
    result = resolve_leg(snap, account, direction, destination, now)
    assert isinstance(result, LegPlan), result
    return result


def refusal(snap: Snapshot, account: str | None, destination: str,
            direction: str = "outbound") -> tuple[str, str | None]:
    result = resolve_leg(snap, account, direction, destination, NOW_EPOCH)
    assert isinstance(result, Refusal), result
    return result.reason, result.account


def product_id(snap: Snapshot, order_id: str) -> int:
    return next(o.product_id for o in snap.orders_of(C1) + snap.orders_of(R2)
                if o.order_id == order_id)


def test_three_levels_each_at_its_own_rate_group(snap: Snapshot):
    leg = plan(snap, C1, "+447700900123")
    assert (leg.account, leg.direction, leg.destination, leg.tag) == (
        C1, "outbound", "447700900123", KS.tag(R1))
    rows = [(lv.account, lv.rate_group, lv.prefix, lv.destination_name, lv.floor_micros,
             lv.max_channels) for lv in leg.levels]
    assert rows == [
        (C1, "r2-sell", "447", "UK Mobile", -20_000_000, 2),
        (R2, "r1-sell", "447", "UK Mobile", 0, 0),
        (R1, "wholesale", "447", "UK Mobile", 0, 0),
    ]
    assert [lv.tariff for lv in leg.levels] == [
        Tariff(80_000),
        Tariff(60_000, connect_fee_micros=10_000, init_inc=30, inc=6, markup_bp=1000),
        Tariff(40_000),
    ]


def test_each_level_matches_its_own_longest_prefix(snap: Snapshot):
    leg = plan(snap, C1, "442079460000")
    assert [(lv.prefix, lv.destination_name, lv.tariff.price_per_min_micros)
            for lv in leg.levels] == [
        ("4420", "London", 25_000), ("44", "United Kingdom", 20_000),
        ("44", "United Kingdom", 10_000)]


def test_package_buckets_longest_match_then_earliest_expiry(snap: Snapshot):
    leg = plan(snap, C1, "447700900123")
    uk, mob = product_id(snap, "o-uk-a"), product_id(snap, "o-mob")
    # o-mob matches 447 (3 digits) before the UK 100 orders on 44; of those, o-uk-b ends
    # first. o-old (inactive product), o-zero (no free minutes), o-in (inbound) do not apply.
    assert leg.levels[0].buckets == (
        BucketRef("o-mob", mob, 0, 3000, FEB_04),
        BucketRef("o-uk-b", uk, 0, 6000, JAN_19),
        BucketRef("o-uk-a", uk, 0, 6000, JAN_31),
    )
    # Each level draws on its own packages: R2 has one, R1 none.
    assert leg.levels[1].buckets == (BucketRef("o-r2", uk, 0, 6000, FEB_02),)
    assert leg.levels[2].buckets == ()


def test_buckets_outside_their_period_do_not_apply(snap: Snapshot):
    after_jan_19 = plan(snap, C1, "441234567", now=JAN_19)  # the end is exclusive
    assert [b.order_id for b in after_jan_19.levels[0].buckets] == ["o-uk-a"]
    before_jan_5 = plan(snap, C1, "447700900123", now=epoch("2026-01-04T23:59:59+00:00"))
    assert [b.order_id for b in before_jan_5.levels[0].buckets] == ["o-uk-b", "o-uk-a"]


def test_inbound_only_and_outbound_only_packages(snap: Snapshot):
    # Inbound 10 (1555, inbound only) applies to the inbound leg on the DID, not to an
    # outbound call to the same number.
    inbound = plan(snap, None, DID_C1, direction="inbound")
    assert [b.order_id for b in inbound.levels[0].buckets] == ["o-in"]
    outbound = plan(snap, C1, DID_C1)
    assert outbound.levels[0].prefix == "1"
    assert outbound.levels[0].buckets == ()
    # UK 100 is outbound only; UK Mobile 50 is "both", so it alone applies to an inbound
    # leg on a 447 number.
    both = plan(snap, C1, "447700900123", direction="inbound")
    assert [b.order_id for b in both.levels[0].buckets] == ["o-mob"]


def test_inbound_resolved_through_the_did(snap: Snapshot):
    for called in (DID_C1, "+" + DID_C1):
        leg = plan(snap, None, called, direction="inbound")
        assert (leg.account, leg.direction, leg.destination) == (C1, "inbound", DID_C1)
        assert [(lv.account, lv.prefix, lv.tariff.price_per_min_micros, lv.tariff.markup_bp)
                for lv in leg.levels] == [
            (C1, "1555", 10_000, 0), (R2, "", 4_000, 1000), (R1, "1", 2_000, 0)]
    assert plan(snap, "", DID_C1, direction="inbound").account == C1  # empty accountcode


def test_unknown_account(snap: Snapshot):
    assert refusal(snap, "2999999999", "441234") == ("unknown_account", "2999999999")
    assert refusal(snap, None, "441234") == ("unknown_account", None)
    assert refusal(snap, None, "15550000000", "inbound") == ("unknown_account", None)


def test_suspended_or_deleted_at_any_level(snap: Snapshot):
    assert refusal(snap, C2, "441234") == ("account_suspended", C2)
    assert refusal(snap, D, "441234") == ("account_suspended", D)
    assert refusal(snap, C4, "441234") == ("account_suspended", R3)  # its reseller
    # Suspension wins over a blocked destination.
    assert refusal(snap, C2, "449012345") == ("account_suspended", C2)


def test_blocked_destination_at_any_level(snap: Snapshot):
    assert refusal(snap, C1, "449012345") == ("blocked_destination", R1)  # wholesale blocks 4490
    assert refusal(snap, C1, "447112345") == ("blocked_destination", R2)  # r1-sell blocks 4471
    assert refusal(snap, C3, "449012345") == ("blocked_destination", C3)
    detail = resolve_leg(snap, C1, "outbound", "449012345", NOW_EPOCH).detail
    assert "4490" in detail and "wholesale" in detail


def test_no_rate_at_any_level(snap: Snapshot):
    assert refusal(snap, C1, "33123456") == ("no_rate", C1)  # r2-sell has no 33 nor catch-all
    assert refusal(snap, C1, "49301234") == ("no_rate", R2)  # r1-sell has no 49
    assert refusal(snap, None, DID_C3, "inbound") == ("no_rate", C3)  # wholesale: in 1, 44
    assert refusal(snap, C1, "33123456", "inbound") == ("no_rate", C1)  # r2-sell: 1555, 44


def test_a_direct_customer_is_its_own_tree(snap: Snapshot):
    leg = plan(snap, C3, "33123456")
    assert leg.tag == KS.tag(C3)
    assert [(lv.account, lv.prefix, lv.destination_name) for lv in leg.levels] == [
        (C3, "", "World")]


def test_bad_direction_is_a_programming_error(snap: Snapshot):
    with pytest.raises(ValueError, match="direction"):
        resolve_leg(snap, C1, "both", "441234", NOW_EPOCH)


def test_chain_module_is_pure():
    import subprocess
    import sys

    code = ("import sys, rater.rating.chain; "
            "bad = [m for m in ('gevent', 'redis', 'psycopg') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the shipped example dataset (config/example-dataset.md) ----------------------------

def test_example_dataset_three_level_chain(pg: psycopg.Connection):
    from datetime import UTC, datetime
    from pathlib import Path

    from loader.dataset import import_dataset_file

    now = datetime(2026, 11, 20, tzinfo=UTC)
    import_dataset_file(pg, Path(__file__).parents[1] / "config" / "example-dataset.json",
                        now=now)
    snap = Snapshot.from_bytes(build_snapshot(pg, KS))
    leg = plan(snap, "2000000021", "447700900123", now=now.timestamp())
    assert leg.tag == KS.tag("1000000001")
    assert [(lv.account, lv.rate_group, lv.prefix, lv.tariff, lv.floor_micros)
            for lv in leg.levels] == [
        ("2000000021", "r2-retail", "447",
         Tariff(80_000, connect_fee_micros=20_000, init_inc=30, inc=6, markup_bp=1000), 0),
        ("1000000002", "r1-retail", "447",
         Tariff(80_000, connect_fee_micros=20_000, init_inc=30, inc=6), -50_000_000),
        ("1000000001", "wholesale", "447", Tariff(30_000), 0),
    ]
    # UK 100 (prefix 44, 100 min) bought through R2 and R1, period Nov 1 - Dec 1.
    assert [(b.order_id, b.cap_seconds, b.period_end) for b in leg.levels[0].buckets] == [
        ("ord-5", 6000, epoch("2026-12-01T00:00:00+00:00"))]
    assert [lv.buckets for lv in leg.levels[1:]] == [(), ()]

    inbound = plan(snap, None, "+442071234567", direction="inbound", now=now.timestamp())
    assert [(lv.account, lv.prefix, lv.tariff.price_per_min_micros, lv.tariff.markup_bp)
            for lv in inbound.levels] == [
        ("2000000021", "44", 5_000, 1000), ("1000000002", "44", 5_000, 0),
        ("1000000001", "44", 2_000, 0)]
    assert refusal(snap, "2000000021", "449012345")[0] == "blocked_destination"
    assert refusal(snap, "2000000005", "441234")[0] == "account_suspended"
    assert refusal(snap, "2000000021", "33123456") == ("no_rate", "2000000021")
