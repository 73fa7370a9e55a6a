"""A private MariaDB (or MySQL) server for the ASTPP tests, like rater/embedded.py's
PostgreSQL: its own datadir, socket and loopback port in a temporary directory, started
once per test session and stopped (or killed with the test process) at the end.

Debian's `mariadb-server` package provides the binaries (`mariadbd` or `mysqld`, and
`mariadb-install-db` or `mysql_install_db`). `find_binaries()` returns None without them,
and the tests skip saying so; `RATER_TEST_MYSQL_URL` names an existing server instead (its
user must be able to create databases).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from rater.embedded import _die_with_parent, _server_env, _terminate, _wait_port, free_port


def find_binaries() -> tuple[str, str] | None:
    """(server, install-db) paths, or None when MariaDB/MySQL is not installed."""
    extra = "/usr/sbin:/usr/local/sbin:" + os.environ.get("PATH", "")
    server = shutil.which("mariadbd", path=extra) or shutil.which("mysqld", path=extra)
    install = (shutil.which("mariadb-install-db", path=extra)
               or shutil.which("mysql_install_db", path=extra))
    return (server, install) if server and install else None


class MariaDBServer:
    """root with no password on 127.0.0.1:<free port>; `url(db)` for a database."""

    def __init__(self) -> None:
        # Its own directory straight under the temporary directory (not pytest's, which is
        # private to root and cleaned by concurrent runs), removed by stop().
        self.workdir = Path(tempfile.mkdtemp(prefix="rater-mariadb-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._user: pwd.struct_passwd | None = None

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def start(self) -> MariaDBServer:
        binaries = find_binaries()
        if binaries is None:
            raise RuntimeError("no mariadbd/mysqld and mariadb-install-db found")
        server, install = binaries
        user_args: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root: use its own user
            for name in ("mysql", "nobody"):
                try:
                    self._user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            if self._user is not None:
                os.chown(self.workdir, self._user.pw_uid, self._user.pw_gid)
                self.workdir.chmod(0o755)
                user_args = [f"--user={self._user.pw_name}"]
        data = self.workdir / "data"
        # its own temporary directory: bootstraps running at once (the two any-date runs)
        # otherwise share /tmp and one deletes the other's temporary tables
        tmp = self.workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        if self._user is not None:
            os.chown(tmp, self._user.pw_uid, self._user.pw_gid)
        common = ["--no-defaults", f"--datadir={data}", f"--tmpdir={tmp}", *user_args]
        result = subprocess.run(
            [install, *common, "--auth-root-authentication-method=normal", "--skip-test-db",
             "--skip-name-resolve"],
            capture_output=True, text=True, env=_server_env(), cwd=self.workdir)
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {result.stderr.strip()[-800:]}")
        self.port = free_port()
        log = self.workdir / "server.log"
        with open(log, "ab") as logf:
            self.proc = subprocess.Popen(
                [server, *common, f"--port={self.port}", "--bind-address=127.0.0.1",
                 f"--socket={self.workdir / 'mysqld.sock'}",
                 f"--pid-file={self.workdir / 'mysqld.pid'}", "--skip-name-resolve",
                 "--skip-log-bin", "--innodb-flush-log-at-trx-commit=0",
                 "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M",
                 "--performance-schema=OFF", "--sql-mode="],
                stdout=logf, stderr=subprocess.STDOUT, env=_server_env(), cwd=self.workdir,
                preexec_fn=_die_with_parent(signal.SIGTERM), start_new_session=True)
        _wait_port(self.port, self.proc, "mariadbd", log)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import pymysql

        deadline = time.monotonic() + 30
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root").close()
                return
            except pymysql.MySQLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        _terminate(self.proc, sig=signal.SIGTERM, timeout=20)
        self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)
