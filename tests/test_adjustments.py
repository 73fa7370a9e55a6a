"""Balance adjustments from another system reach the live balance exactly once (real Redis
and PostgreSQL)."""

from __future__ import annotations

from loader.adjustments import apply_adjustments, apply_pending_adjustments
from rater.reconcile import reconcile
from tests.test_flusher import (
    CUSTOMER,
    CUSTOMER3,
    KS,
    OPENING,
    RESELLER,
    World,
    world_fixture,  # noqa: F401 - the `world` fixture
)

SUB_RESELLER, DEEP_CUSTOMER, NEW_CUSTOMER = "1000000003", "2000000004", "2000000009"


def add(world: World, account: str, amount: int, ref: str) -> int:
    return world.count("INSERT INTO balance_adjustments (account, amount, ref) "
                       "VALUES (%s, %s, %s) RETURNING id", account, amount, ref)


def add_account(world: World, number: str, parent: str, kind: str = "customer") -> None:
    group = world.count("SELECT id FROM rate_groups WHERE name = 'retail'")
    world.pg.execute(
        "INSERT INTO accounts (number, parent, kind, reseller_type, rate_group_id) "
        "VALUES (%s, %s, %s, %s, %s)",
        (number, parent, kind, "margin" if kind == "reseller" else None, group))


def apply(world: World) -> int:
    return apply_pending_adjustments(world.pg, world.ledger, KS)


def test_each_adjustment_is_applied_once(world: World) -> None:
    world.flusher().flush_all()
    pay = add(world, CUSTOMER, 2_500_000, "portal-pay-1")
    fee = add(world, RESELLER, -300_000, "portal-fee-1")
    big = add(world, CUSTOMER3, -600_000_000, "portal-chargeback")  # below the floor: allowed

    assert apply(world) == 3
    assert apply(world) == 0                                    # nothing pending any more
    assert world.balance_redis(CUSTOMER) == OPENING[CUSTOMER] + 2_500_000
    assert world.balance_redis(RESELLER) == OPENING[RESELLER] - 300_000
    assert world.balance_redis(CUSTOMER3) == OPENING[CUSTOMER3] - 600_000_000
    assert world.count("SELECT count(*) FROM balance_adjustments WHERE applied_at IS NULL") == 0

    world.flusher().flush_all()
    assert world.pg.execute("SELECT id, account, amount, kind, ref FROM ledger_entries "
                            "WHERE id LIKE 'adj:%%' ORDER BY amount").fetchall() == [
        (f"adj:{big}", CUSTOMER3, -600_000_000, "adjustment", "portal-chargeback"),
        (f"adj:{fee}", RESELLER, -300_000, "adjustment", "portal-fee-1"),
        (f"adj:{pay}", CUSTOMER, 2_500_000, "topup", "portal-pay-1"),
    ]
    assert reconcile(world.rds, world.pg, KS, rechecks=0).ok


def test_applying_again_after_the_mark_was_lost_changes_nothing(world: World) -> None:
    add(world, CUSTOMER, 1_000_000, "portal-pay-2")
    assert apply(world) == 1
    backlog = world.backlog()
    # the operation ran in Redis but `applied_at` was never stored (a crash in between)
    world.pg.execute("UPDATE balance_adjustments SET applied_at = NULL")

    assert apply(world) == 1                      # marked now; the op id made it a no-op
    assert world.backlog() == backlog             # no second outbox entry
    assert world.balance_redis(CUSTOMER) == OPENING[CUSTOMER] + 1_000_000
    world.flusher().flush_all()
    assert world.count("SELECT count(*) FROM ledger_entries WHERE id LIKE 'adj:%%'") == 1
    assert world.balance_pg(CUSTOMER) == world.balance_redis(CUSTOMER)


def test_account_not_in_redis_stays_pending_and_is_reported(world: World) -> None:
    add_account(world, NEW_CUSTOMER, RESELLER)
    waiting = add(world, NEW_CUSTOMER, 5_000_000, "portal-pay-new")
    ok = add(world, CUSTOMER, 10, "portal-pay-3")

    run = apply_adjustments(world.pg, world.ledger, KS, page_size=1)
    assert run.applied == [ok]
    (skipped,) = run.skipped
    assert (skipped.id, skipped.account, skipped.amount_micros) == (
        waiting, NEW_CUSTOMER, 5_000_000)
    assert "not in Redis" in skipped.reason
    assert world.count("SELECT count(*) FROM balance_adjustments WHERE applied_at IS NULL") == 1

    # deployed later (the loader seeds the account): the next run applies it
    tag = world.tag(RESELLER)
    world.rds.hset(KS.account(tag, NEW_CUSTOMER), mapping={"bal": 0, "held": 0, "ch": 0})
    assert apply(world) == 1
    assert int(world.rds.hget(KS.account(tag, NEW_CUSTOMER), "bal")) == 5_000_000


def test_the_tag_is_the_top_level_ancestors(world: World) -> None:
    add_account(world, SUB_RESELLER, RESELLER, kind="reseller")
    add_account(world, DEEP_CUSTOMER, SUB_RESELLER)
    tag = world.tag(RESELLER)                     # the tree of the top-level reseller
    assert tag not in (KS.tag(SUB_RESELLER), KS.tag(DEEP_CUSTOMER))   # so the test can tell
    world.rds.hset(KS.account(tag, DEEP_CUSTOMER), mapping={"bal": 0, "held": 0, "ch": 0})
    add(world, DEEP_CUSTOMER, 42, "portal-deep")
    assert apply(world) == 1
    assert int(world.rds.hget(KS.account(tag, DEEP_CUSTOMER), "bal")) == 42
