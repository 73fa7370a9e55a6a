"""End-to-end world: simulator over TCP -> daemon -> real Redis -> flusher -> real PostgreSQL.

Prices are chosen so amounts are easy to work out by hand: `retail` charges 0.6000/min, i.e.
exactly 10000 micro-units per second, billed per second.

    admin
    ├── 2000000001 P1   prepaid, 1.00, retail                     (100 s of talk)
    ├── 2000000002 PP   postpaid, 0 with a 0.30 credit limit      (30 s)
    ├── 2000000004 PK   prepaid, 1.00, retail, order "UK 1" (60 free seconds, outbound 44)
    ├── 2000000005 IN   prepaid, 1.00, retail, DID 15550001111, order "In 1" (inbound only)
    ├── 2000000006 SH   prepaid, 0.05, retail                     (5 s)
    ├── 2000000007 CC   prepaid, 6.00, retail                     (600 s = 10 minutes)
    └── 1000000001 R1   margin reseller, 10.00, wholesale (0.0600/min = 1000/s)
        └── 1000000002 R2  commission reseller, 10.00, r1-sell (0.1200/min = 2000/s)
            └── 2000000003 C3  prepaid, 10.00, r2-sell (0.3000/min = 5000/s)
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from fssim.records import RecordWriter
from fssim.simulator import Simulator
from loader.dataset import import_dataset
from loader.sync import redis_client, sync_once
from rater.config import Config, FreeSwitchNode
from rater.daemon import Daemon

P1, PP, C3, PK, IN, SH, CC = (
    "2000000001", "2000000002", "2000000003", "2000000004", "2000000005", "2000000006",
    "2000000007",
)
R1, R2 = "1000000001", "1000000002"
DID_IN = "15550001111"
UK = "447700900123"


def _rates(out44: str, in1555: str | None = None) -> list[dict[str, Any]]:
    rates = [{"prefix": "44", "price_per_min": out44, "destination": "UK"}]
    if in1555:
        rates.append({"prefix": "1555", "price_per_min": in1555, "direction": "inbound"})
    return rates


def dataset() -> dict[str, Any]:
    def acct(number: str, balance: str, group: str, parent: str | None = None,
             kind: str = "customer", **kw: Any) -> dict[str, Any]:
        return {"number": number, "parent": parent, "kind": kind, "balance": balance,
                "rate_group": group, **kw}

    def product(name: str, applicable: str, prefix: str) -> dict[str, Any]:
        return {"name": name, "owner": "admin", "price": "1.00", "free_minutes": 1,
                "applicable_for": applicable, "billing_type": "recurring",
                "billing_days": 30, "prefixes": [{"prefix": prefix}]}

    return {
        "currency": "USD",
        "rate_groups": [
            {"name": "retail", "owner": "admin", "rates": _rates("0.6000", "0.6000"),
             "blocked_prefixes": ["4490"]},
            {"name": "wholesale", "owner": "admin", "rates": _rates("0.0600")},
            {"name": "r1-sell", "owner": R1, "rates": _rates("0.1200")},
            {"name": "r2-sell", "owner": R2, "rates": _rates("0.3000")},
        ],
        "accounts": [
            acct(P1, "1.00", "retail"),
            acct(PP, "0", "retail", billing="postpaid", credit_limit="0.30"),
            acct(PK, "1.00", "retail"),
            acct(IN, "1.00", "retail"),
            acct(SH, "0.05", "retail"),
            acct(CC, "6.00", "retail"),
            acct(R1, "10.00", "wholesale", kind="reseller", reseller_type="margin"),
            acct(R2, "10.00", "r1-sell", parent=R1, kind="reseller",
                 reseller_type="commission"),
            acct(C3, "10.00", "r2-sell", parent=R2),
        ],
        "dids": [{"number": DID_IN, "account": IN}],
        "products": [product("UK 1", "outbound", "44"), product("In 1", "inbound", "1555")],
        "orders": [
            {"id": "ord-pk", "account": PK, "product": "UK 1",
             "ordered_at": _today(), "used_seconds": 0},
            {"id": "ord-in", "account": IN, "product": "In 1",
             "ordered_at": _today(), "used_seconds": 0},
        ],
    }


def _today() -> str:
    return time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime())


@dataclasses.dataclass
class World:
    cfg: Config
    sim: Simulator
    daemon: Daemon
    database_url: str
    sims: list[Simulator] = dataclasses.field(default_factory=list)

    def call(self, account: str | None, destination: str = UK, **kw: Any) -> str:
        return self.sim.place_call(account, destination, **kw)

    def wait(self, uuid: str, timeout: float = 30) -> Any:
        return self.sim.wait_for_hangup(uuid, timeout)

    def settle(self, timeout: float = 30) -> None:
        """Wait until the daemon settled every leg and the outbox reached PostgreSQL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (len(self.daemon.handler.legs) == 0 and self.daemon.dispatcher.pending == 0
                    and self.daemon.flusher.lag()[0] == 0):
                return
            time.sleep(0.05)
        raise TimeoutError(f"not settled: {len(self.daemon.handler.legs)} legs live, "
                           f"{self.daemon.flusher.lag()[0]} outbox entries")

    def wait_cdr(self, uuid: str, timeout: float = 30) -> None:
        """Wait until the CDR of `uuid` is in PostgreSQL, then until everything settled."""
        deadline = time.monotonic() + timeout
        while not self.sql("SELECT 1 FROM cdrs WHERE uuid = %s", uuid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no CDR for {uuid}")
            time.sleep(0.05)
        self.settle(max(1.0, deadline - time.monotonic()))

    def sync(self) -> None:
        rds = redis_client(self.cfg)
        try:
            sync_once(self.cfg, rds)
        finally:
            rds.close()

    def wait_snapshot(self, version_above: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while (self.daemon.snapshots.version or 0) <= version_above:
            if time.monotonic() > deadline:
                raise TimeoutError("the daemon did not load the new snapshot")
            time.sleep(0.05)

    def sql(self, query: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def balance(self, account: str) -> int:
        acct = self.daemon.snapshots.current.account(account)
        return self.daemon.ledger.account_state(acct.tag, account).balance_micros

    def pg_balance(self, account: str) -> int:
        [(total,)] = self.sql(
            "SELECT COALESCE(sum(amount), 0) FROM ledger_entries WHERE account = %s", account)
        return int(total)

    def cdr(self, uuid: str) -> dict[str, Any]:
        [(doc,)] = self.sql(
            "SELECT json_build_object('cdr', row_to_json(c), 'charges', "
            "(SELECT json_agg(row_to_json(x) ORDER BY x.level) FROM cdr_charges x "
            " WHERE x.cdr_uuid = c.uuid)) FROM cdrs c WHERE c.uuid = %s", uuid)
        return doc if isinstance(doc, dict) else json.loads(doc)


@contextmanager
def running_world(cfg: Config, database_url: str, *, debit_interval: int = 2,
                  data: dict[str, Any] | None = None, event_format: str = "plain",
                  password: str = "ClueCon", nodes: int = 1, switch_records: bool = True,
                  record_wait: float = 3.0, channel_sync: float = 1.0,
                  decision_socket: bool = False) -> Iterator[World]:
    """Import the world, sync it, start the simulator and the daemon against it. With
    `switch_records`, the simulator writes FreeSWITCH's per-call records (mod_cdr_pg_csv)
    into the test database; `channel_sync` is the daemon's channel check interval. With
    `decision_socket` the daemon listens on one (a free port, kept in `world.cfg` so that a
    restarted daemon listens there again) and every simulator asks it before parking;
    without, the daemon listens on none (the example config's 127.0.0.1:8084 is not taken)."""
    with psycopg.connect(database_url) as conn:
        import_dataset(conn, data or dataset())
    writer = RecordWriter(database_url) if switch_records else None
    sims = [Simulator(password=password, heartbeat=20, record_writer=writer).start()
            for _ in range(nodes)]
    sim = sims[0]
    cfg = dataclasses.replace(
        cfg,
        freeswitch=tuple(
            FreeSwitchNode(name=f"fs{i + 1}", host="127.0.0.1", port=s.port, password=password,
                           event_format=event_format, command_timeout=5.0)
            for i, s in enumerate(sims)),
        rating=dataclasses.replace(cfg.rating, debit_interval=debit_interval,
                                   reserve_ahead=min(0.5, debit_interval / 2),
                                   channel_sync_interval=channel_sync),
        switch_records=dataclasses.replace(cfg.switch_records, wait_seconds=record_wait),
        flusher=dataclasses.replace(cfg.flusher, block_ms=50),
        metrics=dataclasses.replace(cfg.metrics, port=0),
        renewal=dataclasses.replace(cfg.renewal, enabled=False),
        snapshot=dataclasses.replace(cfg.snapshot, poll_interval=0.2),
        decision_socket=dataclasses.replace(
            cfg.decision_socket, listen="127.0.0.1:0" if decision_socket else ""),
    )
    world = World(cfg, sim, Daemon(cfg), database_url, sims)
    world.sync()
    world.daemon.start()
    if world.daemon.decisions is not None:
        host, port = world.daemon.decisions.address
        world.cfg = dataclasses.replace(cfg, decision_socket=dataclasses.replace(
            cfg.decision_socket, listen=f"{host}:{port}"))
        for s in sims:
            s.decision_socket = (host, port)
    try:
        for s in sims:
            s.wait_for_listener(["CHANNEL_PARK"], timeout=10)
        deadline = time.monotonic() + 10
        while not all(link.ready for link in world.daemon.nodes.values()):
            assert time.monotonic() < deadline, "the daemon did not connect"
            time.sleep(0.02)
        yield world
    finally:
        world.daemon.stop()
        for s in sims:
            s.close()
        if writer is not None:
            writer.close()


def repo_file(*parts: str) -> Path:
    return Path(__file__).resolve().parents[1].joinpath(*parts)
