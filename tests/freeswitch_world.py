"""The rater side of the real-switch tier: the dataset, the daemon and the loader as
processes, what the tests read back (CDRs, balances, live legs, metrics), and the fixtures
`switch` (session: tests/freeswitch_lab.Lab) and `rated` (per test: a fresh database and
Redis, the dataset imported with `loader import`, `loader sync`, `rater run`).

Dataset (tests/freeswitch/dataset.json); retail is 0.6000/min = 10000 micro-units per
second, billed per second; every customer is under admin unless said otherwise:

    P1   2100000001  prepaid 10.00, retail (blocked prefix 4490)
    PK   2100000002  prepaid 10.00, retail, order "UK 1" (60 s on 44) with 55 s used: 5 s left
    MK   2100000003  prepaid 10.00, retail-markup (retail + 20 %: 12000 /s)
    INC  2100000004  prepaid 10.00, increments (0.10/min, connect 0.05, 30 s then 6 s)
    PP   2100000005  postpaid, balance 0, credit limit 5.00, retail
    IN   2100000006  prepaid 10.00, retail; owns DID 15550001111 (inbound 1555: 10000 /s)
    CUT  2100000007  prepaid 0.30, retail: exactly 30 s
    POOR 2100000008  prepaid 0, retail          SUSP 2100000009  suspended
    NR   2100000010  rate group with no rate for 44
    L1-3 2100000011..13  prepaid 100.00, retail (load)
    R1   1100000001  margin reseller 100.00, wholesale 0.0600/min = 1000 /s
    R2   1100000002  commission reseller under R1, 100.00, r1-sell 0.1200/min = 2000 /s
    C3   2100000020  under R2, 10.00, r2-sell 0.3000/min = 5000 /s
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
import pytest
import redis

from rater.embedded import free_port
from rater.ledger.keys import KeySpace
from tests.freeswitch_lab import Lab, LabSettings, wait_until
from tests.freeswitch_sipp import DATA, Call, SippRun, end_process

REPO = Path(__file__).resolve().parents[1]
P1, PK, MK, INC, PP, IN, CUT, POOR, SUSP, NR = (f"21000000{n:02d}" for n in range(1, 11))
L1, L2, L3 = "2100000011", "2100000012", "2100000013"
R1, R2, C3 = "1100000001", "1100000002", "2100000020"
UNKNOWN = "2999999999"           # a directory user whose accountcode no dataset knows
DID = "15550001111"
UK = "447700900123"
RETAIL_PER_S = 10_000
SHARDS = 16                      # tests/freeswitch/rater.toml


def dataset() -> dict:
    """The dataset with its order dated today (no test depends on the date)."""
    today = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime())
    return json.loads((DATA / "dataset.json").read_text().replace("@TODAY@", today))


def accounts() -> dict[str, str | None]:
    """Account -> parent (None: under admin)."""
    return {a["number"]: a.get("parent") for a in dataset()["accounts"]}


def top_account(account: str, parents: Mapping[str, str | None]) -> str:
    while parents.get(account):
        account = parents[account]  # type: ignore[assignment]
    return account


def rater_env(database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATER_")}
    return {**env, "RATER_DATABASE_URL": database_url, "RATER_REDIS_URL": redis_url}


def run_cli(module: str, args: list[str], env: Mapping[str, str], timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` (loader.cli, rater.cli) with a deadline."""
    proc = subprocess.run([sys.executable, "-m", module, *args], env=dict(env), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)}: exit {proc.returncode}\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc


