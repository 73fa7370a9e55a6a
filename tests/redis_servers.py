"""Private redis-server processes for fault tests: AOF on disk, replicas, Sentinels.

    node = RedisNode(tmp / "r1", appendonly=True, appendfsync="everysec").start()
    node.kill()              # SIGKILL: no shutdown, no last fsync
    node.start()             # the same port, directory and AOF files
    group = SentinelGroup(tmp, sentinels=3).start()   # primary, replica, 3 Sentinels
    group.url                # redis+sentinel://127.0.0.1:p1,.../mymaster/0
    group.failover()         # SENTINEL FAILOVER; group.wait_primary(other_port)

Every process listens on a free loopback port, runs from rater/embedded.py's
`find_redis_server` (Sentinel is the same binary with `--sentinel`) and dies with the test
process (embedded.py's die-with-parent preexec), so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from rater.embedded import (
    _die_with_parent,
    _server_env,
    _terminate,
    _wait_port,
    find_redis_server,
    free_port,
)

MASTER = "mymaster"


def wait_until(cond, timeout: float, what: str, pause: float = 0.02):
    """Poll `cond` until it returns something true (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            value = cond()
            if value:
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(pause)


@dataclass
class RedisNode:
    """One redis-server. `appendonly` keeps an AOF in `workdir` (loaded again by `start`
    after a `kill`); `replicaof` makes it a replica; `config` adds directives."""

    workdir: Path
    port: int = 0
    appendonly: bool = False
    appendfsync: str = "everysec"
    replicaof: tuple[str, int] | None = None
    config: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, timeout: float = 30) -> RedisNode:
        """Start (or start again on the same port and files) and wait until it answers
        commands (an AOF being loaded answers LOADING until it is done)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.workdir / "redis.log"
        args = [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--logfile", str(log), "--daemonize", "no",
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.appendfsync, "--maxclients", "4000",
                "--repl-diskless-sync-delay", "0"]
        if self.replicaof:
            args += ["--replicaof", self.replicaof[0], str(self.replicaof[1])]
        for key, value in self.config.items():
            args += [f"--{key}", value]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGTERM), env=_server_env(),
        )
        _wait_port(self.port, self.proc, "redis-server", log, timeout)
        wait_until(self._answers, timeout, f"redis-server on {self.port} to load its data")
        return self

    def _answers(self) -> bool:
        with self.client() as c:
            return bool(c.ping())

    def kill(self) -> None:
        """SIGKILL: the process dies at once (what the kernel already has stays on disk)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kw) -> redis.Redis:
        kw.setdefault("socket_timeout", 5)
        kw.setdefault("socket_connect_timeout", 2)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def aof_file(self) -> Path:
        """The AOF file new writes are appended to: Redis 7's newest `*.incr.aof` in
        `appendonlydir`, or Redis 6's single `appendonly.aof`."""
        incr = sorted((self.workdir / "appendonlydir").glob("*.incr.aof"),
                      key=lambda p: int(p.name.split(".")[-3]))
        if incr:
            return incr[-1]
        return self.workdir / "appendonly.aof"

    def role(self) -> str:
        with self.client() as c:
            return c.info("replication")["role"]


@dataclass
class SentinelNode:
    """One Sentinel watching `master`; its configuration file (which Sentinel rewrites)
    lives in `workdir`."""

    workdir: Path
    master: tuple[str, int]
    quorum: int = 1
    down_after_ms: int = 1000
    failover_timeout_ms: int = 10_000
    port: int = 0
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> SentinelNode:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.workdir / "sentinel.log"
        conf = self.workdir / "sentinel.conf"
        if not conf.exists():
            conf.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndaemonize no\n"
                f"dir {self.workdir}\nlogfile {log}\n"
                f"sentinel monitor {MASTER} {self.master[0]} {self.master[1]} {self.quorum}\n"
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {MASTER} 1\n")
        self.proc = subprocess.Popen(
            [find_redis_server(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGTERM), env=_server_env(),
        )
        _wait_port(self.port, self.proc, "redis-sentinel", log, timeout)
        return self

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5,
                           socket_connect_timeout=2, decode_responses=True)

    def master_state(self) -> dict:
        with self.client() as c:
            return c.sentinel_master(MASTER)

    def primary(self) -> tuple[str, int]:
        with self.client() as c:
            host, port = c.sentinel_get_master_addr_by_name(MASTER)
            return host, int(port)


