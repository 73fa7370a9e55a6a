"""Sanity checks across the whole configuration, each raising ConfigError naming the key."""

from __future__ import annotations

from urllib.parse import urlsplit

from rater.config.sections import Config
from rater.errors import ConfigError
from rater.reasons import Reason

REFUSAL_REASONS: tuple[Reason, ...] = tuple(Reason)

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
    ds = cfg.decision_socket
    try:
        ds.address()
    except ValueError as exc:
        need(False, "decision_socket.listen", str(exc))
    need(ds.decide_within > 0, "decision_socket.decide_within", "must be positive")
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
