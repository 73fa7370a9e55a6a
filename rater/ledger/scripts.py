"""The Lua scripts of the ledger, each prefixed with the shared helpers and registered once.

redis-py's Script object runs EVALSHA and reloads the script on NOSCRIPT (a Redis restart or
SCRIPT FLUSH), and a pipeline loads its scripts before executing.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script

SCRIPT_NAMES = ("authorize", "reserve", "commit", "apply")


@cache
def script_source(name: str) -> str:
    """The full source of one script: common helpers + the operation."""
    folder = resources.files("rater.ledger") / "scripts"
    common = (folder / "common.lua").read_text()
    return common + "\n" + (folder / f"{name}.lua").read_text()


def register_scripts(client: redis.Redis | redis.RedisCluster) -> dict[str, Script]:
    """Script objects for every ledger operation, bound to `client`."""
    return {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}
