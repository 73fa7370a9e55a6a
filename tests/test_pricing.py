"""What each level of a reseller chain pays for a product, worked by hand.

Admin's product throughout: price 10.00, buy cost 6.00, setup fee 2.00, commission 10 %.
Margin resellers M1 (opt-in 12.00, setup 2.50) and M2 (opt-in 15.00, setup 3.00);
commission resellers K1 and K2 (opt-in price ignored: they sell at their parent's price).
"""

from __future__ import annotations

import pytest

from rater.packages.pricing import (
    AccountKind,
    ChainLevel,
    LevelCharge,
    OptIn,
    Product,
    ResellerType,
    chain_charges,
)

PRODUCT = Product(
    owner="admin",
    price_micros=10_000_000,
    buy_cost_micros=6_000_000,
    setup_fee_micros=2_000_000,
    commission_bp=1_000,
)

C = ChainLevel("1000000001", AccountKind.CUSTOMER)
M1 = ChainLevel(
    "2000000001", AccountKind.RESELLER, ResellerType.MARGIN, OptIn(12_000_000, 2_500_000)
)
M2 = ChainLevel(
    "2000000002", AccountKind.RESELLER, ResellerType.MARGIN, OptIn(15_000_000, 3_000_000)
)
K1 = ChainLevel(
    "3000000001", AccountKind.RESELLER, ResellerType.COMMISSION, OptIn(99_000_000, 9_000_000)
)
K2 = ChainLevel("3000000002", AccountKind.RESELLER, ResellerType.COMMISSION)


def charges(*rows: tuple[ChainLevel, int, int]) -> list[LevelCharge]:
    return [LevelCharge(level.account, price, setup) for level, price, setup in rows]


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        pytest.param(
            [C],
            # admin sells at the product's price and setup fee
            charges((C, 10_000_000, 2_000_000)),
            id="customer-of-admin",
        ),
        pytest.param(
            [C, M1],
            charges(
                (C, 12_000_000, 2_500_000),  # M1's opt-in price and setup fee
                (M1, 6_000_000, 2_000_000),  # parent is admin: buy cost; admin's setup fee
            ),
            id="margin",
        ),
        pytest.param(
            [C, K1],
            charges(
                (C, 10_000_000, 2_000_000),  # K1 sells at admin's price
                (K1, 9_000_000, 1_800_000),  # 10.00 * 0.9; 2.00 * 0.9
            ),
            id="commission",
        ),
        pytest.param(
            [C, M2, M1],
            charges(
                (C, 15_000_000, 3_000_000),  # M2's opt-in
                (M2, 12_000_000, 2_500_000),  # parent M1's selling price and setup fee
                (M1, 6_000_000, 2_000_000),  # buy cost; admin's setup fee
            ),
            id="margin-under-margin",
        ),
        pytest.param(
            [C, K2, M1],
            charges(
                (C, 12_000_000, 2_500_000),  # K2 sells at M1's price: 12.00, setup 2.50
                (K2, 10_800_000, 2_250_000),  # 12.00 * 0.9 = 10.80; 2.50 * 0.9 = 2.25
                (M1, 6_000_000, 2_000_000),  # buy cost; admin's setup fee
            ),
            id="commission-under-margin",
        ),
        pytest.param(
            [C, M2, K1],
            charges(
                (C, 15_000_000, 3_000_000),  # M2's opt-in
                (M2, 10_000_000, 2_000_000),  # parent K1 sells at admin's 10.00 / 2.00
                (K1, 9_000_000, 1_800_000),  # 10.00 * 0.9; 2.00 * 0.9
            ),
            id="margin-under-commission",
        ),
        pytest.param(
            [C, K2, K1],
            charges(
                (C, 10_000_000, 2_000_000),  # K2 -> K1 -> admin's price
                (K2, 9_000_000, 1_800_000),  # K1's selling 10.00 * 0.9
                (K1, 9_000_000, 1_800_000),  # admin's 10.00 * 0.9: K1 earns 0 on K2's sale
            ),
            id="commission-under-commission",
        ),
        pytest.param(
            [M1],
            # a reseller ordering for itself is the ordering account: its seller's price
            charges((M1, 10_000_000, 2_000_000)),
            id="reseller-orders-for-itself",
        ),
    ],
)
def test_admin_product(chain: list[ChainLevel], expected: list[LevelCharge]) -> None:
    assert chain_charges(PRODUCT, chain) == expected


