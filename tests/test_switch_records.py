"""FreeSWITCH's per-call records as mod_cdr_pg_csv writes them (migration 0007), read back
by the daemon; the simulator's writer fills the same columns."""

from __future__ import annotations

import psycopg
import pytest

from rater.calls.switch_records import PostgresSwitchRecords, SwitchRecord, record_from_row

T0 = 1_795_454_385_000_000


def insert_as_freeswitch(pg_url: str, *values: str | None) -> None:
    """The INSERT mod_cdr_pg_csv issues: every value a string literal or NULL."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO freeswitch_cdrs (uuid, accountcode, rater_direction, caller_id_number,"
            " destination_number, start_uepoch, answer_uepoch, end_uepoch, billmsec,"
            " hangup_cause) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", values)


def test_a_record_written_by_the_switch_is_found_by_uuid(database_url, pg):
    insert_as_freeswitch(database_url, "u1", "2000000001", "outbound", "1555", "4477",
                         str(T0 - 3_000_000), str(T0), str(T0 + 12_300_000), "12300",
                         "NORMAL_CLEARING")
    records = PostgresSwitchRecords(database_url, "freeswitch_cdrs")
    try:
        assert records.find("u1") == SwitchRecord("u1", T0 - 3_000_000, T0, T0 + 12_300_000,
                                                  12_300, "NORMAL_CLEARING")
        assert records.find("u2") is None
    finally:
        records.close()


def test_an_unanswered_record_has_no_answer_time(database_url, pg):
    insert_as_freeswitch(database_url, "u3", None, "outbound", "1555", "4477",
                         str(T0), "0", str(T0 + 2_000_000), "0", "ORIGINATOR_CANCEL")
    records = PostgresSwitchRecords(database_url, "freeswitch_cdrs")
    try:
        assert records.find("u3") == SwitchRecord("u3", T0, 0, T0 + 2_000_000, 0,
                                                  "ORIGINATOR_CANCEL")
    finally:
        records.close()


def test_an_unreachable_database_finds_nothing_and_says_so(caplog):
    records = PostgresSwitchRecords("postgresql://postgres@127.0.0.1:1/none", "freeswitch_cdrs",
                                    connect_timeout=1)
    assert records.find("u1") is None
    assert "cannot read the record of u1" in caplog.text


@pytest.mark.parametrize("row", [
    (str(T0), str(T0 + 5), str(T0), "1", "X"),        # hangup before the answer
    (str(T0), "0", "0", "0", "X"),                    # no hangup time
    ("soon", str(T0), str(T0 + 5), "1", "X"),         # not a number
    (str(T0), str(T0), str(T0 + 5), "-1", "X"),       # negative duration
])
def test_a_record_that_makes_no_sense_settles_nothing(row):
    assert record_from_row("u1", *row) is None
