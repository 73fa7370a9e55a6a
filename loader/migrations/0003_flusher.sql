-- Outbox entries the flusher could not turn into rows (bad JSON, missing fields, wrong types,
-- or rejected by PostgreSQL). They are kept here, raw, and acknowledged, so one bad entry
-- never blocks its stream and nothing is dropped silently. An operator fixes and replays them.
CREATE TABLE outbox_dead_letters (
    stream          text NOT NULL,            -- the Redis stream key
    entry_id        text NOT NULL,            -- the stream entry id (<ms>-<seq>)
    raw             text NOT NULL,            -- the entry as read (undecodable bytes escaped)
    error           text NOT NULL,            -- what was wrong
    consumer        text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    PRIMARY KEY (stream, entry_id)
);
CREATE INDEX outbox_dead_letters_open ON outbox_dead_letters(created_at) WHERE resolved_at IS NULL;
