"""One cooperativeness check, in a subprocess patched like `rater run`: a ticker greenlet
stays on time while the ledger and the flusher do their I/O. A psycopg or redis that blocks
the loop (imported before gevent patched the standard library) would stall it for the
length of every query; the bound here is far above normal jitter and far below that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
from gevent import monkey
monkey.patch_all()

import json, os, sys, time
import gevent
import psycopg
import redis

from loader.migrate import migrate
from rater.config import FlusherConfig
from rater.flusher.flusher import Flusher
from rater.flusher.writer import postgres_connector
from rater.ledger.client import Entry, Ledger
from rater.ledger.keys import KeySpace

ks = KeySpace("rt", 4)
client = redis.Redis.from_url(os.environ["REDIS_URL"])
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    migrate(conn)
ledger = Ledger(client, ks)
tag = ks.tag("2000000001")
client.hset(ks.account(tag, "2000000001"), mapping={"bal": 0, "held": 0, "ch": 0})

late = []
def ticker():
    while True:
        due = time.monotonic() + 0.01
        gevent.sleep(0.01)
        late.append(time.monotonic() - due)
tick = gevent.spawn(ticker)

def money(w):
    for i in range(3000):
        op = f"t{w}-{i}"
        ledger.apply(op, tag, [Entry("2000000001", 1, op, "topup", op)])
workers = [gevent.spawn(money, w) for w in range(4)]
gevent.joinall(workers, raise_error=True)

flusher = Flusher(client, postgres_connector(os.environ["DATABASE_URL"]), ks,
                  FlusherConfig(batch_size=500, block_ms=10), "coop")
flushed = 0
while flushed < 12000:
    flushed += flusher.flush_once(block_ms=10)
tick.kill()
late.sort()
print(json.dumps({"ticks": len(late), "p50": late[len(late) // 2], "max": late[-1],
                  "flushed": flushed}))
"""


def test_a_ticker_stays_on_time_during_ledger_and_flusher_io(database_url, redis_url):
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["flushed"] == 12000
    assert result["ticks"] >= 50
    assert result["max"] < 0.5, result
