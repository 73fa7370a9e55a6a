"""The rating snapshot: built from PostgreSQL (tests/rating_world.py), looked up, serialized."""

from __future__ import annotations

import random
import struct

import psycopg
import pytest

from loader.snapshot import ReferenceData, build_snapshot, encode_snapshot
from rater.ledger.keys import KeySpace
from rater.rating.snapshot import OrderInfo, Snapshot
from rater.rating.snapshot_format import FORMAT_VERSION, SnapshotError, read_header
from rater.rating.tariff import Tariff
from tests.rating_world import C1, C2, C3, DID_C1, R1, R2, epoch, import_world

KS = KeySpace(prefix="rt", shards=16)


@pytest.fixture
def world_blob(pg: psycopg.Connection) -> bytes:
    import_world(pg)
    return build_snapshot(pg, KS, built_at=1_700_000_000.5)


@pytest.fixture
def snap(world_blob: bytes) -> Snapshot:
    return Snapshot.from_bytes(world_blob)


def group_id(snap: Snapshot, name: str) -> int:
    return snap.account({"wholesale": R1, "r1-sell": R2, "r2-sell": C1}[name]).rate_group


# --- header and accounts ---------------------------------------------------------------

def test_version_and_built_at_come_from_the_build(pg: psycopg.Connection, snap: Snapshot):
    (pg_version,) = pg.execute("SELECT version FROM reference_version").fetchone()
    assert snap.version == pg_version
    assert snap.built_at == 1_700_000_000.5
    assert snap.shards == 16
    again = build_snapshot(pg, KS)
    assert read_header(again)[1:] == (pg_version, read_header(again)[2], 16)
    assert Snapshot.from_bytes(again).counts() == snap.counts()


def test_account_info(snap: Snapshot):
    c1 = snap.account(C1)
    assert (c1.number, c1.parent, c1.kind, c1.reseller_type, c1.billing) == (
        C1, R2, "customer", None, "postpaid")
    assert (c1.credit_limit_micros, c1.floor_micros, c1.max_channels, c1.status) == (
        20_000_000, -20_000_000, 2, "active")
    assert c1.top == R1 and c1.tag == KS.tag(R1)
    r2 = snap.account(R2)
    assert (r2.kind, r2.reseller_type, r2.billing, r2.floor_micros, r2.top) == (
        "reseller", "commission", "prepaid", 0, R1)
    c3 = snap.account(C3)  # directly under admin: its own tree
    assert (c3.parent, c3.top, c3.tag) == (None, C3, KS.tag(C3))
    assert snap.account(C2).status == "suspended"
    assert snap.account("2999999999") is None
    assert [a.number for a in snap.chain(C1)] == [C1, R2, R1]
    assert snap.chain("2999999999") == ()
    assert snap.rate_group(c1.rate_group).name == "r2-sell"


def test_dids(snap: Snapshot):
    assert snap.did_account(DID_C1) == C1
    assert snap.did_account("+" + DID_C1) is None  # exact numbers; the chain strips "+"
    assert snap.did_account("15551230001") is None


# --- rates -----------------------------------------------------------------------------

def test_longest_prefix_match_catch_all_and_no_match(snap: Snapshot):
    wholesale, r2_sell = group_id(snap, "wholesale"), group_id(snap, "r2-sell")
    m = snap.rate(wholesale, "outbound", "447700900123")
    assert (m.prefix, m.destination, m.tariff.price_per_min_micros) == ("447", "UK Mobile", 40_000)
    m = snap.rate(wholesale, "outbound", "441234567")
    assert (m.prefix, m.destination, m.tariff.price_per_min_micros) == ("44", "United Kingdom",
                                                                        10_000)
    m = snap.rate(wholesale, "outbound", "33123456")
    assert (m.prefix, m.destination, m.tariff.price_per_min_micros) == ("", "World", 500_000)
    assert snap.rate(r2_sell, "outbound", "33123456") is None
    m = snap.rate(r2_sell, "outbound", "442079460000")
    assert (m.prefix, m.destination) == ("4420", "London")
    assert snap.rate(r2_sell, "outbound", "4") is None  # shorter than every prefix
    assert snap.rate(999_999, "outbound", "44") is None  # unknown group


