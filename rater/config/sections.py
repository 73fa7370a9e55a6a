"""The configuration's sections: frozen dataclasses, every default declared once with its reason.

Each field's `doc` metadata says what it does; `Config` gathers the sections as the TOML file
names them (`[redis]`, `[[freeswitch]]`, ...). Reading the file is `loading`, the checks
across fields are `sanity`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from rater.config.urls import host_list, mask_url
from rater.reasons import Reason


def _doc(text: str, **kw: Any) -> Any:
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class RedisConfig:
    url: str = _doc(
        "Redis URL (env RATER_REDIS_URL wins): redis://, rediss://, unix://, or "
        "redis+sentinel://host[:port][,host[:port]...]/<service>[/<db>] to follow the primary "
        "that Redis Sentinel names (a failover is followed within a second), or "
        "redis+cluster://host[:port][,host[:port]...] for a Redis Cluster (any of its nodes).",
        default="redis://127.0.0.1:6379/0")
    shards: int = _doc(
        "Hash-tag shards for account trees; fixed for the life of a deployment "
        "(each shard has one outbox stream).",
        default=16,
    )
    pool_size: int = _doc("Connections in the blocking pool (per process).", default=64)
    socket_timeout: float = _doc("Seconds before a Redis command is abandoned.", default=2.0)
    pool_timeout: float = _doc("Seconds to wait for a free pooled connection.", default=2.0)
    key_prefix: str = _doc("Prefix of every key this product writes.", default="rt")

    def sentinel(self) -> tuple[list[tuple[str, int]], str, int, str | None, str | None] | None:
        """For `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`
        (the port defaults to 26379): (Sentinel addresses, service name, database, user,
        password); the user and password are the Redis servers', Sentinels are asked
        without. None for any other URL; ValueError names what is wrong."""
        parts = urlsplit(self.url)
        if parts.scheme != "redis+sentinel":
            return None
        hosts, user, password = host_list(parts, "Sentinel", 26379)
        path = [p for p in parts.path.split("/") if p]
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError("a redis+sentinel:// URL ends with /<service name>[/<db>]")
        db = int(path[1]) if len(path) == 2 else 0
        return hosts, unquote(path[0]), db, user, password

    def cluster(self) -> tuple[list[tuple[str, int]], str | None, str | None] | None:
        """For `redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]` (the
        port defaults to 6379; any reachable nodes of the cluster, it finds the others):
        (startup addresses, user, password). None for any other URL; ValueError names what
        is wrong."""
        parts = urlsplit(self.url)
        if parts.scheme != "redis+cluster":
            return None
        hosts, user, password = host_list(parts, "cluster node", 6379)
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError("a Redis Cluster has only database 0: end the URL after the hosts")
        return hosts, user, password


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = _doc(
        "PostgreSQL URL (env RATER_DATABASE_URL wins).",
        default="postgresql://postgres@127.0.0.1:5432/rater",
    )
    connect_timeout: float = _doc("Seconds to wait for a connection.", default=5.0)


@dataclass(frozen=True)
class FreeSwitchNode:
    name: str = _doc("Name used in logs and metric labels.", default="fs1")
    host: str = _doc("Event Socket host.", default="127.0.0.1")
    port: int = _doc("Event Socket port.", default=8021)
    password: str = _doc(
        "Event Socket password (env RATER_ESL_PASSWORD wins; never logged).",
        default="ClueCon",
        repr=False,
    )
    event_format: str = _doc("plain or json.", default="plain")
    connect_timeout: float = _doc("Seconds to connect and authenticate.", default=5.0)
    command_timeout: float = _doc("Seconds to wait for a command's reply.", default=5.0)
    heartbeat_interval: float = _doc(
        "FreeSWITCH's HEARTBEAT period; silence for twice this drops the connection.",
        default=20.0,
    )


@dataclass(frozen=True)
class RatingConfig:
    debit_interval: int = _doc(
        "Billed seconds reserved per chunk while a call runs.", default=60
    )
    reserve_ahead: float = _doc(
        "Reserve the next chunk this many seconds before the paid time runs out.", default=5.0
    )
    max_call_seconds: int = _doc("Upper bound for any call's allotted time.", default=14_400)
    transfer_context: str = _doc(
        "Dialplan context an authorized call is transferred to.", default="rated"
    )
    hangup_causes: dict[str, str] = _doc(
        "Hangup cause per refusal reason.",
        default_factory=lambda: {
            Reason.INSUFFICIENT_FUNDS.value: "CALL_REJECTED",
            Reason.BLOCKED_DESTINATION.value: "OUTGOING_CALL_BARRED",
            Reason.NO_RATE.value: "NO_ROUTE_DESTINATION",
            Reason.UNKNOWN_ACCOUNT.value: "CALL_REJECTED",
            Reason.ACCOUNT_SUSPENDED.value: "CALL_REJECTED",
            Reason.MAX_CHANNELS.value: "NORMAL_CIRCUIT_CONGESTION",
            Reason.INTERNAL_ERROR.value: "NORMAL_TEMPORARY_FAILURE",
        },
    )
    leg_ttl_seconds: int = _doc(
        "How long a finished leg's record (and its idempotency results) is kept in Redis.",
        default=86_400,
    )
    safety_net: str = _doc(
        "What FreeSWITCH's own hangup timer (the safety net that cuts a call when the daemon "
        "is gone) follows: 'reserved' moves it with every chunk reserved, so no call outruns "
        "its money even with the daemon down (a daemon outage longer than a chunk ends the "
        "calls); 'authorized' sets it once at the call's authorized length, so calls outlive "
        "an outage, but concurrent calls of one account may then together spend more than "
        "its funds (each was promised the same money).",
        default="reserved",
    )
    channel_sync_interval: float = _doc(
        "Seconds between checks of each node's channels against the live legs: a leg whose "
        "channel is gone is settled, a parked channel nobody decided is decided.",
        default=10.0,
    )


@dataclass(frozen=True)
class DecisionSocketConfig:
    listen: str = _doc(
        "host:port where FreeSWITCH's `socket` application asks for each call's decision "
        "(the shipped dialplan asks 127.0.0.1:8084 before it parks a call: faster call "
        "setup, less work for the switch). Empty: not listening; calls park and are "
        "decided from CHANNEL_PARK.",
        default="",
    )
    decide_within: float = _doc(
        "Seconds a call may wait on the socket for its decision; then it is released to "
        "its dialplan, which parks it.",
        default=5.0,
    )

    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, None when off. Raises ValueError if malformed."""
        if not self.listen:
            return None
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port, got {self.listen!r}")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class SwitchRecordsConfig:
    source: str = _doc(
        "Where FreeSWITCH's own per-call records are: 'postgres' (mod_cdr_pg_csv writing "
        "into `table` of the database, see config/freeswitch/cdr_pg_csv.conf.xml) or 'none'.",
        default="postgres",
    )
    table: str = _doc("Table mod_cdr_pg_csv writes (created by `loader migrate`).",
                      default="freeswitch_cdrs")
    wait_seconds: float = _doc(
        "How long a leg that ended unseen waits for its record before it is charged what "
        "was reserved.",
        default=120.0,
    )


