"""rater_demo: the whole product on one machine with nothing installed but Python.

A composition root of its own beside `rater/`, `loader/` and `fssim/`: it starts private
Redis and PostgreSQL (`rater.embedded`), loads the example dataset (`loader`), starts the
FreeSWITCH simulator (`fssim`) and the daemon (`rater.daemon`), and drives calls through
them. It may import all three; none of them imports it, and the daemon imports neither
`loader` nor `fssim` (tests/test_import_boundaries.py).

- `cli`: the `rater-demo` command (`python -m rater_demo`); patches gevent first.
- `demo`: one run: set-up, live progress, the summary from PostgreSQL.

Nothing is imported here, so that `cli` can patch the standard library before psycopg and
redis are loaded.
"""