class SentinelGroup:
    """A primary, `replicas` replicas and `sentinels` Sentinels (quorum: a majority), every
    data node with AOF (`appendfsync`) and `config` directives. A context manager."""

    def __init__(self, root: Path, *, replicas: int = 1, sentinels: int = 3,
                 appendfsync: str = "everysec", config: dict[str, str] | None = None,
                 down_after_ms: int = 1000) -> None:
        self.root = root
        config = dict(config or {})
        self.primary_node = RedisNode(root / "node0", appendonly=True, appendfsync=appendfsync,
                                      config=config)
        self.nodes = [self.primary_node]
        self._replicas = replicas
        self._config = config
        self._appendfsync = appendfsync
        self.sentinels: list[SentinelNode] = []
        self._sentinel_count = sentinels
        self._down_after_ms = down_after_ms

    def start(self, timeout: float = 30) -> SentinelGroup:
        deadline = time.monotonic() + timeout
        try:
            self.primary_node.start()
            for i in range(self._replicas):
                node = RedisNode(self.root / f"node{i + 1}", appendonly=True,
                                 appendfsync=self._appendfsync, config=self._config,
                                 replicaof=self.primary_node.address)
                self.nodes.append(node.start())
            self.wait_replicas_in_sync(max(1.0, deadline - time.monotonic()))
            quorum = self._sentinel_count // 2 + 1
            for i in range(self._sentinel_count):
                self.sentinels.append(SentinelNode(
                    self.root / f"sentinel{i}", self.primary_node.address, quorum,
                    self._down_after_ms).start())
            self.wait_sentinels_ready(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def node_at(self, port: int) -> RedisNode:
        return next(n for n in self.nodes if n.port == port)

    def current_primary(self) -> RedisNode:
        """The node the (first reachable) Sentinel names as primary."""
        for s in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                return self.node_at(s.primary()[1])
        raise RuntimeError("no Sentinel answers")

    def wait_replicas_in_sync(self, timeout: float = 30) -> None:
        """Until every replica is connected and at the primary's replication offset."""
        primary = self.current_primary() if self.sentinels else self.primary_node
        replicas = [n for n in self.nodes if n is not primary and n.running]

        def in_sync() -> bool:
            with primary.client() as c:
                info = c.info("replication")
            offset = info["master_repl_offset"]
            seen = {info[k]["port"]: info[k]["offset"] for k in info
                    if k.startswith("slave") and isinstance(info[k], dict)
                    and info[k].get("state") == "online"}
            return all(seen.get(r.port, -1) >= offset for r in replicas)

        wait_until(in_sync, timeout, "the replicas to catch up")

    def wait_sentinels_ready(self, timeout: float = 30) -> None:
        """Until every Sentinel knows the replicas and the other Sentinels (needed to agree
        that the primary is down and to elect the one that fails over)."""
        want_replicas = len(self.nodes) - 1
        want_others = len(self.sentinels) - 1

        def ready() -> bool:
            for s in self.sentinels:
                state = s.master_state()
                if (int(state["num-slaves"]) < want_replicas
                        or int(state["num-other-sentinels"]) < want_others):
                    return False
            return True

        wait_until(ready, timeout, "the Sentinels to know each other and the replicas", 0.1)

    def failover(self) -> None:
        """SENTINEL FAILOVER, as an operator would (no agreement needed)."""
        with self.sentinels[0].client() as c:
            c.execute_command("SENTINEL", "FAILOVER", MASTER)

    def wait_primary(self, not_port: int, timeout: float = 30) -> RedisNode:
        """Until every Sentinel names a primary other than `not_port`, and that node says
        it is the primary; returns it."""

        def moved() -> RedisNode | None:
            ports = {s.primary()[1] for s in self.sentinels if s.running}
            if len(ports) != 1 or not_port in ports:
                return None
            node = self.node_at(ports.pop())
            return node if node.role() == "master" else None

        return wait_until(moved, timeout, "the Sentinels to name a new primary", 0.05)