@dataclass(frozen=True)
class FlusherConfig:
    enabled: bool = _doc("Run a flusher inside `rater run`.", default=True)
    batch_size: int = _doc("Outbox entries per Postgres transaction.", default=2000)
    block_ms: int = _doc("How long one read waits for new entries.", default=500)
    claim_idle_ms: int = _doc(
        "Entries pending this long on a dead consumer are claimed.", default=30_000
    )
    max_backoff: float = _doc("Longest wait between retries while Postgres is down.", default=10.0)


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = _doc("Serve /metrics and /health.", default=True)
    host: str = _doc("Bind address (loopback unless you mean it).", default="127.0.0.1")
    port: int = _doc("Port of /metrics and /health.", default=9464)


@dataclass(frozen=True)
class LogConfig:
    format: str = _doc("plain or json.", default="plain")
    level: str = _doc("DEBUG, INFO, WARNING or ERROR.", default="INFO")


@dataclass(frozen=True)
class SnapshotConfig:
    poll_interval: float = _doc(
        "Seconds between checks for a newer published snapshot.", default=1.0
    )
    keep_versions: int = _doc("Published snapshot versions kept in Redis.", default=3)


@dataclass(frozen=True)
class RenewalConfig:
    enabled: bool = _doc("Run package renewals inside `rater run`.", default=True)
    interval: float = _doc("Seconds between renewal runs.", default=60.0)


@dataclass(frozen=True)
class Config:
    redis: RedisConfig = field(default_factory=RedisConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    freeswitch: tuple[FreeSwitchNode, ...] = field(default_factory=lambda: (FreeSwitchNode(),))
    rating: RatingConfig = field(default_factory=RatingConfig)
    flusher: FlusherConfig = field(default_factory=FlusherConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    renewal: RenewalConfig = field(default_factory=RenewalConfig)
    switch_records: SwitchRecordsConfig = field(default_factory=SwitchRecordsConfig)
    decision_socket: DecisionSocketConfig = field(default_factory=DecisionSocketConfig)
    currency: str = "USD"

    def describe(self) -> dict[str, Any]:
        """The configuration as a dict with secrets masked (for logs and `check-config`)."""
        data = dataclasses.asdict(self)
        data["redis"]["url"] = mask_url(self.redis.url)
        data["database"]["url"] = mask_url(self.database.url)
        for node in data["freeswitch"]:
            node["password"] = "***"
        return data


def hangup_cause(cfg: Config, reason: str) -> str:
    """The configured hangup cause for a refusal reason."""
    return cfg.rating.hangup_causes.get(reason) or RatingConfig().hangup_causes[reason]
