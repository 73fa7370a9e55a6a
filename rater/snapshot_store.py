"""Rating snapshots in Redis: the loader publishes, every daemon fetches and loads.

Keys (rater.ledger.keys): ``snapshot:v<N>`` holds blob N, ``snapshot:current`` the version in
force; a new version is announced on ``keyspace.snapshot_channel`` (a subscriber that missed
it finds it on its next poll of ``snapshot:current``). The blob is written before the pointer
moves, so a reader that sees a version can always fetch its blob unless it is pruned in
between, which `fetch_current` retries.

The Redis clients passed here must return bytes (``decode_responses=False``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rater.ledger.keys import KeySpace
from rater.rating.snapshot import Snapshot
from rater.rating.snapshot_format import SnapshotError

# Moves the pointer only forward unless forced, so a slow loader that built an older version
# cannot roll the daemons back. Returns {1, version} when set, {0, current} when refused.
_SET_CURRENT = """
local cur = redis.call('GET', KEYS[1])
if cur and ARGV[2] ~= '1' and tonumber(cur) > tonumber(ARGV[1]) then
  return {0, tonumber(cur)}
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return {1, tonumber(ARGV[1])}
"""


def _check_binary(redis: Any) -> None:
    if redis.get_encoder().decode_responses:  # a client, or a cluster client
        raise TypeError("snapshot blobs need a Redis client with decode_responses=False")


def publish(
    redis: Any, keyspace: KeySpace, blob: bytes, version: int, keep: int, force: bool = False
) -> bool:
    """Store blob `version`, make it current, announce it, and prune old versions.

    Returns False (and stores nothing) when a newer version is already current, unless
    `force`. Keeps the newest `keep` versions and never deletes the current one.
    """
    _check_binary(redis)
    if keep < 1:
        raise ValueError(f"keep: must be at least 1, got {keep}")
    if not force:
        current = current_version(redis, keyspace)
        if current is not None and current > version:
            return False
    redis.set(keyspace.snapshot_blob(version), blob)
    done, _current = redis.eval(_SET_CURRENT, 1, keyspace.snapshot_current, version,
                                "1" if force else "0", keyspace.snapshot_channel)
    # Refused only if another loader moved ahead meanwhile; its prune drops our blob.
    if done:
        prune(redis, keyspace, keep)
    return bool(done)


def published_versions(redis: Any, keyspace: KeySpace) -> list[int]:
    """Versions whose blobs are stored, newest first."""
    pattern = _glob_escape(keyspace.snapshot_blob(0)[:-1]) + "*"
    head = len(keyspace.snapshot_blob(0)) - 1
    versions = []
    for key in redis.scan_iter(match=pattern, count=1000):
        suffix = key[head:]
        if isinstance(suffix, bytes):
            suffix = suffix.decode("ascii", "replace")
        if suffix.isdigit():
            versions.append(int(suffix))
    return sorted(versions, reverse=True)


def prune(redis: Any, keyspace: KeySpace, keep: int) -> list[int]:
    """Delete all but the newest `keep` versions, never the current one; returns the deleted."""
    current = current_version(redis, keyspace)
    doomed = [v for v in published_versions(redis, keyspace)[keep:] if v != current]
    if doomed:
        redis.delete(*(keyspace.snapshot_blob(v) for v in doomed))
    return doomed


def current_version(redis: Any, keyspace: KeySpace) -> int | None:
    """The published version in force, or None (a cheap poll for the daemon's watcher)."""
    value = redis.get(keyspace.snapshot_current)
    return None if value is None else int(value)


def fetch_current(redis: Any, keyspace: KeySpace) -> tuple[int, bytes] | None:
    """``(version, blob)`` of the current snapshot, or None when none was published.

    Raises SnapshotError when the pointer names a blob that stays missing.
    """
    _check_binary(redis)
    version = None
    for _ in range(3):
        version = current_version(redis, keyspace)
        if version is None:
            return None
        blob = redis.get(keyspace.snapshot_blob(version))
        if blob is not None:
            return version, blob
    raise SnapshotError(f"snapshot:current names v{version} but its blob is missing")


def load_current(
    redis: Any, keyspace: KeySpace, known_version: int | None = None,
    pause: Callable[[], None] | None = None,
) -> Snapshot | None:
    """Fetch and load the current snapshot; None when none is published or it is still
    `known_version` (so a watcher can call this on every poll).

    Raises SnapshotError for a corrupt or unreadable blob, or one built for another shard
    count: the caller keeps the snapshot it has. `pause` is passed to `Snapshot.from_bytes`.
    """
    if known_version is not None and current_version(redis, keyspace) == known_version:
        return None
    fetched = fetch_current(redis, keyspace)
    if fetched is None:
        return None
    version, blob = fetched
    if version == known_version:
        return None
    snap = Snapshot.from_bytes(blob, pause=pause)
    if snap.version != version:
        raise SnapshotError(f"snapshot:v{version} holds a blob of version {snap.version}")
    if snap.shards != keyspace.shards:
        raise SnapshotError(
            f"snapshot v{version} was built for {snap.shards} shards, this process uses "
            f"{keyspace.shards} (redis.shards must match the loader's)"
        )
    return snap


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