# A product owned by reseller R: price 8.00, buy cost 5.00, setup 1.00, commission 10 %.
OWNED = Product(
    owner="4000000001",
    price_micros=8_000_000,
    buy_cost_micros=5_000_000,
    setup_fee_micros=1_000_000,
    commission_bp=1_000,
)
M3 = ChainLevel(
    "2000000003", AccountKind.RESELLER, ResellerType.MARGIN, OptIn(9_500_000, 1_200_000)
)


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        pytest.param([C], charges((C, 8_000_000, 1_000_000)), id="customer-of-owner"),
        pytest.param(
            [C, M3],
            charges(
                (C, 9_500_000, 1_200_000),  # M3's opt-in
                # parent is the owner but not admin: the owner's selling price, not buy cost
                (M3, 8_000_000, 1_000_000),
            ),
            id="margin-under-owner",
        ),
        pytest.param(
            [C, K2],
            charges(
                (C, 8_000_000, 1_000_000),
                (K2, 7_200_000, 900_000),  # 8.00 * 0.9; 1.00 * 0.9
            ),
            id="commission-under-owner",
        ),
        pytest.param(
            [C, K2, M3],
            charges(
                (C, 9_500_000, 1_200_000),  # K2 sells at M3's 9.50 / 1.20
                (K2, 8_550_000, 1_080_000),  # 9.50 * 0.9 = 8.55; 1.20 * 0.9 = 1.08
                (M3, 8_000_000, 1_000_000),  # the owner's price
            ),
            id="commission-under-margin-under-owner",
        ),
    ],
)
def test_reseller_owned_product(chain: list[ChainLevel], expected: list[LevelCharge]) -> None:
    assert chain_charges(OWNED, chain) == expected


def test_commission_rounds_half_up_to_the_micro() -> None:
    product = Product("admin", 10_000_005, 0, 15, 1_000)
    assert chain_charges(product, [C, K1]) == charges(
        (C, 10_000_005, 15),
        (K1, 9_000_005, 14),  # 10000005 * 0.9 = 9000004.5 -> 9000005; 15 * 0.9 = 13.5 -> 14
    )
    third = Product("admin", 10_000_000, 0, 0, 3_333)  # 33.33 %
    # 10000000 * 0.6667 = 6667000 exactly
    assert chain_charges(third, [C, K1])[1] == LevelCharge(K1.account, 6_667_000, 0)


def test_full_and_zero_commission() -> None:
    free = Product("admin", 10_000_000, 0, 2_000_000, 10_000)  # 100 %
    assert chain_charges(free, [C, K1])[1] == LevelCharge(K1.account, 0, 0)
    none = Product("admin", 10_000_000, 0, 2_000_000, 0)
    assert chain_charges(none, [C, K1])[1] == LevelCharge(K1.account, 10_000_000, 2_000_000)


@pytest.mark.parametrize(
    ("chain", "match"),
    [
        ([], "empty"),
        ([C, C], "not a reseller"),
        ([C, ChainLevel("2000000009", AccountKind.RESELLER, ResellerType.MARGIN)], "opted in"),
    ],
)
def test_bad_chains_are_rejected(chain: list[ChainLevel], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        chain_charges(PRODUCT, chain)


def test_bad_products_and_levels_are_rejected() -> None:
    with pytest.raises(ValueError, match="commission_bp"):
        Product("admin", 10, 0, 0, 10_001)
    with pytest.raises(ValueError, match="price_micros"):
        Product("admin", -1)
    with pytest.raises(ValueError, match="reseller_type"):
        ChainLevel("2000000009", AccountKind.RESELLER)
    with pytest.raises(ValueError, match="setup_fee_micros"):
        OptIn(1, -1)
