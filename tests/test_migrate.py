"""`loader migrate` through the CLI entry point, and `rater check-config` on a broken file."""

from __future__ import annotations

from pathlib import Path

import psycopg

from loader.cli import main as loader_main
from loader.migrate import available_migrations

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "rater.toml"


def test_migrate_twice_is_harmless(servers, monkeypatch, capsys):
    url = servers.new_database()  # empty: not from the migrated template
    try:
        monkeypatch.setenv("RATER_DATABASE_URL", url)
        assert loader_main(["migrate", "--config", str(CONFIG)]) == 0
        first = capsys.readouterr().out
        assert "applied: 0001_initial.sql" in first
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute("INSERT INTO rate_groups (name) VALUES ('kept')")
            version = pg.execute("SELECT version FROM reference_version").fetchone()
        assert loader_main(["migrate", "--config", str(CONFIG)]) == 0
        assert "schema is up to date" in capsys.readouterr().out
        with psycopg.connect(url, autocommit=True) as pg:
            applied = [r[0] for r in pg.execute(
                "SELECT name FROM schema_migrations ORDER BY version")]
            assert applied == [name for _, name, _ in available_migrations()]
            assert pg.execute("SELECT name FROM rate_groups").fetchall() == [("kept",)]
            assert pg.execute("SELECT version FROM reference_version").fetchone() == version
    finally:
        servers.drop_database(url)


def test_migrate_reports_an_unreachable_database(monkeypatch, capsys):
    monkeypatch.setenv("RATER_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:1/none")
    assert loader_main(["migrate", "--config", str(CONFIG)]) == 1
    err = capsys.readouterr().err
    assert "cannot connect to PostgreSQL" in err and "secret" not in err


def test_check_config_names_the_broken_key(tmp_path, capsys):
    from rater.cli import main as rater_main

    broken = tmp_path / "broken.toml"
    broken.write_text('[rating]\ndebit_interval = 0\n')
    assert rater_main(["check-config", str(broken)]) != 0
    assert "rating.debit_interval" in capsys.readouterr().err

    typo = tmp_path / "typo.toml"
    typo.write_text('[redis]\nurll = "redis://127.0.0.1:6379/0"\n')
    assert rater_main(["check-config", str(typo)]) != 0
    assert "redis.urll: unknown key" in capsys.readouterr().err

    assert rater_main(["check-config", str(CONFIG)]) == 0
