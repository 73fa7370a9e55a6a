-- FreeSWITCH's own record of every rated A leg, written by mod_cdr_pg_csv as the channel
-- is destroyed (config/freeswitch/cdr_pg_csv.conf.xml maps channel variables to these
-- columns). The daemon reads it to settle a leg whose hangup it did not see (a daemon
-- restart, a lost event) from the real answer and hangup times. Written by FreeSWITCH,
-- never by the rater: no constraint may make its INSERT fail (a failed insert is only
-- spooled to a CSV file on the switch), so nothing here is unique or NOT NULL but uuid.
CREATE TABLE freeswitch_cdrs (
    uuid               text NOT NULL,
    accountcode        text,
    rater_direction    text,
    caller_id_number   text,
    destination_number text,
    start_uepoch       bigint,
    answer_uepoch      bigint,
    end_uepoch         bigint,
    billmsec           bigint,
    hangup_cause       text,
    written_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX freeswitch_cdrs_uuid ON freeswitch_cdrs (uuid);
-- for a retention job: DELETE FROM freeswitch_cdrs WHERE written_at < now() - interval '30 days'
CREATE INDEX freeswitch_cdrs_written_at ON freeswitch_cdrs (written_at);
