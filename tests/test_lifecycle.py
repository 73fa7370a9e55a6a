"""Package lifecycle on real PostgreSQL and Redis: orders through reseller chains, setup fees,
refusals that change nothing, idempotent retries, opt-ins, assignments, terminations by
charge type, "apply to existing customers" and email notifications.

The world (balances in the dataset; Redis seeded with the same amounts):

    admin
    ├── RM  1000000001 margin reseller                 opt-in UK 28 at 6.00 / setup 1.50
    │   ├── RMM 1000000011 margin under margin         opt-in at 8.00 / setup 2.00
    │   │   └── CMM 2000000011 customer
    │   ├── RMC 1000000012 commission under margin     opt-in (sells at RM's 6.00 / 1.50)
    │   │   └── CMC 2000000012 customer
    │   └── CM  2000000001 customer of RM
    ├── RC  1000000002 commission reseller             opt-in (sells at admin's 5.00 / 1.00)
    │   ├── RCM 1000000021 margin under commission     opt-in at 7.00 / setup 1.20
    │   │   └── CCM 2000000021 customer
    │   ├── RCC 1000000022 commission under commission opt-in (sells at admin's 5.00 / 1.00)
    │   │   └── CCC 2000000022 customer
    │   └── CC  2000000002 customer of RC
    ├── CA  2000000003 prepaid customer of admin
    └── CP  2000000004 postpaid customer of admin, credit limit 10.00, balance 0

UK 28 (admin): buy cost 3.00, price 5.00, setup 1.00, commission 10 %, recurring every 28
days, 100 free minutes, utilized days. Every account starts with 100.00 unless said.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis

from loader.dataset import import_dataset
from rater.config import Config
from rater.errors import InputError, OperationConflict
from rater.ledger.keys import KeySpace
from rater.money import parse_micros
from rater.packages import store
from rater.packages.context import Env, Refused, open_env
from rater.packages.offers import opt_in
from rater.packages.orders import apply_product, place_order
from rater.packages.termination import terminate

RM, RMM, RMC, RC, RCM = "1000000001", "1000000011", "1000000012", "1000000002", "1000000021"
CM, CMM, CMC, CC, CCM = "2000000001", "2000000011", "2000000012", "2000000002", "2000000021"
RCC, CCC = "1000000022", "2000000022"
CA, CP = "2000000003", "2000000004"
UK = "UK 28"
T0 = datetime(2028, 1, 10, 9, 0, tzinfo=UTC)
KS = KeySpace(prefix="rt", shards=16)
M = 1_000_000  # micro-units per currency unit


def _account(number: str, parent: str | None, kind: str, group: str, **kw) -> dict:
    acct = {"number": number, "parent": parent, "kind": kind, "rate_group": group,
            "balance": "100.00", **kw}
    if kind == "reseller":
        acct.setdefault("reseller_type", "margin")
    return acct


def product(name: str, **kw) -> dict:
    base = {"name": name, "owner": "admin", "buy_cost": "3.00", "price": "5.00",
            "setup_fee": "1.00", "commission_percent": "10", "billing_type": "recurring",
            "billing_days": 28, "free_minutes": 100, "charge_type": "utilized_days",
            "prefixes": [{"prefix": "44"}]}
    return {**base, **kw}


WORLD = {
    "currency": "USD",
    "rate_groups": [{"name": f"g-{owner}", "owner": owner}
                    for owner in ("admin", RM, RMM, RMC, RC, RCM, RCC)],
    "accounts": [
        _account(RM, None, "reseller", "g-admin"),
        _account(RMM, RM, "reseller", f"g-{RM}"),
        _account(RMC, RM, "reseller", f"g-{RM}", reseller_type="commission"),
        _account(RC, None, "reseller", "g-admin", reseller_type="commission"),
        _account(RCM, RC, "reseller", f"g-{RC}"),
        _account(RCC, RC, "reseller", f"g-{RC}", reseller_type="commission"),
        _account(CM, RM, "customer", f"g-{RM}"),
        _account(CMM, RMM, "customer", f"g-{RMM}"),
        _account(CMC, RMC, "customer", f"g-{RMC}"),
        _account(CC, RC, "customer", f"g-{RC}"),
        _account(CCM, RCM, "customer", f"g-{RCM}"),
        _account(CCC, RCC, "customer", f"g-{RCC}"),
        _account(CA, None, "customer", "g-admin"),
        _account(CP, None, "customer", "g-admin", billing="postpaid", credit_limit="10.00",
                 balance="0"),
    ],
    "products": [product(UK)],
    "reseller_products": [
        {"reseller": RM, "product": UK, "price": "6.00", "setup_fee": "1.50"},
        {"reseller": RMM, "product": UK, "price": "8.00", "setup_fee": "2.00"},
        {"reseller": RMC, "product": UK},
        {"reseller": RC, "product": UK},
        {"reseller": RCM, "product": UK, "price": "7.00", "setup_fee": "1.20"},
        {"reseller": RCC, "product": UK},
    ],
}


# --- helpers shared with test_renewals.py and test_visibility.py ---------------------------

def load_world(cfg: Config, rds: redis.Redis, world: dict | None = None) -> None:
    """Import a world into PostgreSQL and seed its balances in Redis (what `loader sync`
    does for a fresh database)."""
    world = world or WORLD
    with psycopg.connect(cfg.database.url) as conn:
        import_dataset(conn, world, source="test", now=T0)
        for a in world["accounts"]:
            top = store.account_path(conn, a["number"])[-1].number
            rds.hset(KS.account(KS.tag(top), a["number"]),
                     mapping={"bal": parse_micros(a.get("balance", "0")), "held": 0, "ch": 0})


def top_of(account: str) -> str:
    for a in WORLD["accounts"]:
        if a["number"] == account:
            return account if a["parent"] is None else top_of(a["parent"])
    raise KeyError(account)


def balance(rds: redis.Redis, account: str) -> int:
    return int(rds.hget(KS.account(KS.tag(top_of(account)), account), "bal"))


def set_balance(rds: redis.Redis, account: str, micros: int) -> None:
    rds.hset(KS.account(KS.tag(top_of(account)), account), "bal", micros)


def bucket(rds: redis.Redis, account: str, order_id: str) -> dict:
    return rds.hgetall(KS.bucket(KS.tag(top_of(account)), order_id))


def outbox(rds: redis.Redis) -> list[dict]:
    """Every money operation in the outboxes, in the order written (per shard)."""
    ops = []
    for key in KS.outboxes():
        ops += [json.loads(f["e"]) for _, f in rds.xrange(key)]
    return ops


def ledger_entries(rds: redis.Redis) -> dict[str, tuple[str, int]]:
    """entry id -> (account, amount) over every outbox; asserts no id appears twice."""
    seen: dict[str, tuple[str, int]] = {}
    for op in outbox(rds):
        for e in op["ledger"]:
            assert e["id"] not in seen, f"ledger entry {e['id']} written twice"
            seen[e["id"]] = (e["account"], e["amount"])
    return seen


def order_row(pg: psycopg.Connection, order_id: str) -> store.OrderRow | None:
    return store.order(pg, order_id)


@pytest.fixture
def world(cfg: Config, rds: redis.Redis) -> None:
    load_world(cfg, rds)


@pytest.fixture
def env(cfg: Config) -> Iterator[Env]:
    with open_env(cfg) as e:
        yield e


# --- orders through the chain ------------------------------------------------------------

@pytest.mark.parametrize("account, expected", [
    # customer of admin: the product's price and setup fee
    (CA, [(CA, 5_000_000, 1_000_000)]),
    # margin reseller under admin: customer pays RM's 6.00 + 1.50; RM the buy cost 3.00 and
    # admin's setup fee 1.00
    (CM, [(CM, 6_000_000, 1_500_000), (RM, 3_000_000, 1_000_000)]),
    # margin under margin: RMM's 8.00 + 2.00; RMM pays RM's selling 6.00 + 1.50; RM 3.00 + 1.00
    (CMM, [(CMM, 8_000_000, 2_000_000), (RMM, 6_000_000, 1_500_000),
           (RM, 3_000_000, 1_000_000)]),
    # commission under margin: sells at RM's 6.00 + 1.50, pays it * 0.9 = 5.40 + 1.35
    (CMC, [(CMC, 6_000_000, 1_500_000), (RMC, 5_400_000, 1_350_000),
           (RM, 3_000_000, 1_000_000)]),
    # margin under commission: RCM's 7.00 + 1.20; RCM pays RC's selling price = admin's
    # 5.00 + 1.00; RC pays 5.00 * 0.9 = 4.50 and 1.00 * 0.9 = 0.90
    (CCM, [(CCM, 7_000_000, 1_200_000), (RCM, 5_000_000, 1_000_000),
           (RC, 4_500_000, 900_000)]),
    # commission under commission: both sell at admin's 5.00 + 1.00, and each pays its
    # parent's selling price (admin's, passed down) less 10 %: 4.50 + 0.90
    (CCC, [(CCC, 5_000_000, 1_000_000), (RCC, 4_500_000, 900_000),
           (RC, 4_500_000, 900_000)]),
    # commission under admin: customer pays admin's 5.00 + 1.00; RC 4.50 + 0.90
    (CC, [(CC, 5_000_000, 1_000_000), (RC, 4_500_000, 900_000)]),
])
@pytest.mark.also_on_cluster
def test_order_charges_every_level_once(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection, account: str,
    expected: list[tuple[str, int, int]],
):
    placed = place_order(env, account, UK, now=T0, order_id="ord-1")
    assert placed.charges == tuple(expected)
    entries = ledger_entries(rds)
    want = {}
    for level, (acct, price, setup) in enumerate(expected):
        want[f"order:ord-1:p0:{level}:price"] = (acct, -price)
        want[f"order:ord-1:p0:{level}:setup"] = (acct, -setup)
        assert balance(rds, acct) == 100 * M - price - setup
    assert entries == want
    ops = outbox(rds)
    assert [op["id"] for op in ops] == ["order:ord-1:p0"]  # one atomic op for the chain
    # the bucket opens with 100 minutes, and the row is written after the ledger op
    assert bucket(rds, account, "ord-1") == {"left": "6000", "cap": "6000", "period": "0",
                                              "held": "0"}
    row = order_row(pg, "ord-1")
    assert (row.account, row.status, row.period_no, row.used_seconds) == (account, "active", 0, 0)
    assert (row.period_start, row.period_end) == (T0, T0 + timedelta(days=28))
    charges = store.period_charges(pg, "ord-1", 0)
    assert [(c.account, c.price, c.setup_fee) for c in charges] == expected


@pytest.mark.parametrize("reseller, expected", [
    # a reseller buying for its own use pays what it pays to sell it on
    (RM, [(RM, 3_000_000, 1_000_000)]),                                  # buy cost
    (RMM, [(RMM, 6_000_000, 1_500_000), (RM, 3_000_000, 1_000_000)]),   # RM's price
    (RC, [(RC, 4_500_000, 900_000)]),                                    # 5.00 * 0.9
])
def test_reseller_orders_for_its_own_use(
    world: None, env: Env, rds: redis.Redis, reseller: str, expected: list,
):
    placed = place_order(env, reseller, UK, now=T0)
    assert placed.charges == tuple(expected)
    for acct, price, setup in expected:
        assert balance(rds, acct) == 100 * M - price - setup


def test_postpaid_orders_down_to_its_credit_limit(world: None, env: Env, rds: redis.Redis):
    place_order(env, CP, UK, now=T0)
    assert balance(rds, CP) == -6 * M          # 0 - 5.00 - 1.00, floor -10.00
    with pytest.raises(Refused) as refused:    # a second order would need 11.00 (no setup:
        place_order(env, CP, UK, now=T0)       # 0 - 6.00 - 5.00 = -11.00 < -10.00)
    assert refused.value.rule == "insufficient_funds"


def test_setup_fee_only_at_the_first_order_of_a_product(
    world: None, env: Env, rds: redis.Redis,
):
    first = place_order(env, CM, UK, now=T0, order_id="ord-a")
    terminate(env, "ord-a", now=T0)            # same day: 0 days used, full price refunded
    again = place_order(env, CM, UK, now=T0 + timedelta(days=1), order_id="ord-b")
    assert first.charges == ((CM, 6_000_000, 1_500_000), (RM, 3_000_000, 1_000_000))
    assert again.charges == ((CM, 6_000_000, 0), (RM, 3_000_000, 0))
    entries = ledger_entries(rds)
    assert "order:ord-b:p0:0:setup" not in entries
    # CM: -6.00 -1.50 +6.00 (refund of an unused period) -6.00
    assert balance(rds, CM) == 100 * M - 7_500_000


# --- refusals change nothing ---------------------------------------------------------------

def _state(pg: psycopg.Connection, rds: redis.Redis) -> tuple:
    rows = pg.execute("SELECT count(*) FROM orders").fetchone()[0]
    charges = pg.execute("SELECT count(*) FROM order_charges").fetchone()[0]
    keys = sorted(rds.keys("*"))
    values = [rds.hgetall(k) for k in keys if rds.type(k) == "hash"]
    return rows, charges, keys, values, outbox(rds)


@pytest.mark.parametrize("short, payer", [(CMM, CMM), (RMM, RMM), (RM, RM)])
def test_an_order_short_of_funds_at_any_level_changes_nothing(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection, short: str, payer: str,
):
    set_balance(rds, short, 1_000_000)   # every level of CMM's chain needs more than 1.00
    before = _state(pg, rds)
    with pytest.raises(Refused) as refused:
        place_order(env, CMM, UK, now=T0, order_id="ord-x")
    assert (refused.value.rule, refused.value.account) == ("insufficient_funds", payer)
    assert _state(pg, rds) == before


def test_a_refused_rule_changes_nothing(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
):
    pg.execute("UPDATE products SET can_be_purchased = false")
    before = _state(pg, rds)
    with pytest.raises(Refused) as refused:
        place_order(env, CA, UK, now=T0)
    assert refused.value.rule == "not_purchasable"
    assert _state(pg, rds) == before


# --- idempotency --------------------------------------------------------------------------

@pytest.mark.also_on_cluster
def test_retry_after_a_crash_between_redis_and_postgres_charges_once(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
):
    real = store.insert_order

    def crash(*args, **kwargs):
        raise ConnectionError("PostgreSQL went away")

    monkeypatch.setattr(store, "insert_order", crash)
    with pytest.raises(ConnectionError):
        place_order(env, CM, UK, now=T0, order_id="ord-r")
    assert order_row(pg, "ord-r") is None           # charged in Redis, no row yet
    assert balance(rds, CM) == 100 * M - 7_500_000

    monkeypatch.setattr(store, "insert_order", real)
    pg.execute("UPDATE products SET status = 'inactive'")  # accepted orders still complete
    placed = place_order(env, CM, UK, now=T0, order_id="ord-r")
    assert not placed.replayed
    assert order_row(pg, "ord-r").status == "active"
    assert balance(rds, CM) == 100 * M - 7_500_000  # charged once
    assert balance(rds, RM) == 100 * M - 4_000_000
    assert [op["id"] for op in outbox(rds)] == ["order:ord-r:p0"]

    again = place_order(env, CM, UK, now=T0, order_id="ord-r")  # a retry after success
    assert again.replayed and again.charges == placed.charges
    assert len(outbox(rds)) == 1
    with pytest.raises(OperationConflict):
        place_order(env, CA, UK, now=T0, order_id="ord-r")


# --- assignment, opt-in, visibility in the database -----------------------------------------

def test_assignment_bypasses_can_be_purchased_but_not_the_chain(
    world: None, env: Env, pg: psycopg.Connection,
):
    pg.execute("UPDATE products SET can_be_purchased = false")
    with pytest.raises(Refused) as refused:
        place_order(env, CM, UK, now=T0)
    assert refused.value.rule == "not_purchasable"
    assigned = place_order(env, CM, UK, now=T0, assigned=True)
    assert assigned.charges[0] == (CM, 6_000_000, 1_500_000)

    pg.execute("UPDATE reseller_products SET opt_in = false WHERE reseller = %s", (RMM,))
    with pytest.raises(Refused) as refused:
        place_order(env, CMM, UK, now=T0, assigned=True)
    assert (refused.value.rule, refused.value.account) == ("reseller_not_opted_in", RMM)


def test_opt_in_prices_and_hiding(world: None, env: Env, pg: psycopg.Connection):
    pg.execute("DELETE FROM reseller_products WHERE reseller IN (%s, %s)", (RMM, RMC))
    with pytest.raises(Refused) as refused:
        place_order(env, CMM, UK, now=T0)
    assert (refused.value.rule, refused.value.account) == ("reseller_not_opted_in", RMM)

    with pytest.raises(InputError, match="--price is required"):
        opt_in(env, RMM, UK)
    with pytest.raises(InputError, match="commission"):
        opt_in(env, RMC, UK, price_micros=7 * M)
    row = opt_in(env, RMM, UK, price_micros=9 * M)
    # the setup fee defaults to the one RMM pays itself: RM's 1.50
    assert (row.price, row.setup_fee, row.display_in_my_products) == (9 * M, 1_500_000, True)
    assert opt_in(env, RMC, UK).price is None

    placed = place_order(env, CMM, UK, now=T0)
    assert placed.charges[:2] == ((CMM, 9 * M, 1_500_000), (RMM, 6 * M, 1_500_000))

    opt_in(env, RMM, UK, price_micros=9 * M, display=False)
    with pytest.raises(Refused) as refused:
        place_order(env, CMM, UK, now=T0)
    assert refused.value.rule == "not_in_my_products"
    assert place_order(env, CMM, UK, now=T0, assigned=True).charges[0][1] == 9 * M


def test_opt_in_refusals(world: None, env: Env, pg: psycopg.Connection):
    with pytest.raises(Refused) as refused:
        opt_in(env, CM, UK, price_micros=M)
    assert refused.value.rule == "not_a_reseller"
    pg.execute("UPDATE reseller_products SET opt_in = false WHERE reseller = %s", (RM,))
    with pytest.raises(Refused) as refused:
        opt_in(env, RMM, UK, price_micros=M)
    assert (refused.value.rule, refused.value.account) == ("reseller_not_opted_in", RM)
    pg.execute("UPDATE products SET reseller_can_resell = false")
    with pytest.raises(Refused) as refused:
        opt_in(env, RM, UK, price_micros=M)
    assert refused.value.rule == "reseller_cannot_resell"


def test_unknown_account_and_product(world: None, env: Env):
    with pytest.raises(Refused) as refused:
        place_order(env, "2999999999", UK, now=T0)
    assert refused.value.rule == "unknown_account"
    with pytest.raises(Refused) as refused:
        place_order(env, CA, "No such product", now=T0)
    assert refused.value.rule == "unknown_product"


# --- early termination -----------------------------------------------------------------------

def _use(rds: redis.Redis, account: str, order_id: str, seconds: int) -> None:
    """Consume free seconds the way commit.lua does."""
    rds.hincrby(KS.bucket(KS.tag(top_of(account)), order_id), "left", -seconds)


@pytest.mark.parametrize("charge_type, days, used_seconds, refunds", [
    # the seed: 28-day package ended after 7 days refunds 3/4 of the period's price;
    # CM paid 6.00 -> 4.50, RM paid 3.00 -> 2.25 (setup fees never refunded)
    ("utilized_days", 7, 3000, (4_500_000, 2_250_000)),
    # the seed: 100 minutes with 50 used refunds 1/2: 3.00 and 1.50
    ("utilized_minutes", 7, 3000, (3_000_000, 1_500_000)),
    # highest: max(7/28, 3000/6000) = 1/2 used -> refund 1/2
    ("highest", 7, 3000, (3_000_000, 1_500_000)),
    # highest: max(21/28, 600/6000) = 3/4 used -> refund 1/4: 1.50 and 0.75
    ("highest", 21, 600, (1_500_000, 750_000)),
    # full: nothing back
    ("full", 7, 3000, (0, 0)),
])
@pytest.mark.also_on_cluster
def test_early_termination_refunds_each_level_its_share(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection, charge_type: str,
    days: int, used_seconds: int, refunds: tuple[int, int],
):
    pg.execute("UPDATE products SET charge_type = %s", (charge_type,))
    place_order(env, CM, UK, now=T0, order_id="ord-t")
    _use(rds, CM, "ord-t", used_seconds)
    done = terminate(env, "ord-t", now=T0 + timedelta(days=days))
    assert done.refunds == ((CM, 6_000_000, refunds[0]), (RM, 3_000_000, refunds[1]))
    assert done.used_seconds == used_seconds
    assert balance(rds, CM) == 100 * M - 7_500_000 + refunds[0]
    assert balance(rds, RM) == 100 * M - 4_000_000 + refunds[1]
    entries = ledger_entries(rds)
    refund_entries = {k: v for k, v in entries.items() if k.startswith("refund:")}
    assert refund_entries == {
        f"refund:ord-t:p0:{level}": (acct, amount)
        for level, (acct, amount) in enumerate(((CM, refunds[0]), (RM, refunds[1])))
        if amount
    }
    assert [op["id"] for op in outbox(rds)] == ["order:ord-t:p0", "terminate:ord-t"]
    assert bucket(rds, CM, "ord-t") == {}            # closed
    row = order_row(pg, "ord-t")
    assert (row.status, row.end_reason, row.used_seconds) == (
        "terminated", "terminated", used_seconds)

    again = terminate(env, "ord-t", now=T0 + timedelta(days=days + 1))
    assert again.replayed and again.refunds == done.refunds
    assert len(outbox(rds)) == 2


def test_terminating_a_released_order_is_refused(world: None, env: Env, pg: psycopg.Connection):
    pg.execute("UPDATE products SET billing_type = 'one_time'")
    place_order(env, CA, UK, now=T0, order_id="ord-o")
    with pytest.raises(Refused) as refused:   # its only period ended: released first
        terminate(env, "ord-o", now=T0 + timedelta(days=30))
    assert refused.value.rule == "order_not_active"
    assert order_row(pg, "ord-o").status == "released"
    with pytest.raises(Refused) as refused:
        terminate(env, "no-such-order", now=T0)
    assert refused.value.rule == "unknown_order"


def test_termination_after_a_missed_renewal_renews_first(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
):
    place_order(env, CA, UK, now=T0, order_id="ord-m")
    done = terminate(env, "ord-m", now=T0 + timedelta(days=28 + 7))
    # period 1 charged at day 28 (5.00), then 7 of its 28 days used: 3.75 back
    assert done.period_no == 1
    assert done.refunds == ((CA, 5_000_000, 3_750_000),)
    assert balance(rds, CA) == 100 * M - 6_000_000 - 5_000_000 + 3_750_000
    assert [op["id"] for op in outbox(rds)] == [
        "order:ord-m:p0", "order:ord-m:p1", "terminate:ord-m"]


def test_imported_order_is_refunded_at_current_prices(
    cfg: Config, rds: redis.Redis, env: Env,
):
    # orders in a dataset arrive already paid: no order_charges rows, so the refund uses
    # what the chain pays today (CM 6.00, RM 3.00), here 1 day of 28 used
    data = {**WORLD, "orders": [{"id": "ord-i", "account": CM, "product": UK,
                                 "ordered_at": "2028-01-10T09:00:00Z"}]}
    load_world(cfg, rds, data)
    with psycopg.connect(cfg.database.url) as conn:
        rds.hset(KS.bucket(KS.tag(RM), "ord-i"),
                 mapping={"left": 6000, "held": 0, "period": 0, "cap": 6000})
        assert store.order(conn, "ord-i").status == "active"
    done = terminate(env, "ord-i", now=T0 + timedelta(hours=1))
    # 1 started day of 28: 27/28 back; 6.00 * 27/28 = 5.785714.. -> 5785714,
    # 3.00 * 27/28 = 2.892857.. -> 2892857
    assert done.refunds == ((CM, 6_000_000, 5_785_714), (RM, 3_000_000, 2_892_857))


# --- apply to existing customers --------------------------------------------------------------

def test_apply_product_orders_for_every_customer_on_the_rate_group(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
):
    pg.execute("UPDATE products SET rate_group_id = (SELECT id FROM rate_groups"
               " WHERE name = 'g-admin'), apply_to_existing = true, can_be_purchased = false")
    set_balance(rds, CA, 2 * M)                      # cannot pay 6.00
    applied = apply_product(env, UK, now=T0)
    # on g-admin: CA, CP (customers) and RM, RC (resellers, not customers)
    pid = applied.product_id
    assert applied.ordered == [f"ord-apply-{pid}-{CP}-0"]
    assert applied.refused == [(CA, "insufficient_funds")]
    assert balance(rds, CP) == -6 * M

    set_balance(rds, CA, 50 * M)
    again = apply_product(env, UK, now=T0)          # idempotent: CP already has it
    assert again.skipped == [CP]
    assert again.ordered == [f"ord-apply-{pid}-{CA}-0"]
    assert apply_product(env, UK, now=T0).skipped == [CA, CP]
    assert pg.execute("SELECT count(*) FROM orders").fetchone()[0] == 2
    assert len(outbox(rds)) == 2


def test_apply_product_needs_a_rate_group(world: None, env: Env):
    with pytest.raises(Refused) as refused:
        apply_product(env, UK, now=T0)
    assert refused.value.rule == "not_applicable"


# --- email notifications -----------------------------------------------------------------------

def test_email_notifications_ride_in_the_ledger_op(
    world: None, env: Env, rds: redis.Redis, pg: psycopg.Connection,
):
    pg.execute("UPDATE products SET email_notification = true")
    place_order(env, CM, UK, now=T0, order_id="ord-n")
    terminate(env, "ord-n", now=T0 + timedelta(days=7))
    notes = [n for op in outbox(rds) for n in op.get("extra", {}).get("notifications", [])]
    assert [(n["id"], n["account"], n["kind"]) for n in notes] == [
        ("order:ord-n:p0", CM, "order"), ("terminate:ord-n", CM, "termination")]
    assert notes[0]["payload"]["price_micros"] == 6_000_000
    assert notes[0]["payload"]["setup_fee_micros"] == 1_500_000
    assert notes[1]["payload"]["refund_micros"] == 4_500_000


def test_no_notification_without_email_notification(world: None, env: Env, rds: redis.Redis):
    place_order(env, CM, UK, now=T0)
    assert all("extra" not in op for op in outbox(rds))
