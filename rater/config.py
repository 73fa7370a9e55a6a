"""Configuration: one TOML file, frozen dataclasses, every default declared once with its reason.

Secrets and URLs can come from the environment (`RATER_DATABASE_URL`, `RATER_REDIS_URL`,
`RATER_ESL_PASSWORD`), which wins over the file. Validation names the key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from rater.errors import ConfigError
from rater.reasons import Reason

DEFAULT_CONFIG_PATH = Path("config/rater.toml")

REFUSAL_REASONS: tuple[Reason, ...] = tuple(Reason)


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
        hosts, user, password = _host_list(parts, "Sentinel", 26379)
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
        hosts, user, password = _host_list(parts, "cluster node", 6379)
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError("a Redis Cluster has only database 0: end the URL after the hosts")
        return hosts, user, password


def _host_list(
    parts: SplitResult, what: str, default_port: int
) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The `host[:port],...` list and credentials of a multi-host Redis URL."""
    if parts.query or parts.fragment:
        raise ValueError(f"a {parts.scheme}:// URL takes no ?query or #fragment")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        item = item.strip()
        host, port = item, ""
        if ":" in item and not item.endswith("]"):  # [v6] alone has no port
            host, _, port = item.rpartition(":")
        host = host.strip("[]")
        if not host or (port and not port.isdigit()) or not 0 < int(port or default_port) < 65536:
            raise ValueError(f"{item!r} is not a {what} host[:port]")
        hosts.append((host, int(port or default_port)))
    return hosts, unquote(user) or None, unquote(password) or None


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
    currency: str = "USD"

    def describe(self) -> dict[str, Any]:
        """The configuration as a dict with secrets masked (for logs and `check-config`)."""
        data = dataclasses.asdict(self)
        data["redis"]["url"] = mask_url(self.redis.url)
        data["database"]["url"] = mask_url(self.database.url)
        for node in data["freeswitch"]:
            node["password"] = "***"
        return data


def mask_url(url: str) -> str:
    """Hide the password of a URL (`redis://:***@host`)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")  # hosts: one, or several (Sentinel)
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


# --- loading ---------------------------------------------------------------------------

def load_config(
    path: str | Path | None = None, env: typing.Mapping[str, str] | None = None
) -> Config:
    """Read and validate a TOML file (None: defaults only), then apply the environment."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    cfg = _build(Config, raw, "")
    cfg = _apply_env(cfg, env)
    validate(cfg)
    return cfg


