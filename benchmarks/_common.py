"""Shared by the benchmark scripts: servers, the machine, percentiles, process CPU, metrics.

Not a benchmark itself. Scripts import it as `from _common import ...` (run as files) or
`from benchmarks._common import ...` (run as modules); both work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
RATER = str(Path(PYTHON).with_name("rater"))


@dataclass
class Servers:
    """Where Redis and PostgreSQL are, and their server pids when they are ours (for CPU)."""

    redis_url: str
    database_url: str
    redis_pid: int | None = None
    postgres_pid: int | None = None
    embedded: bool = False
    redis_pids: dict[str, int] | None = None   # several Redis processes (a cluster)


def _pid(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """Private servers (rater.embedded) unless RATER_BENCH_REDIS_URL and
    RATER_BENCH_DATABASE_URL are both set (then those must be scratch servers; their
    server pids, for CPU figures, may come in RATER_BENCH_REDIS_PID / _POSTGRES_PID)."""
    db_url = os.environ.get("RATER_BENCH_DATABASE_URL")
    redis_url = os.environ.get("RATER_BENCH_REDIS_URL")
    if db_url and redis_url:
        yield Servers(redis_url, db_url, _pid("RATER_BENCH_REDIS_PID"),
                      _pid("RATER_BENCH_POSTGRES_PID"))
        return
    from rater.embedded import EmbeddedServers

    with EmbeddedServers() as s:
        yield Servers(redis_url or s.redis.url, db_url or s.postgres.url,
                      s.redis.proc.pid if s.redis.proc else None,
                      s.postgres.proc.pid if s.postgres.proc else None, embedded=True)


@contextlib.contextmanager
def with_cluster(srv: Servers) -> Iterator[Servers]:
    """`srv`'s PostgreSQL with a private Redis Cluster instead of its Redis: three primaries
    and three replicas on loopback (tests/redis_cluster.py, the tests' own)."""
    from tests.redis_cluster import ClusterGroup

    with tempfile.TemporaryDirectory(prefix="rater-cluster-") as tmp:
        group = ClusterGroup(Path(tmp), node_timeout_ms=5000).start()
        try:
            yield dataclasses.replace(
                srv, redis_url=group.url, redis_pid=None,
                redis_pids={f"redis-{i + 1}": n.proc.pid for i, n in enumerate(group.nodes)
                            if n.proc is not None})
        finally:
            group.stop()


def machine() -> dict[str, str]:
    """CPU model, cores, memory, Python: what the README records with the figures."""
    info = {"python": platform.python_version(), "nproc": str(os.cpu_count())}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core",
                               "Hypervisor vendor"):
                info[key.strip()] = value.strip()
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory"] = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    info["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    return info


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of `values`, nearest rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


@dataclass
class CpuMeter:
    """CPU seconds used by named processes (with their children) between start() and stop()."""

    pids: dict[str, int | None]
    _start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _cpu(pid: int) -> float:
        import psutil

        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return 0.0
        total = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def start(self) -> CpuMeter:
        self._start = {n: self._cpu(p) for n, p in self.pids.items() if p}
        self._t0 = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        """{name: share of one core over the interval}."""
        wall = time.monotonic() - self._t0
        self.used = {n: self._cpu(p) - self._start[n] for n, p in self.pids.items() if p}
        return {n: used / wall for n, used in self.used.items()}


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def prometheus_samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[m[1] + (m[2] or "")] = float(m[3])
    return out


def histogram_quantile(samples: dict[str, float], name: str, q: float) -> float:
    """Prometheus' histogram_quantile over the `name_bucket` samples (linear in a bucket)."""
    buckets = []
    for key, value in samples.items():
        if key.startswith(name + "_bucket{"):
            le = re.search(r'le="([^"]+)"', key)[1]
            buckets.append((float("inf") if le == "+Inf" else float(le), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return prev_le


def wait_for(predicate, timeout: float, every: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f}s")
        time.sleep(every)
