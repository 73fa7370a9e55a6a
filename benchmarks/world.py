"""The benchmark world shared by the end-to-end stages (ours and the ASTPP-style baseline).

A generated dataset: `accounts` prepaid customers, half directly under admin (one level,
rate group `retail`) and half under a margin reseller R1 (two levels: the customer at R1's
`r1-sell`, R1 at admin's `wholesale`); each rate group prices the same `deck` prefixes,
with per-second, 30/6 and 60/60 increments and some connect fees. Balances are large, so
nothing is ever refused. Destinations are deck prefixes padded with digits.

The expected cost of every call is worked out here, independently of the rater: its own
longest-prefix match on the deck (a dict) and the DESIGN §4 formula, so the end-to-end
check compares the daemon with a second implementation, not with itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

COUNTRY_CODES = (
    "1", "7", "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44",
    "45", "46", "47", "48", "49", "51", "52", "54", "55", "56", "57", "58", "60", "61", "62",
    "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "212", "213", "234",
    "254", "351", "352", "353", "358", "359", "370", "380", "420", "852", "886", "971", "972",
)
PRICES = ("0.0100", "0.0125", "0.0250", "0.0600", "0.1000", "0.1500")
TERMS = ((1, 1, "0"), (1, 1, "0"), (30, 6, "0"), (60, 60, "0"), (1, 1, "0.0100"))
MICROS = Decimal(1_000_000)
OPENING = "100000.00"             # each customer
RESELLER_OPENING = "100000000.00"


@dataclass(frozen=True)
class Rate:
    ppm: int        # price per minute, micro-units
    connect: int    # connect fee, micro-units
    init_inc: int
    inc: int


@dataclass
class World:
    """What the dataset holds, as the benchmark needs it to check the results."""

    run: str
    customers: list[str]
    reseller: str
    chains: dict[str, list[tuple[str, str]]]     # customer -> [(account, rate group), ...]
    decks: dict[str, dict[str, Rate]]            # rate group -> prefix -> rate
    destinations: list[str]
    opening: dict[str, int] = field(default_factory=dict)   # account -> micro-units
    groups: dict[str, str] = field(default_factory=dict)    # short name -> dataset name

    def rate(self, group: str, number: str) -> tuple[str, Rate]:
        deck = self.decks[group]
        for n in range(len(number), -1, -1):
            rate = deck.get(number[:n])
            if rate is not None:
                return number[:n], rate
        raise KeyError(f"{number}: no rate in {group}")

    def costs(self, account: str, destination: str, billed: int) -> list[tuple[str, int]]:
        """[(paying account, cost)] per level, customer first."""
        return [(payer, leg_cost(self.rate(group, destination)[1], billed))
                for payer, group in self.chains[account]]


def leg_cost(rate: Rate, billed: int) -> int:
    """DESIGN §4, written out again: charged seconds, then half-up money, fee once."""
    if billed <= 0:
        return 0
    over = max(0, billed - rate.init_inc)
    charged = rate.init_inc + -(-over // rate.inc) * rate.inc
    money = (Decimal(rate.ppm) * charged / 60).quantize(Decimal(1), ROUND_HALF_UP)
    return rate.connect + int(money)


def _micros(text: str) -> int:
    return int(Decimal(text) * MICROS)


def build(accounts: int, deck: int, seed: int = 1,
          destinations: int = 2000) -> tuple[dict, World]:
    """(dataset document for loader.dataset.import_dataset, World). The deck and the
    destinations follow `seed`; account numbers and names are new on every call, so
    several runs can share one database."""
    rng = random.Random(seed)
    run = f"{random.SystemRandom().randrange(10_000):04d}"
    reseller = f"4{run}00000"
    customers = [f"5{run}{i:05d}" for i in range(accounts)]
    names = {g: f"bench{run}-{g}" for g in ("retail", "wholesale", "r1-sell")}
    prefixes: dict[str, None] = {}
    while len(prefixes) < deck:
        cc = rng.choice(COUNTRY_CODES)
        prefixes[cc + str(rng.randrange(10**7)).zfill(7)[: rng.choice((1, 2, 3, 3, 4, 5))]] = None
    base = {p: (rng.choice(PRICES), *rng.choice(TERMS)) for p in prefixes}
    decks: dict[str, dict[str, Rate]] = {g: {} for g in names}
    rows: dict[str, list[dict]] = {g: [] for g in names}
    factor = {"retail": Decimal(1), "r1-sell": Decimal("0.8"), "wholesale": Decimal("0.5")}
    for prefix, (price, init, inc, fee) in base.items():
        for g in names:
            ppm = (Decimal(price) * factor[g]).quantize(Decimal("0.000001"))
            decks[g][prefix] = Rate(int(ppm * MICROS), _micros(fee), init, inc)
            rows[g].append({"prefix": prefix, "price_per_min": str(ppm), "connect_fee": fee,
                            "init_inc": init, "inc": inc, "destination": f"CC {prefix[:3]}"})
    half = accounts // 2
    chains = {}
    account_rows = [{"number": reseller, "kind": "reseller", "reseller_type": "margin",
                     "balance": RESELLER_OPENING, "rate_group": names["wholesale"]}]
    for i, c in enumerate(customers):
        if i < half:
            chains[c] = [(c, "retail")]
            account_rows.append({"number": c, "kind": "customer", "balance": OPENING,
                                 "rate_group": names["retail"]})
        else:
            chains[c] = [(c, "r1-sell"), (reseller, "wholesale")]
            account_rows.append({"number": c, "parent": reseller, "kind": "customer",
                                 "balance": OPENING, "rate_group": names["r1-sell"]})
    dataset = {
        "currency": "USD",
        "rate_groups": [
            {"name": names["retail"], "owner": "admin", "rates": rows["retail"]},
            {"name": names["wholesale"], "owner": "admin", "rates": rows["wholesale"]},
            {"name": names["r1-sell"], "owner": reseller, "rates": rows["r1-sell"]},
        ],
        "accounts": account_rows,
    }
    plist = list(prefixes)
    numbers = []
    for _ in range(destinations):
        p = rng.choice(plist)
        numbers.append(p + "".join(rng.choice("0123456789") for _ in range(12 - len(p))))
    world = World(run, customers, reseller, chains, decks, numbers, groups=names)
    world.opening = {c: _micros(OPENING) for c in customers}
    world.opening[reseller] = _micros(RESELLER_OPENING)
    return dataset, world
