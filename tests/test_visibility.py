"""Who may see, order, be assigned and opt into a product: every rule on its own (pure), then
the listing `rater products` builds from the database, and the CLI end to end.

Pure tree (numbers are short here; the rules do not look at them):

    admin
    ├── R1 margin reseller
    │   └── R2 commission reseller
    │       ├── C  customer
    │       └── R3 margin reseller
    └── A  customer of admin
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from rater.config import Config
from rater.packages.context import Env, open_env
from rater.packages.offers import offers
from rater.packages.visibility import (
    OptInState,
    Party,
    opt_in_refusal,
    order_refusal,
    seller_chain,
)
from tests.test_lifecycle import (
    CA,
    CM,
    CMM,
    RM,
    RMC,
    RMM,
    UK,
    WORLD,
    balance,
    load_world,
    product,
)

REPO = Path(__file__).resolve().parents[1]

R1 = Party("R1", None, "reseller", "margin")
R2 = Party("R2", "R1", "reseller", "commission")
R3 = Party("R3", "R2", "reseller", "margin")
C = Party("C", "R2", "customer")
A = Party("A", None, "customer")
PATH_C = [C, R2, R1]
PATH_R3 = [R3, R2, R1]
OPTED = {"R1": OptInState(), "R2": OptInState(), "R3": OptInState()}


@dataclass(frozen=True)
class Rules:
    owner: str | None = None
    status: str = "active"
    can_be_purchased: bool = True
    reseller_can_resell: bool = True
    admin_customers_can_order: bool = True
    reseller_customers_can_order: bool = True


def refusal(product: Rules, path: list[Party], opt_ins=OPTED, **kw) -> tuple | None:
    found = order_refusal(product, path, opt_ins, **kw)
    return None if found is None else (found.rule, found.account)


def opt_refusal(product: Rules, path: list[Party], opt_ins=OPTED) -> tuple | None:
    found = opt_in_refusal(product, path, opt_ins)
    return None if found is None else (found.rule, found.account)


def test_seller_chain_runs_up_to_not_including_the_owner():
    assert seller_chain(PATH_C, None) == [C, R2, R1]       # admin's product
    assert seller_chain(PATH_C, "R1") == [C, R2]
    assert seller_chain(PATH_C, "R2") == [C]
    assert seller_chain(PATH_C, "C") is None               # its own product: not offered
    assert seller_chain(PATH_C, "R9") is None              # another tree


@pytest.mark.parametrize("product, path, opt_ins, expected", [
    # everything allowed
    (Rules(), PATH_C, OPTED, None),
    (Rules(), [A], {}, None),
    (Rules(status="inactive"), [A], {}, ("product_inactive", None)),
    (Rules(), [Party("A", None, "customer", status="suspended")], {},
     ("account_inactive", "A")),
    (Rules(owner="R9"), PATH_C, OPTED, ("not_offered", "C")),
    (Rules(owner="R3"), PATH_R3, OPTED, ("not_offered", "R3")),   # its own product
    (Rules(can_be_purchased=False), [A], {}, ("not_purchasable", "A")),
    (Rules(admin_customers_can_order=False), [A], {}, ("admin_customers_cannot_order", "A")),
    (Rules(admin_customers_can_order=False), PATH_C, OPTED, None),  # not admin's customer
    (Rules(reseller_customers_can_order=False), PATH_C, OPTED,
     ("reseller_customers_cannot_order", "C")),
    (Rules(reseller_customers_can_order=False), [A], {}, None),
    # a reseller's own product, for its customers: the same switch applies
    (Rules(owner="R2", reseller_customers_can_order=False), PATH_C, {},
     ("reseller_customers_cannot_order", "C")),
    # ... but nobody resells it, so neither reseller_can_resell nor an opt-in matters
    (Rules(owner="R2", reseller_can_resell=False), PATH_C, {}, None),
    (Rules(reseller_can_resell=False), PATH_C, OPTED, ("reseller_cannot_resell", "R2")),
    (Rules(reseller_can_resell=False), [A], {}, None),
    # a reseller buying for its own use must be allowed to resell it ("unable to purchase")
    (Rules(reseller_can_resell=False), [R1], {}, ("reseller_cannot_resell", "R1")),
    (Rules(), [R1], {}, None),                                # no opt-in of its own needed
    # every reseller in between must have opted in, the upper levels too
    (Rules(), PATH_C, {"R1": OptInState()}, ("reseller_not_opted_in", "R2")),
    (Rules(), PATH_C, {"R2": OptInState()}, ("reseller_not_opted_in", "R1")),
    (Rules(), PATH_C, {"R1": OptInState(), "R2": OptInState(opt_in=False)},
     ("reseller_not_opted_in", "R2")),
    (Rules(owner="R1"), PATH_C, {"R2": OptInState()}, None),  # the owner needs none
    (Rules(owner="R1"), PATH_C, {}, ("reseller_not_opted_in", "R2")),
    (Rules(), [C, Party("R2", "R1", "reseller", "commission", "suspended"), R1], OPTED,
     ("seller_inactive", "R2")),
    # the seller opted in but hides it from its customers
    (Rules(), PATH_C, {**OPTED, "R2": OptInState(display=False)},
     ("not_in_my_products", "C")),
    # hidden higher up only hides it from that reseller's own customers
    (Rules(), PATH_C, {**OPTED, "R1": OptInState(display=False)}, None),
])
def test_order_rules(product: Rules, path: list[Party], opt_ins: dict, expected):
    assert refusal(product, path, opt_ins) == expected


@pytest.mark.parametrize("product, opt_ins, expected", [
    # the customer-side switches do not stop the seller assigning it
    (Rules(can_be_purchased=False), OPTED, None),
    (Rules(reseller_customers_can_order=False), OPTED, None),
    (Rules(), {**OPTED, "R2": OptInState(display=False)}, None),
    # the resale chain does: "allow to opt-in & assign"
    (Rules(), {"R1": OptInState()}, ("reseller_not_opted_in", "R2")),
    (Rules(reseller_can_resell=False), OPTED, ("reseller_cannot_resell", "R2")),
    (Rules(status="inactive"), OPTED, ("product_inactive", None)),
])
def test_assignment_rules(product: Rules, opt_ins: dict, expected):
    assert refusal(product, PATH_C, opt_ins, assigned=True) == expected


def test_admin_assigns_to_its_own_customer_what_it_does_not_sell():
    personal = Rules(can_be_purchased=False, admin_customers_can_order=False,
                     reseller_can_resell=False)
    assert refusal(personal, [A], {}) == ("not_purchasable", "A")
    assert refusal(personal, [A], {}, assigned=True) is None


@pytest.mark.parametrize("product, path, opt_ins, expected", [
    (Rules(), PATH_R3, {"R1": OptInState(), "R2": OptInState()}, None),
    (Rules(), [R1], {}, None),
    (Rules(can_be_purchased=False), [R1], {}, None),   # it can still assign it
    (Rules(), [C, R2, R1], OPTED, ("not_a_reseller", "C")),
    (Rules(status="inactive"), [R1], {}, ("product_inactive", None)),
    (Rules(reseller_can_resell=False), [R1], {}, ("reseller_cannot_resell", "R1")),
    (Rules(), PATH_R3, {"R2": OptInState()}, ("reseller_not_opted_in", "R1")),
    (Rules(), PATH_R3, {"R1": OptInState(), "R2": OptInState(display=False)},
     ("not_in_my_products", "R3")),
    (Rules(owner="R2"), PATH_R3, {}, None),            # its parent's own product
    (Rules(owner="R3"), PATH_R3, {}, ("not_offered", "R3")),
])
def test_opt_in_rules(product: Rules, path: list[Party], opt_ins: dict, expected):
    assert opt_refusal(product, path, opt_ins) == expected


# --- the listing from the database --------------------------------------------------------

VIS_WORLD = {
    **WORLD,
    "products": [*WORLD["products"],
                 product("RM Special", owner=RM, price="2.50", setup_fee="0.50",
                         reseller_can_resell=False),
                 product("Private", can_be_purchased=False)],
}


@pytest.fixture
def env(cfg: Config, rds: redis.Redis) -> Iterator[Env]:
    load_world(cfg, rds, VIS_WORLD)
    with open_env(cfg) as e:
        yield e


def _by_name(found) -> dict:
    return {o.product.name: o.as_dict() for o in found}


def test_a_customer_sees_what_it_may_order_at_its_price(env: Env):
    seen = _by_name(offers(env, CM))
    assert set(seen) == {UK, "RM Special"}      # Private: not purchasable
    assert (seen[UK]["price_micros"], seen[UK]["setup_fee_micros"]) == (6_000_000, 1_500_000)
    assert seen["RM Special"]["owner"] == RM     # its reseller's own product
    assert seen["RM Special"]["price_micros"] == 2_500_000
    everything = _by_name(offers(env, CM, include_refused=True))
    assert everything["Private"]["reason"] == "not_purchasable"
    assert not everything["Private"]["can_order"]


def test_hidden_products_disappear_for_the_sellers_customers(env: Env):
    env.conn.execute("UPDATE reseller_products SET display_in_my_products = false"
                     " WHERE reseller = %s", (RMM,))
    assert UK not in _by_name(offers(env, CMM))
    assert _by_name(offers(env, CMM, include_refused=True))[UK]["reason"] == "not_in_my_products"


def test_a_reseller_sees_what_it_may_opt_into_with_both_prices(env: Env):
    seen = _by_name(offers(env, RM))
    uk = seen[UK]
    assert uk["can_opt_in"] and uk["opted_in"] and uk["can_order"]
    assert (uk["price_micros"], uk["sell_price_micros"]) == (3_000_000, 6_000_000)
    assert seen["RM Special"]["own"] and seen["RM Special"]["sell_price_micros"] == 2_500_000
    # a commission reseller under RM sells at RM's price and pays 10 % less
    rmc = _by_name(offers(env, RMC))[UK]
    assert (rmc["price_micros"], rmc["sell_price_micros"]) == (5_400_000, 6_000_000)
    # RM's own product cannot be resold: RMM does not see it
    assert "RM Special" not in _by_name(offers(env, RMM))


# --- the CLI ------------------------------------------------------------------------------

def rater(cfg: Config, *args: str) -> tuple[int, dict | str]:
    environ = {**os.environ, "RATER_DATABASE_URL": cfg.database.url,
               "RATER_REDIS_URL": cfg.redis.url}
    done = subprocess.run(
        [sys.executable, "-m", "rater.cli", *args, "--config",
         str(REPO / "config" / "rater.toml")],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=120,
    )
    out = done.stdout
    try:
        return done.returncode, json.loads(out)
    except ValueError:
        return done.returncode, out + done.stderr


def test_cli_lifecycle_end_to_end(env: Env, cfg: Config, rds: redis.Redis):
    code, listing = rater(cfg, "products", CM, "--json")
    assert code == 0
    assert [p["name"] for p in listing["products"]] == [UK, "RM Special"]

    code, placed = rater(cfg, "order", CM, UK, "--now", "2028-01-01T00:00:00Z",
                         "--id", "ord-cli", "--json")
    assert code == 0, placed
    assert placed["charges"] == [
        {"level": 0, "account": CM, "price_micros": 6_000_000, "setup_fee_micros": 1_500_000},
        {"level": 1, "account": RM, "price_micros": 3_000_000, "setup_fee_micros": 1_000_000},
    ]
    assert placed["period_end"] == "2028-01-29T00:00:00Z"

    code, refused = rater(cfg, "order", CM, "Private", "--json")
    assert (code, refused["reason"]) == (1, "not_purchasable")
    code, refused = rater(cfg, "assign", CM, "Private", "--json")   # RM never opted in
    assert (code, refused["reason"], refused["account"]) == (1, "reseller_not_opted_in", RM)
    code, assigned = rater(cfg, "assign", CA, "Private", "--now", "2028-01-01T00:00:00Z",
                           "--json")
    assert code == 0 and assigned["charges"][0]["price_micros"] == 5_000_000

    code, text = rater(cfg, "opt-in", RMM, UK, "--price", "9.50", "--hide")
    assert code == 0 and "hidden" in text
    code, refused = rater(cfg, "order", CMM, UK, "--json")
    assert (code, refused["reason"]) == (1, "not_in_my_products")

    code, renewed = rater(cfg, "renew", "--now", "2028-01-29T00:00:00Z", "--json")
    assert code == 0
    assert {"order": "ord-cli", "period_no": 1} in renewed["renewed"]

    code, ended = rater(cfg, "terminate", "ord-cli", "--now", "2028-02-05T00:00:00Z", "--json")
    assert code == 0, ended
    # 7 of 28 days used: CM gets 4.50 of its 6.00 back, RM 2.25 of 3.00
    assert [r["refund_micros"] for r in ended["refunds"]] == [4_500_000, 2_250_000]
    # CM: -7.50 (order) -6.00 (renewal) +4.50
    assert balance(rds, CM) == 100_000_000 - 7_500_000 - 6_000_000 + 4_500_000
    # CA: Private assigned -5.00 -1.00, renewed on Jan 29 too: -5.00
    assert {"order": assigned["order"], "period_no": 1} in renewed["renewed"]
    assert balance(rds, CA) == 100_000_000 - 6_000_000 - 5_000_000

    code, text = rater(cfg, "order", CM, UK, "--now", "not-a-time")
    assert code == 2 and "ISO 8601" in text
