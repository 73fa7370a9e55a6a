"""Every Prometheus metric, declared once, on a registry of its own (one per daemon).

No label carries an account or a number: cardinality stays bounded whatever the traffic.
Labels whose values are known in advance are exported at 0 from the start, so rules and
dashboards (ops/) find a series before the first event of its kind.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from rater.reasons import Reason, SettlementKind

# Park-to-decision latency buckets: sub-millisecond to a second.
DECISION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)

# Label values known in advance (refusal reasons: rater.reasons.Reason).
RESERVATION_RESULTS = ("ok", "short", "refused", "error")
SETTLEMENTS = tuple(SettlementKind)
DECISION_SOCKET_RESULTS = ("asked", "released", "foreign")
CHANNEL_SYNC_FINDINGS = ("gone", "parked", "readmit", "answered")
RENEWAL_OUTCOMES = ("renewed", "released", "failed")


class Metrics:
    """The daemon's metrics. Names and labels here are the documented contract (README)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls_authorized = Counter(
            "rater_calls_authorized", "Legs authorized and transferred.", registry=r)
        self.calls_refused = Counter(
            "rater_calls_refused", "Legs refused at park, by reason.", ["reason"], registry=r)
        self.live_legs = Gauge(
            "rater_live_legs", "Legs authorized and not yet settled, in this daemon.",
            registry=r)
        self.reservations = Counter(
            "rater_reservations", "Chunk reservations by result (ok, short, refused, error).",
            ["result"], registry=r)
        self.calls_cut_off = Counter(
            "rater_calls_cut_off", "Calls hung up by the rater because funds ran out.",
            registry=r)
        self.commits = Counter(
            "rater_commits", "Legs settled, by settlement (final, switch_record, unanswered, "
            "as_reserved).", ["settlement"], registry=r)
        self.commit_failures = Counter(
            "rater_commit_failures", "Commits given up after repeated script errors (the "
            "leg stays live in Redis and is settled again at the next start).", registry=r)
        self.unbilled_legs = Counter(
            "rater_unbilled_legs", "Legs Redis lost (a failover, a machine crash) that could "
            "not be authorized again: their calls go unbilled (the log has the details).",
            registry=r)
        self.channel_sync = Counter(
            "rater_channel_sync", "What the check of the nodes' channels found and did: "
            "gone (a leg whose channel ended unseen), parked (a parked channel nobody had "
            "decided), readmit (an admit sent again), answered (a lost answer learned).",
            ["found"], registry=r)
        self.charged = Counter(
            "rater_charged_micros", "Money charged on settled legs, in micro-units, by chain "
            "level (0 = customer).", ["level"], registry=r)
        self.decision_seconds = Histogram(
            "rater_park_decision_seconds", "From the call's question received (CHANNEL_PARK, "
            "or its data on the decision socket) to the decision sent.",
            buckets=DECISION_BUCKETS, registry=r)
        self.decision_socket = Counter(
            "rater_decision_socket_calls", "Calls that asked on the decision socket: "
            "asked (every one), released (let go undecided: their dialplan parks them), "
            "foreign (from a switch that is none of the configured nodes; released too).",
            ["result"], registry=r)
        self.esl_connected = Gauge(
            "rater_esl_connected", "1 when the Event Socket connection to a node is up.",
            ["node"], registry=r)
        self.esl_events = Counter(
            "rater_esl_events", "Events received per node.", ["node"], registry=r)
        self.esl_reconnects = Counter(
            "rater_esl_reconnects", "Event Socket (re)connections per node.", ["node"],
            registry=r)
        self.event_queue_depth = Gauge(
            "rater_event_queue_depth", "Events received and not yet handled.", registry=r)
        self.redis_errors = Counter(
            "rater_redis_errors", "Redis operations that failed.", registry=r)
        self.postgres_errors = Counter(
            "rater_postgres_errors", "PostgreSQL operations that failed.", registry=r)
        self.outbox_lag_entries = Gauge(
            "rater_outbox_lag_entries", "Outbox entries not yet written to PostgreSQL.",
            registry=r)
        self.outbox_lag_seconds = Gauge(
            "rater_outbox_lag_seconds", "Age of the oldest outbox entry not yet written.",
            registry=r)
        self.flushed_entries = Counter(
            "rater_flushed_entries", "Outbox entries made durable in PostgreSQL.", registry=r)
        self.snapshot_version = Gauge(
            "rater_snapshot_version", "Version of the rating snapshot in use.", registry=r)
        self.snapshot_age = Gauge(
            "rater_snapshot_age_seconds", "Seconds since the snapshot in use was built.",
            registry=r)
        self.renewals = Counter(
            "rater_package_renewals", "Package periods renewed or released, by outcome.",
            ["outcome"], registry=r)
        self.oldest_leg_seconds = Gauge(
            "rater_oldest_live_leg_seconds", "Seconds since this process took up its oldest "
            "live leg (0 with none; a restart counts again from adoption).", registry=r)
        self.max_call_seconds = Gauge(
            "rater_max_call_seconds", "rating.max_call_seconds, for alerts.", registry=r)
        for metric, values in ((self.calls_refused, tuple(Reason)),
                               (self.reservations, RESERVATION_RESULTS),
                               (self.commits, SETTLEMENTS),
                               (self.channel_sync, CHANNEL_SYNC_FINDINGS),
                               (self.decision_socket, DECISION_SOCKET_RESULTS),
                               (self.renewals, RENEWAL_OUTCOMES)):
            for value in values:
                metric.labels(value)
