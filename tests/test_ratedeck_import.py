"""`loader import-rates`: CSV decks into a rate group, on a real PostgreSQL."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from loader.cli import main as loader_main
from loader.ratedeck import (
    IMPORT_LOCK,
    acquire_import_lock,
    import_rate_deck,
    import_rate_deck_file,
    max_price_micros,
)
from rater.errors import InputError, RaterError
from rater.rating.tariff import Tariff, paid_cost_parts

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DECK = REPO / "config" / "example-deck.csv"
HEADER = "prefix,destination,direction,price_per_min,connect_fee,init_inc,inc\n"


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url) as c:
        c.execute("INSERT INTO rate_groups (name) VALUES ('deck'), ('other')")
        c.commit()
        yield c


def rates(pg: psycopg.Connection, group: str = "deck") -> dict[tuple[str, str], tuple]:
    return {
        (r[0], r[1]): r[2:]
        for r in pg.execute(
            "SELECT direction, prefix, destination, price_per_min, connect_fee, init_inc, inc"
            " FROM rates r JOIN rate_groups g ON g.id = r.rate_group_id WHERE g.name = %s",
            (group,),
        )
    }


def deck(conn: psycopg.Connection, text: str, *, replace: bool = False,
         group: str = "deck") -> dict:
    return import_rate_deck(conn, group, io.StringIO(text), source="deck.csv", replace=replace)


def refused(conn, pg, text: str, *needles: str, group: str = "deck") -> str:
    before = rates(pg)
    with pytest.raises(InputError) as info:
        deck(conn, text, group=group)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    assert rates(pg) == before
    return message


def test_example_deck(conn, pg):
    summary = import_rate_deck_file(conn, "deck", EXAMPLE_DECK)
    assert summary == {"rate_group": "deck", "rows": 37, "inserted": 37, "updated": 0,
                       "unchanged": 0, "deleted": 0}
    got = rates(pg)
    # "^447.*" is stored as 447; "0.1000" is 100000 micro-units.
    assert got[("outbound", "447")] == ("United Kingdom Mobile", 100000, 50000, 30, 6)
    assert got[("outbound", "8801")][0] == "Bangladesh Mobile, Grameenphone"
    assert got[("inbound", "1555")] == ("US DID", 5000, 0, 1, 1)


def test_only_prefix_and_price_are_required(conn, pg):
    deck(conn, "price_per_min,prefix\n0.01,44\n")
    assert pg.execute(
        "SELECT direction, destination, price_per_min, connect_fee, included_seconds,"
        " init_inc, inc FROM rates").fetchone() == ("outbound", "", 10000, 0, 0, 1, 1)


def test_upsert_updates_and_adds(conn, pg):
    deck(conn, HEADER + "44,UK,outbound,0.01,0,1,1\n447,UK Mobile,outbound,0.05,0,30,6\n")
    summary = deck(conn, HEADER + "44,UK,outbound,0.01,0,1,1\n447,UK Mobile,outbound,0.06,0,30,6\n"
                   "49,DE,outbound,0.02,0,1,1\n")
    assert summary["inserted"] == 1 and summary["updated"] == 1 and summary["unchanged"] == 1
    assert rates(pg)[("outbound", "447")][1] == 60000
    assert len(rates(pg)) == 3


def test_replace_deletes_unlisted_rates_of_the_directions_present(conn, pg):
    deck(conn, HEADER + "44,UK,outbound,0.01,0,1,1\n447,UK Mobile,outbound,0.05,0,30,6\n"
         "1555,US DID,inbound,0.005,0,1,1\n")
    deck(conn, HEADER + "49,DE,outbound,0.02,0,1,1\n", group="other")
    summary = deck(conn, HEADER + "447,UK Mobile,outbound,0.05,0,30,6\n", replace=True)
    assert summary["deleted"] == 1 and summary["unchanged"] == 1
    # Inbound is not in the deck, so its rates stay; other groups are never touched.
    assert set(rates(pg)) == {("outbound", "447"), ("inbound", "1555")}
    assert set(rates(pg, "other")) == {("outbound", "49")}


def test_without_replace_nothing_is_deleted(conn, pg):
    deck(conn, HEADER + "44,UK,outbound,0.01,0,1,1\n")
    deck(conn, HEADER + "49,DE,outbound,0.02,0,1,1\n")
    assert set(rates(pg)) == {("outbound", "44"), ("outbound", "49")}


def test_bad_lines_are_all_named_and_nothing_is_written(conn, pg):
    deck(conn, HEADER + "44,UK,outbound,0.01,0,1,1\n")
    lines = [HEADER.strip()] + [f"{100 + i},X,outbound,0.01,0,1,1" for i in range(20)]
    lines[5] = "105,X,outbound,0.01,0,0,1"      # line 6: init_inc below 1
    lines[16] = '106,X,outbound,"0,10",0,1,1'   # line 17
    lines[18] = "107x,X,outbound,0.01,0,1,1"    # line 19
    lines.append("108,X,sideways,0.01,0,1,1")   # line 22
    lines.append("109,X,outbound,-1,0,1,1")     # line 23
    message = refused(
        conn, pg, "\n".join(lines) + "\n",
        "deck.csv: 5 bad line(s), nothing imported",
        "deck.csv:6: init_inc: 0 must be between 1 and",
        "deck.csv:17: price_per_min: '0,10' is not a decimal number",
        "deck.csv:19: prefix: '107x' is not a prefix",
        "deck.csv:22: direction: 'sideways' is not outbound or inbound",
        "deck.csv:23: price_per_min: '-1' must not be negative",
    )
    # Line 17 also repeats line 8's prefix, but a bad line is reported once.
    assert message.count("\ndeck.csv:") == 5


def test_a_late_bad_line_into_an_empty_group_writes_nothing(conn, pg):
    # An empty group is filled by COPY straight into `rates`: the rows already sent must go.
    good = "".join(f"{10000 + i},X,outbound,0.01,0,1,1\n" for i in range(5000))
    refused(conn, pg, HEADER + good + "99,X,outbound,0.01,0,1,x\n",
            "deck.csv:5002: inc: 'x' is not a whole number of seconds")
    assert pg.execute("SELECT count(*) FROM rates").fetchone() == (0,)


def test_duplicate_lines_name_both(conn, pg):
    refused(conn, pg, HEADER + "44,UK,outbound,0.01,0,1,1\n49,DE,outbound,0.01,0,1,1\n"
            "^44.*,UK again,outbound,0.02,0,1,1\n44,UK DID,inbound,0.01,0,1,1\n",
            "deck.csv:4: duplicate of line 2 (outbound prefix '44')")


def test_unknown_and_missing_columns(conn, pg):
    refused(conn, pg, "prefix,pricee,destination\n44,0.01,UK\n",
            "deck.csv:1: unknown column 'pricee' (known: prefix, destination",
            "deck.csv:1: missing column 'price_per_min'")
    refused(conn, pg, "prefix,price_per_min,prefix\n44,0.01,45\n",
            "deck.csv:1: column 'prefix' appears twice")
    refused(conn, pg, "", "deck.csv:1: empty file")


def test_wrong_field_count_and_blank_lines(conn, pg):
    refused(conn, pg, HEADER + "44,UK,outbound,0.01,0,1\n",
            "deck.csv:2: 6 fields, the header has 7")
    summary = deck(conn, HEADER + "\n44,UK,outbound,0.01,0,1,1\n\n")
    assert summary["rows"] == 1


def test_message_is_capped(conn, pg):
    text = "prefix,price_per_min\n" + "".join(f"{i},bad\n" for i in range(1, 131))
    message = refused(conn, pg, text, "130 bad line(s)", "... and 80 more bad line(s)")
    assert message.count("is not a decimal number") == 50


def test_unknown_rate_group(conn, pg):
    with pytest.raises(InputError, match="no rate group named 'nope'"):
        deck(conn, HEADER, group="nope")


def test_imports_wait_for_each_other_with_a_deadline(conn, database_url):
    with psycopg.connect(database_url) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (IMPORT_LOCK,))
        with pytest.raises(RaterError, match="another import"), conn.transaction():
            acquire_import_lock(conn, timeout=0.2)
    with conn.transaction():  # released with the other transaction
        acquire_import_lock(conn, timeout=1)


def test_price_cap_matches_the_redis_scripts_limit():
    for markup in (0, 1000, 25_000):
        cap = max_price_micros(markup)
        paid_cost_parts(Tariff(cap, markup_bp=markup))
        with pytest.raises(ValueError):
            paid_cost_parts(Tariff(cap + 1, markup_bp=markup))


def test_loader_import_rates_cli(database_url, conn, pg, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RATER_DATABASE_URL", database_url)  # the environment wins
    config = REPO / "config" / "rater.toml"
    args = ["import-rates", "--config", str(config), "--rate-group", "deck", "--json"]
    assert loader_main([*args, str(EXAMPLE_DECK)]) == 0
    assert json.loads(capsys.readouterr().out)["inserted"] == 37
    small = tmp_path / "small.csv"
    small.write_text("prefix,price_per_min\n44,0.02\n")
    assert loader_main([*args, "--replace", str(small)]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == 33  # 34 outbound - "44"
    bad = tmp_path / "bad.csv"
    bad.write_text("prefix,price_per_min,colour\n44,0.02,red\n")
    assert loader_main([*args, str(bad)]) == 1
    assert f"{bad}:1: unknown column 'colour'" in capsys.readouterr().err
