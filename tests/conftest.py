"""Test harness: real Redis and PostgreSQL servers for every run.

By default the run starts private servers on free loopback ports in a temporary directory
(rater/embedded.py). `RATER_TEST_REDIS_URL` / `RATER_TEST_DATABASE_URL` point the run at
existing servers instead; the Redis database given is FLUSHED by the tests, and on the
PostgreSQL server each test gets a fresh database created from a migrated template (the
role needs CREATEDB).
"""

from __future__ import annotations

# The daemon, the simulator and the flusher run in-process under gevent in the tests, so the
# standard library is patched first, as `rater` does (psycopg and redis choose their waiting
# strategy at import time).
from gevent import monkey

monkey.patch_all()

import dataclasses  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import psycopg  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402

from loader.migrate import migrate  # noqa: E402
from rater.config import Config, load_config  # noqa: E402
from rater.embedded import EmbeddedServers  # noqa: E402

if TYPE_CHECKING:
    from tests.redis_cluster import ClusterGroup

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO / "config" / "rater.toml"
EXAMPLE_DATASET = REPO / "config" / "example-dataset.json"
# The example dataset's own "now": imported as of it, its orders are in their live period.
EXAMPLE_NOW = datetime(2026, 11, 20, tzinfo=UTC)


def _with_db(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@dataclasses.dataclass
class Servers:
    redis_url: str
    pg_server_url: str  # any database on the server; tests get their own

    _counter = itertools.count()

    def new_database(self, template: str | None = None) -> str:
        name = f"rater_test_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            tmpl = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
        return _with_db(self.pg_server_url, name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    redis_url = os.environ.get("RATER_TEST_REDIS_URL")
    pg_url = os.environ.get("RATER_TEST_DATABASE_URL")
    embedded: EmbeddedServers | None = None
    if not redis_url or not pg_url:
        embedded = EmbeddedServers().start()
        redis_url = redis_url or embedded.redis.url
        pg_url = pg_url or embedded.postgres.url
    try:
        yield Servers(redis_url=redis_url, pg_server_url=pg_url)
    finally:
        if embedded is not None:
            embedded.stop()


@pytest.fixture(scope="session")
def template_db(servers: Servers) -> Iterator[str]:
    """A migrated database that each test's database is copied from."""
    url = servers.new_database()
    with psycopg.connect(url) as conn:
        migrate(conn)
    name = urlsplit(url).path.lstrip("/")
    yield name
    servers.drop_database(url)


@pytest.fixture
def database_url(servers: Servers, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    url = servers.new_database(template=template_db)
    yield url
    servers.drop_database(url)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `also_on_cluster` run twice: on the test Redis and on the test Redis
    Cluster (ids `[redis]`, `[cluster]`); only on Redis with RATER_TEST_CLUSTER=0 (the
    any-date runs: a moved clock touches nothing cluster-specific)."""
    if (metafunc.definition.get_closest_marker("also_on_cluster")
            and "redis_url" in metafunc.fixturenames):
        backends = ["redis"] if os.environ.get("RATER_TEST_CLUSTER") == "0" else [
            "redis", "cluster"]
        metafunc.parametrize("redis_backend", backends, indirect=True)


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "redis")


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, servers: Servers, redis_backend: str) -> str:
    """The test Redis (or, for `[cluster]` runs, the test cluster), emptied for this test.
    On the cluster, `redis.Redis.from_url(redis_url)` in a test gives a RedisCluster."""
    if redis_backend == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        cluster.wait_ok()
        with cluster.client() as client:
            client.flushall()
        plain = redis.Redis.from_url

        def from_url(url: str, **kw: object) -> redis.Redis:
            return cluster.client(**kw) if url == cluster.url else plain(url, **kw)

        request.getfixturevalue("monkeypatch").setattr(
            redis.Redis, "from_url", staticmethod(from_url))
        return cluster.url
    client = redis.Redis.from_url(servers.redis_url)
    client.flushdb()
    client.close()
    return servers.redis_url


@pytest.fixture
def cfg(database_url: str, redis_url: str) -> Config:
    """The example configuration pointed at this test's servers."""
    return load_config(
        EXAMPLE_CONFIG,
        env={"RATER_DATABASE_URL": database_url, "RATER_REDIS_URL": redis_url},
    )


@pytest.fixture
def pg(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this test's database, for checking rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def example(cfg: Config, pg: psycopg.Connection, database_url: str, redis_url: str,
            monkeypatch: pytest.MonkeyPatch) -> Config:
    """The example dataset imported as of EXAMPLE_NOW and synced into Redis; the CLI's
    environment points at this test's servers and it runs from the repository."""
    from loader.dataset import import_dataset_file
    from loader.sync import redis_client, sync_once

    import_dataset_file(pg, EXAMPLE_DATASET, now=EXAMPLE_NOW)
    rds = redis_client(cfg)
    sync_once(cfg, rds)
    rds.close()
    monkeypatch.setenv("RATER_DATABASE_URL", database_url)
    monkeypatch.setenv("RATER_REDIS_URL", redis_url)
    monkeypatch.chdir(REPO)
    return cfg


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterGroup]:
    """A private Redis Cluster (three primaries, three replicas), one per run, or the one
    `RATER_TEST_REDIS_CLUSTER_URL` names (FLUSHED by the tests)."""
    from tests.redis_cluster import ClusterGroup, ExternalCluster

    url = os.environ.get("RATER_TEST_REDIS_CLUSTER_URL")
    if url:
        yield ExternalCluster(url)
        return
    group = ClusterGroup(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield group
    finally:
        group.stop()