def test_directions_are_separate(snap: Snapshot):
    wholesale, r2_sell = group_id(snap, "wholesale"), group_id(snap, "r2-sell")
    m = snap.rate(r2_sell, "inbound", "15551230000")
    assert (m.prefix, m.destination, m.tariff.price_per_min_micros) == ("1555", "US DID", 10_000)
    m = snap.rate(r2_sell, "outbound", "15551230000")
    assert (m.prefix, m.destination, m.tariff.price_per_min_micros) == ("1", "North America",
                                                                        15_000)
    m = snap.rate(r2_sell, "inbound", "447700900123")
    assert (m.prefix, m.destination, m.tariff.price_per_min_micros) == ("44", "UK DID", 6_000)
    m = snap.rate(wholesale, "inbound", "15551230000")
    assert (m.prefix, m.destination, m.tariff.price_per_min_micros) == ("1", "North America DID",
                                                                        2_000)
    assert snap.rate(wholesale, "inbound", "33140000000") is None  # no inbound catch-all
    assert snap.rate(wholesale, "sideways", "44") is None


def test_tariff_carries_the_groups_markup(snap: Snapshot):
    r1_sell = group_id(snap, "r1-sell")
    assert snap.rate(r1_sell, "outbound", "447700900123").tariff == Tariff(
        price_per_min_micros=60_000, connect_fee_micros=10_000, included_seconds=0,
        init_inc=30, inc=6, markup_bp=1000)
    assert snap.rate(r1_sell, "inbound", "15551230000").tariff.markup_bp == 1000
    assert snap.rate(group_id(snap, "wholesale"), "outbound", "44").tariff.markup_bp == 0


def test_blocked_prefixes(snap: Snapshot):
    wholesale, r1_sell = group_id(snap, "wholesale"), group_id(snap, "r1-sell")
    assert snap.blocked_prefix(wholesale, "449012345") == "4490"
    assert snap.blocked_prefix(wholesale, "4491") is None
    assert snap.blocked_prefix(wholesale, "449") is None
    assert snap.blocked_prefix(r1_sell, "447112345") == "4471"
    assert snap.blocked_prefix(r1_sell, "449012345") is None  # another group's list


# --- products and orders ---------------------------------------------------------------

def test_orders_of_an_account_earliest_end_first(snap: Snapshot):
    orders = snap.orders_of(C1)
    assert [o.order_id for o in orders] == ["o-uk-b", "o-uk-a", "o-in", "o-old", "o-zero",
                                           "o-mob"]
    uk_b = orders[0]
    assert uk_b == OrderInfo("o-uk-b", uk_b.product_id, 0, epoch("2025-12-20T00:00:00+00:00"),
                             epoch("2026-01-19T00:00:00+00:00"))
    assert [o.order_id for o in snap.orders_of(R2)] == ["o-r2"]
    assert snap.orders_of(R1) == ()
    assert snap.orders_of("2999999999") == ()


def test_products_and_their_prefixes(snap: Snapshot):
    by_name = {snap.product(o.product_id).name: o.product_id for o in snap.orders_of(C1)}
    uk, mob, inbound = by_name["UK 100"], by_name["UK Mobile 50"], by_name["Inbound 10"]
    p = snap.product(uk)
    assert (p.applicable_for, p.free_seconds, p.status, p.owner) == ("outbound", 6000, "active",
                                                                     None)
    assert snap.product(mob).applicable_for == "both"
    assert snap.product(inbound).applicable_for == "inbound"
    assert snap.product(by_name["Old"]).status == "inactive"
    assert snap.product(by_name["Zero"]).free_seconds == 0
    assert snap.product_match_len(uk, "447700900123") == 2
    assert snap.product_match_len(mob, "447700900123") == 3
    assert snap.product_match_len(mob, "441234") == -1
    assert snap.product_match_len(inbound, "15551230000") == 4
    assert snap.product_match_len(999_999, "44") == -1


def test_only_active_orders_are_in_the_snapshot(pg: psycopg.Connection):
    import_world(pg)
    pg.execute("UPDATE orders SET status = 'terminated', ended_at = now() WHERE id = 'o-uk-a'")
    snap = Snapshot.from_bytes(build_snapshot(pg, KS))
    assert "o-uk-a" not in [o.order_id for o in snap.orders_of(C1)]
    assert len(snap.orders_of(C1)) == 5


# --- synthetic data: scale-shaped correctness and the format ---------------------------

def _synthetic(n_rates: int, seed: int = 7) -> tuple[ReferenceData, dict]:
    rng = random.Random(seed)
    groups = [(1, "g1", 0, None), (2, "g2", 250, None), (3, "g3", 0, None)]
    table: dict[tuple[int, str, str], tuple] = {}
    while len(table) < n_rates:
        gid = rng.choice((1, 2, 3))
        direction = rng.choice(("outbound", "inbound"))
        prefix = rng.choice(("1", "44", "49", "7", "91", "234")) + str(rng.randrange(10**6))[
            : rng.randrange(0, 6)]
        price = rng.choice((1000, 2000, 15_000, 120_000))
        table[(gid, direction, prefix)] = (f"dest {prefix[:3]}", price)
    table[(3, "outbound", "")] = ("Anywhere", 999_000)
    rates = [(g, d, p, name, price, 0, 0, 1, 1) for (g, d, p), (name, price) in table.items()]
    rng.shuffle(rates)
    ref = ReferenceData(version=42, rate_groups=groups, rates=rates, accounts=[
        ("1000000001", None, "reseller", "margin", "prepaid", 0, 1, 0, "active")])
    return ref, table