class RaterProcess:
    """`python -m rater.cli run --config PATH`, its output appended to `log`."""

    def __init__(self, config: Path, metrics_port: int, env: Mapping[str, str],
                 log: Path) -> None:
        self.config = config
        self.metrics_port = metrics_port
        self.env = dict(env)
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 30) -> None:
        """Start, and wait until /health says ok (which needs the switch connected)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rater.cli", "run", "--config", str(self.config)],
            env=self.env, cwd=REPO, stdout=open(self.log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT)
        proc = self.proc
        wait_until(lambda: proc.poll() is not None or self.health().get("status") == "ok",
                   ready_timeout, "the daemon healthy and connected to the switch", 0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"rater run exited {proc.returncode}: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: a crash; nothing settled or flushed."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.proc:
            end_process(self.proc, timeout)

    def health(self) -> dict:
        try:
            return json.loads(self._get("/health"))
        except urllib.error.HTTPError as exc:   # 503 still carries the report
            return json.loads(exc.read().decode())
        except (OSError, ValueError):
            return {}

    def metrics(self) -> dict[str, float]:
        """`name{labels}` -> value."""
        try:
            text = self._get("/metrics")
        except OSError:
            return {}
        samples = (line.rpartition(" ") for line in text.splitlines()
                   if line and not line.startswith("#"))
        return {key: float(value) for key, _, value in samples}

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def _get(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.read().decode()


@dataclasses.dataclass(frozen=True)
class Cdr:
    uuid: str
    account: str
    direction: str
    caller: str
    destination: str
    billed_seconds: int
    hangup_cause: str
    settlement: str
    total_cost: int
    charges: tuple[tuple[str, int, int, int], ...]   # (account, charged s, free s, cost)


class RatedWorld:
    """The dataset imported and synced, and `rater run` against the lab's switch."""

    def __init__(self, lab: Lab, database_url: str, redis_url: str, workdir: Path, *,
                 debit_interval: int = 10, esl: tuple[str, int] | None = None) -> None:
        self.lab = lab
        self.database_url = database_url
        self.workdir = workdir
        self.env = rater_env(database_url, redis_url)
        self.config = workdir / "rater.toml"
        host, port = esl or lab.settings.esl
        metrics_port = free_port()
        self.config.write_text(string.Template((DATA / "rater.toml").read_text()).substitute(
            redis_url=redis_url, database_url=database_url, esl_host=host, esl_port=port,
            esl_password=lab.settings.password, debit_interval=debit_interval,
            metrics_port=metrics_port, decision_socket=lab.decision_socket or ""))
        self.daemon = RaterProcess(self.config, metrics_port, self.env, workdir / "daemon.log")
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.keys = KeySpace("rt", SHARDS)
        self.parents = accounts()
        self._runs = 0

    def start(self) -> RatedWorld:
        data = self.workdir / "dataset.json"
        data.write_text(json.dumps(dataset()))
        run_cli("loader.cli", ["import", str(data), "--config", str(self.config)], self.env)
        run_cli("loader.cli", ["sync", "--config", str(self.config)], self.env)
        self.lab.records_to(self.database_url)
        self.daemon.start()
        return self

    def close(self) -> None:
        self.daemon.stop()
        self.lab.hang_up_ours()
        self.redis.close()

    # --- calls ------------------------------------------------------------------------------

    def place(self, calls: list[Call], rate: float = 10) -> SippRun:
        self._runs += 1
        return self.lab.place(calls, self.workdir, f"sipp{self._runs}", rate=rate)

    def outbound(self, n: int, account: str, destination: str = UK, hold: float = 3.0,
                 *, as_user: str | None = None) -> Call:
        """Call number `n`, authenticated as `account`'s user (From: `as_user` if given)."""
        user = self.lab.users[account]
        return Call(as_user or self.lab.caller(n), destination, hold, user)

    # --- what the tests read back ---------------------------------------------------------

    def cdrs(self, callers: list[str]) -> dict[str, list[Cdr]]:
        """Caller -> its CDRs in PostgreSQL (a list: a call must have exactly one)."""
        out: dict[str, list[Cdr]] = {}
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT c.uuid, c.account, c.direction, c.caller, c.destination, "
                "c.billed_seconds, c.hangup_cause, c.settlement, c.total_cost, "
                "COALESCE((SELECT json_agg(json_build_array(x.account, x.charged_seconds, "
                "x.free_seconds, x.cost) ORDER BY x.level) FROM cdr_charges x "
                "WHERE x.cdr_uuid = c.uuid), '[]') FROM cdrs c WHERE c.caller = ANY(%s)",
                (callers,)).fetchall()
        for *fields, charges in rows:
            cdr = Cdr(*fields, charges=tuple(tuple(c) for c in charges))
            out.setdefault(cdr.caller, []).append(cdr)
        return out

    def wait_cdrs(self, callers: list[str], timeout: float = 60) -> dict[str, list[Cdr]]:
        """The CDRs of `callers` once each has one (or what there is after `timeout`)."""
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: len(self.cdrs(callers)) == len(set(callers)), timeout,
                       "a CDR for every call", 0.5)
        return self.cdrs(callers)

    def account(self, account: str) -> tuple[int, int, int]:
        """Live (balance, held, live legs) in Redis."""
        tag = self.keys.tag(top_account(account, self.parents))
        bal, held, ch = self.redis.hmget(self.keys.account(tag, account), "bal", "held", "ch")
        return int(bal or 0), int(held or 0), int(ch or 0)

    def ledger_balance(self, account: str) -> int:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            [(total,)] = conn.execute("SELECT COALESCE(sum(amount), 0) FROM ledger_entries "
                                      "WHERE account = %s", (account,)).fetchall()
        return int(total)

    def live_legs(self) -> list[str]:
        """Uuids in every shard's `live` set (legs authorized and not yet committed)."""
        return [u for n in range(SHARDS)
                for u in self.redis.smembers(self.keys.live(self.keys.tag_of_shard(n)))]

    def outbox_backlog(self) -> int:
        return sum(self.redis.xlen(s) for s in self.keys.outboxes())

    def settled(self, timeout: float = 60) -> bool:
        """Wait until no leg is live and the outbox is in PostgreSQL; False after timeout."""
        try:
            wait_until(lambda: not self.live_legs() and not self.outbox_backlog(), timeout,
                       "no live leg and an empty outbox", 0.5)
        except TimeoutError:
            return False
        return True

    def reconcile(self) -> subprocess.CompletedProcess:
        return run_cli("rater.cli", ["reconcile", "--config", str(self.config)], self.env,
                       check=False)

    def refused(self) -> dict[str, float]:
        """rater_calls_refused_total by reason, the reasons that refused any call (every
        reason is exported, at 0 until it refuses one)."""
        prefix = 'rater_calls_refused_total{reason="'
        return {k[len(prefix):-2]: v for k, v in self.daemon.metrics().items()
                if k.startswith(prefix) and v}


_LAB: list[Lab] = []   # one per session, whichever test module asks first


@pytest.fixture(scope="session")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The switch named by RATER_TEST_FREESWITCH, with the tier's files installed. Each test
    module imports this fixture (a definition of its own for pytest), so the first one sets
    the switch up and takes it down at the end of the session; the others share it."""
    settings = LabSettings.from_env()
    if isinstance(settings, str):
        pytest.skip(settings)
    if _LAB:
        yield _LAB[0]
        return
    # calls ask the daemon on its decision socket, as the shipped dialplan has them do
    lab = Lab(settings, tmp_path_factory.mktemp("switch"), [*accounts(), UNKNOWN],
              decision_socket=f"127.0.0.1:{free_port()}")
    _LAB.append(lab)
    try:
        yield lab
    finally:
        _LAB.clear()
        lab.close()


@pytest.fixture
def rated(switch: Lab, database_url: str, redis_url: str, tmp_path: Path
          ) -> Iterator[RatedWorld]:
    world = RatedWorld(switch, database_url, redis_url, tmp_path)
    try:
        yield world.start()
    finally:
        world.close()