def _apply_env(cfg: Config, env: typing.Mapping[str, str]) -> Config:
    if env.get("RATER_REDIS_URL"):
        redis_cfg = dataclasses.replace(cfg.redis, url=env["RATER_REDIS_URL"])
        cfg = dataclasses.replace(cfg, redis=redis_cfg)
    if env.get("RATER_DATABASE_URL"):
        cfg = dataclasses.replace(
            cfg, database=dataclasses.replace(cfg.database, url=env["RATER_DATABASE_URL"])
        )
    if env.get("RATER_ESL_PASSWORD"):
        nodes = tuple(
            dataclasses.replace(n, password=env["RATER_ESL_PASSWORD"]) for n in cfg.freeswitch
        )
        cfg = dataclasses.replace(cfg, freeswitch=nodes)
    return cfg


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(hints[name], value, key)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if isinstance(value, dict):  # a single [freeswitch] table
            value = [value]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{key}: expected a non-empty list of tables")
        return tuple(_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{key}: expected a table of strings")
        return dict(value)
    if isinstance(origin, type) and issubclass(origin, types.UnionType):  # pragma: no cover
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {tp}")  # pragma: no cover


_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


def validate(cfg: Config) -> None:
    """Cross-field checks; raises ConfigError naming the key."""
    def need(cond: bool, key: str, what: str) -> None:
        if not cond:
            raise ConfigError(f"{key}: {what}")

    need(urlsplit(cfg.redis.url).scheme in _REDIS_SCHEMES, "redis.url",
         "must be a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL")
    try:  # parsed only to name what is wrong with it
        cfg.redis.sentinel()
        cfg.redis.cluster()
    except ValueError as exc:
        raise ConfigError(f"redis.url: {exc}") from None
    need(1 <= cfg.redis.shards <= 16384, "redis.shards", "must be between 1 and 16384")
    need(cfg.redis.pool_size >= 2, "redis.pool_size", "must be at least 2")
    need(cfg.redis.socket_timeout > 0, "redis.socket_timeout", "must be positive")
    need(bool(cfg.redis.key_prefix) and "{" not in cfg.redis.key_prefix, "redis.key_prefix",
         "must be non-empty and contain no '{'")
    need(urlsplit(cfg.database.url).scheme in ("postgresql", "postgres"), "database.url",
         "must be a postgresql:// URL")
    need(cfg.database.connect_timeout > 0, "database.connect_timeout", "must be positive")
    names = [n.name for n in cfg.freeswitch]
    need(len(set(names)) == len(names), "freeswitch", f"node names must be unique: {names}")
    for i, node in enumerate(cfg.freeswitch):
        k = f"freeswitch[{i}]"
        need(bool(node.name), f"{k}.name", "must not be empty")
        need(1 <= node.port <= 65535, f"{k}.port", "must be a TCP port (1-65535)")
        need(node.event_format in ("plain", "json"), f"{k}.event_format", "must be plain or json")
        need(node.connect_timeout > 0, f"{k}.connect_timeout", "must be positive")
        need(node.command_timeout > 0, f"{k}.command_timeout", "must be positive")
        need(node.heartbeat_interval > 0, f"{k}.heartbeat_interval", "must be positive")
    r = cfg.rating
    need(r.debit_interval >= 1, "rating.debit_interval", "must be at least 1 second")
    need(0 <= r.reserve_ahead < r.debit_interval, "rating.reserve_ahead",
         "must be >= 0 and below rating.debit_interval")
    need(r.max_call_seconds >= r.debit_interval, "rating.max_call_seconds",
         "must be at least rating.debit_interval")
    need(bool(r.transfer_context), "rating.transfer_context", "must not be empty")
    unknown = sorted(set(r.hangup_causes) - set(REFUSAL_REASONS))
    need(not unknown, f"rating.hangup_causes.{unknown[0] if unknown else ''}",
         f"unknown refusal reason (known: {', '.join(REFUSAL_REASONS)})")
    for reason, cause in r.hangup_causes.items():
        need(cause.isupper() and cause.replace("_", "").isalnum(),
             f"rating.hangup_causes.{reason}", f"{cause!r} is not a FreeSWITCH hangup cause")
    need(r.leg_ttl_seconds >= 60, "rating.leg_ttl_seconds", "must be at least 60")
    need(r.channel_sync_interval > 0, "rating.channel_sync_interval", "must be positive")
    need(r.safety_net in ("reserved", "authorized"), "rating.safety_net",
         "must be reserved or authorized")
    sr = cfg.switch_records
    need(sr.source in ("postgres", "none"), "switch_records.source", "must be postgres or none")
    need(sr.table.replace("_", "").isalnum() and not sr.table[:1].isdigit(),
         "switch_records.table", "must be a plain SQL identifier (letters, digits, _)")
    need(sr.wait_seconds >= 0, "switch_records.wait_seconds", "must be >= 0")
    f = cfg.flusher
    need(1 <= f.batch_size <= 100_000, "flusher.batch_size", "must be between 1 and 100000")
    need(f.block_ms >= 1, "flusher.block_ms", "must be positive")
    need(f.claim_idle_ms >= 1000, "flusher.claim_idle_ms", "must be at least 1000")
    need(f.max_backoff > 0, "flusher.max_backoff", "must be positive")
    need(0 <= cfg.metrics.port <= 65535, "metrics.port", "must be a TCP port")
    need(cfg.log.format in ("plain", "json"), "log.format", "must be plain or json")
    need(cfg.log.level in ("DEBUG", "INFO", "WARNING", "ERROR"), "log.level",
         "must be DEBUG, INFO, WARNING or ERROR")
    need(cfg.snapshot.poll_interval > 0, "snapshot.poll_interval", "must be positive")
    need(cfg.snapshot.keep_versions >= 2, "snapshot.keep_versions", "must be at least 2")
    need(cfg.renewal.interval > 0, "renewal.interval", "must be positive")
    need(len(cfg.currency) == 3 and cfg.currency.isalpha(), "currency",
         "must be a 3-letter code")


def hangup_cause(cfg: Config, reason: str) -> str:
    """The configured hangup cause for a refusal reason."""
    return cfg.rating.hangup_causes.get(reason) or RatingConfig().hangup_causes[reason]