def _brute_force(table: dict, gid: int, direction: str, number: str) -> tuple | None:
    for n in range(len(number), -1, -1):
        hit = table.get((gid, direction, number[:n]))
        if hit is not None:
            return number[:n], *hit
    return None


def test_lookups_match_a_brute_force_longest_prefix_search():
    ref, table = _synthetic(5000)
    snap = Snapshot.from_bytes(encode_snapshot(ref, KS))
    rng = random.Random(1)
    for _ in range(3000):
        gid = rng.choice((1, 2, 3))
        direction = rng.choice(("outbound", "inbound"))
        number = rng.choice(("1", "44", "49", "7", "91", "234", "33")) + str(
            rng.randrange(10**9))
        want = _brute_force(table, gid, direction, number)
        got = snap.rate(gid, direction, number)
        if want is None:
            assert got is None, (gid, direction, number)
        else:
            assert (got.prefix, got.destination, got.tariff.price_per_min_micros) == want
            assert got.tariff.markup_bp == (250 if gid == 2 else 0)


def test_identical_tariffs_and_names_are_stored_once():
    ref, table = _synthetic(5000)
    snap = Snapshot.from_bytes(encode_snapshot(ref, KS))
    counts = snap.counts()
    assert counts["rates"] == len(table)
    # Connect fee, included seconds and increments are alike; the markup is 0 or 250.
    assert counts["terms"] == 2
    assert counts["rate_records"] == len({
        (price, gid == 2, name) for (gid, _, _), (name, price) in table.items()})
    assert counts["rate_records"] < len(table) // 3
    assert counts["destinations"] == len({name for name, _ in table.values()})


def test_round_trip_is_byte_identical_and_lookup_identical():
    ref, _ = _synthetic(2000)
    blob = encode_snapshot(ref, KS, built_at=5.0)
    ref2, _ = _synthetic(2000)
    assert encode_snapshot(ref2, KS, built_at=5.0) == blob  # deterministic
    a, b = Snapshot.from_bytes(blob), Snapshot.from_bytes(bytes(blob))
    assert (a.version, a.built_at, a.size) == (42, 5.0, len(blob))
    for number in ("4412345", "7", "91234", "2345", "33"):
        for gid in (1, 2, 3):
            assert a.rate(gid, "outbound", number) == b.rate(gid, "outbound", number)


def test_a_newer_format_is_refused_with_a_clear_error():
    blob = bytearray(encode_snapshot(_synthetic(10)[0], KS))
    blob[4] = FORMAT_VERSION + 1
    with pytest.raises(SnapshotError, match=r"format 2 is newer .* upgrade the daemon"):
        Snapshot.from_bytes(bytes(blob))
    blob[4] = 0
    with pytest.raises(SnapshotError, match=r"older than .* `loader sync`"):
        Snapshot.from_bytes(bytes(blob))


def test_garbage_and_corruption_are_refused():
    with pytest.raises(SnapshotError, match="bad magic"):
        Snapshot.from_bytes(b"not a snapshot at all, not even close")
    blob = bytearray(encode_snapshot(_synthetic(10)[0], KS))
    blob[-3] ^= 0xFF
    with pytest.raises(SnapshotError, match="checksum"):
        Snapshot.from_bytes(bytes(blob))
    # A header that lies about its body is caught by the checksum, not by a crash.
    head = struct.calcsize("<4sBB2xQdII")
    with pytest.raises(SnapshotError):
        Snapshot.from_bytes(bytes(blob[:head + 10]))


def test_a_parent_loop_is_refused_at_build_time():
    ref = ReferenceData(version=1, rate_groups=[(1, "g", 0, None)], accounts=[
        ("1000000001", "1000000002", "reseller", "margin", "prepaid", 0, 1, 0, "active"),
        ("1000000002", "1000000001", "reseller", "margin", "prepaid", 0, 1, 0, "active"),
    ])
    with pytest.raises(SnapshotError, match="loops"):
        encode_snapshot(ref, KS)


def test_pause_runs_between_sections():
    calls = []
    Snapshot.from_bytes(encode_snapshot(_synthetic(10)[0], KS), pause=lambda: calls.append(1))
    assert len(calls) >= 20
