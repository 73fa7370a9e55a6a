"""The rating snapshot as the daemon reads it: every lookup rating needs, over one blob.

`loader sync` builds the blob in its own process (`loader.snapshot`; building 1M rates holds
the GIL for seconds) and publishes it (`rater.snapshot_store`); every daemon loads it with
`Snapshot.from_bytes` and swaps it in by assignment. A `Snapshot` never changes after it is
loaded, so a reader holding a reference keeps a consistent view while a newer one replaces it.

Scale: prefixes live in marisa tries and their records in flat `array` columns indexed by
trie key id, so loading is mostly memcpy and 1M rates cost 8-18 MB, not millions of Python
objects. Lookups build small result objects (`AccountInfo`, `RateMatch`, ...); the parts
that repeat (tariffs, names, the chains and orders of calling accounts) are kept in bounded
caches on the snapshot, which is safe because it never changes. The blob's layout is in
`rater.rating.snapshot_format`.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from rater.rating.snapshot_format import (
    ACCOUNT_STATUSES,
    BILLINGS,
    DIRECTIONS,
    KINDS,
    RESELLER_TYPES,
    SECTIONS,
    SnapshotError,
    blocked_head,
    product_head,
    rate_head,
    unpack,
)
from rater.rating.tariff import Tariff
from rater.shards import tag_of_shard

if TYPE_CHECKING:
    from marisa_trie import Trie  # untyped: Any to the checker

# --- what lookups return ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AccountInfo:
    """One account as rating sees it; `top` is its tree's top account, `tag` its hash tag."""

    number: str
    parent: str | None
    kind: str
    reseller_type: str | None
    billing: str
    credit_limit_micros: int
    rate_group: int
    max_channels: int
    status: str
    top: str
    tag: str

    @property
    def floor_micros(self) -> int:
        """Lowest balance allowed: 0 prepaid, -credit_limit postpaid."""
        return -self.credit_limit_micros if self.billing == "postpaid" else 0


@dataclass(frozen=True, slots=True)
class RateGroupInfo:
    id: int
    name: str
    markup_bp: int
    owner: str | None


class RateMatch(NamedTuple):
    """The longest-prefix rate of a number; the tariff carries the group's markup.
    (A NamedTuple: built on every lookup that misses the cache, at a third of the cost of
    a frozen dataclass.)"""

    prefix: str
    destination: str
    tariff: Tariff


@dataclass(frozen=True, slots=True)
class ProductInfo:
    id: int
    name: str
    owner: str | None
    applicable_for: str
    free_seconds: int
    status: str


@dataclass(frozen=True, slots=True)
class OrderInfo:
    """An active order; its current period is ``[period_start, period_end)`` in epoch seconds."""

    order_id: str
    product_id: int
    period_no: int
    period_start: int
    period_end: int


class Snapshot:
    """An immutable, loaded rating snapshot. Every lookup is safe from any greenlet."""

    __slots__ = (
        "_accounts", "_acct_credit", "_acct_flags", "_acct_group", "_acct_maxch", "_acct_orders",
        "_acct_parent", "_acct_shard", "_acct_top", "_bheads", "_chain_cache", "_did_acct",
        "_dids", "_groups", "_heads", "_marks", "_match_cache", "_names", "_ord_end", "_ord_id",
        "_ord_period", "_ord_product", "_ord_start", "_order_cache", "_order_ids", "_pheads",
        "_product_index", "_products", "_rate_rec", "_rates", "_rec_name", "_rec_price",
        "_rec_terms", "_tags", "_tariff_cache", "_terms", "built_at", "shards", "size", "version",
    )
    version: int
    built_at: float
    shards: int
    size: int
    # from the blob's meta section
    _groups: dict[int, RateGroupInfo]
    _heads: dict[tuple[int, str], str]
    _bheads: dict[int, str]
    _products: tuple[ProductInfo, ...]
    _product_index: dict[int, int]
    _pheads: dict[int, str]
    # the SECTIONS (snapshot_format's docstring has their layout): tries and columns
    _rates: Trie
    _rate_rec: array[int]
    _rec_price: array[int]
    _rec_terms: array[int]
    _rec_name: array[int]
    _terms: array[int]
    _names: Trie
    _marks: Trie
    _accounts: Trie
    _acct_parent: array[int]
    _acct_top: array[int]
    _acct_shard: array[int]
    _acct_group: array[int]
    _acct_credit: array[int]
    _acct_maxch: array[int]
    _acct_flags: array[int]
    _acct_orders: array[int]
    _dids: Trie
    _did_acct: array[int]
    _order_ids: Trie
    _ord_id: array[int]
    _ord_product: array[int]
    _ord_period: array[int]
    _ord_start: array[int]
    _ord_end: array[int]
    # bounded caches of lookup results (_remember)
    _match_cache: dict[int, RateMatch]
    _tariff_cache: dict[tuple[int, int], Tariff]
    _chain_cache: dict[str, tuple[AccountInfo, ...]]
    _order_cache: dict[str, tuple[OrderInfo, ...]]
    _tags: list[str]

    @classmethod
    def from_bytes(cls, blob: bytes, pause: Callable[[], None] | None = None) -> Snapshot:
        """Load a blob. `pause` (e.g. ``gevent.sleep``) runs between sections so a daemon
        stays responsive while a large snapshot loads. Raises SnapshotError on a bad blob."""
        header, sections = unpack(blob, pause)
        version = header.version
        self = cls.__new__(cls)
        self.version = version
        self.built_at = header.built_at
        self.shards = header.shards
        self.size = len(blob)
        try:
            self._attach(sections)
        except KeyError as exc:
            raise SnapshotError(f"snapshot v{version} lacks section {exc}") from None
        return self

    def _attach(self, s: dict[str, Any]) -> None:
        meta = s["meta"]
        self._groups = {g[0]: RateGroupInfo(*g) for g in meta["rate_groups"]}
        self._heads = {}
        for gid in self._groups:
            for direction in DIRECTIONS:
                self._heads[(gid, direction)] = rate_head(gid, direction)
        self._bheads = {gid: blocked_head(gid) for gid in self._groups}
        self._products = tuple(ProductInfo(*p) for p in meta["products"])
        self._product_index = {p.id: i for i, p in enumerate(self._products)}
        self._pheads = {p.id: product_head(p.id) for p in self._products}
        for name in SECTIONS:
            setattr(self, "_" + name, s[name])
        n_acct = len(self._accounts)
        checks = (
            ("rate_rec", len(self._rate_rec), len(self._rates)),
            ("rec_terms", len(self._rec_terms), len(self._rec_price)),
            ("rec_name", len(self._rec_name), len(self._rec_price)),
            ("terms", len(self._terms) % 5, 0),
            ("acct_flags", len(self._acct_flags), 4 * n_acct),
            ("acct_orders", len(self._acct_orders), n_acct + 1),
            ("did_acct", len(self._did_acct), len(self._dids)),
            ("ord_end", len(self._ord_end), len(self._ord_id)),
        )
        for name, got, want in checks:
            if got != want:
                raise SnapshotError(f"snapshot v{self.version}: section {name} has the wrong size")
        self._match_cache = {}
        self._tariff_cache = {}
        self._chain_cache = {}
        self._order_cache = {}
        self._tags = [tag_of_shard(i) for i in range(self.shards)]

    # -- lookups -----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Sizes of the tables (for logs and metrics)."""
        return {
            "rates": len(self._rates), "rate_records": len(self._rec_price),
            "terms": len(self._terms) // 5,
            "destinations": len(self._names), "accounts": len(self._accounts),
            "dids": len(self._dids), "products": len(self._products),
            "orders": len(self._ord_id), "rate_groups": len(self._groups),
        }

    def account_numbers(self) -> list[str]:
        """Every account's number."""
        return list(self._accounts.keys())

    def account(self, number: str) -> AccountInfo | None:
        """The account with this number, or None."""
        i = self._accounts.get(number)
        return None if i is None else self._account_at(i)

    def chain(self, number: str) -> tuple[AccountInfo, ...]:
        """The account, then each reseller above it up to (not including) admin; () if unknown."""
        levels = self._chain_cache.get(number)
        if levels is not None:
            return levels
        i = self._accounts.get(number)
        if i is None:
            return ()
        found = []
        while i != -1:
            found.append(self._account_at(i))
            i = self._acct_parent[i]
        levels = tuple(found)
        _remember(self._chain_cache, number, levels)
        return levels

    def _account_at(self, i: int) -> AccountInfo:
        f = 4 * i
        flags = self._acct_flags
        p = self._acct_parent[i]
        return AccountInfo(
            self._accounts.restore_key(i),
            None if p == -1 else self._accounts.restore_key(p),
            KINDS[flags[f]],
            RESELLER_TYPES[flags[f + 1]],
            BILLINGS[flags[f + 2]],
            self._acct_credit[i],
            self._acct_group[i],
            self._acct_maxch[i],
            ACCOUNT_STATUSES[flags[f + 3]],
            self._accounts.restore_key(self._acct_top[i]),
            self._tags[self._acct_shard[i]],
        )

    def did_account(self, number: str) -> str | None:
        """The account that owns this DID number (exact match), or None."""
        i = self._dids.get(number)
        return None if i is None else self._accounts.restore_key(self._did_acct[i])

    def rate_group(self, group_id: int) -> RateGroupInfo | None:
        return self._groups.get(group_id)

    def rate(self, rate_group: int, direction: str, number: str) -> RateMatch | None:
        """The longest-prefix rate of `number` in a group and direction, or None.

        The empty prefix is a catch-all. The tariff includes the group's markup.
        """
        head = self._heads.get((rate_group, direction))
        if head is None:
            return None
        found = None
        for found in self._rates.iter_prefixes_with_ids(head + number):  # noqa: B007
            pass
        if found is None:
            return None
        # The answer for a rate key never changes: kept per key id (RateMatch is immutable).
        match = self._match_cache.get(found[1])
        return match if match is not None else self._match(found, len(head))

    def _match(self, found: tuple[str, int], head_len: int) -> RateMatch:
        key, kid = found
        rec = self._rate_rec[kid]
        # Prices and terms repeat across records far more than records repeat.
        tkey = (self._rec_price[rec], self._rec_terms[rec])
        tariff = self._tariff_cache.get(tkey)
        if tariff is None:
            t = 5 * tkey[1]
            # validated when the blob was built (loader.snapshot.encode checks every terms row)
            tariff = Tariff.trusted(tkey[0], *self._terms[t:t + 5])
            _remember(self._tariff_cache, tkey, tariff)
        match = _new_match(RateMatch, (key[head_len:],
                                       self._names.restore_key(self._rec_name[rec]), tariff))
        cache = self._match_cache
        if len(cache) >= MATCH_CACHE_ENTRIES:
            cache.clear()
        cache[kid] = match
        return match

    def blocked_prefix(self, rate_group: int, number: str) -> str | None:
        """The shortest blocked prefix of the group that `number` starts with, or None."""
        head = self._bheads.get(rate_group)
        if head is None:
            return None
        key: str
        for key in self._marks.iter_prefixes(head + number):
            return key[len(head):]
        return None

    def product(self, product_id: int) -> ProductInfo | None:
        i = self._product_index.get(product_id)
        return None if i is None else self._products[i]

    def product_match_len(self, product_id: int, number: str) -> int:
        """Length of the product's longest prefix that `number` starts with; -1 when none."""
        head = self._pheads.get(product_id)
        if head is None:
            return -1
        best = -1
        for key in self._marks.iter_prefixes(head + number):
            best = len(key)
        return best - len(head) if best >= 0 else -1

    def orders_of(self, account: str) -> tuple[OrderInfo, ...]:
        """The account's active orders, earliest period end first."""
        orders = self._order_cache.get(account)
        if orders is not None:
            return orders
        i = self._accounts.get(account)
        if i is None:
            return ()
        lo, hi = self._acct_orders[i], self._acct_orders[i + 1]
        products = self._products
        orders = tuple(
            OrderInfo(self._order_ids.restore_key(self._ord_id[j]),
                      products[self._ord_product[j]].id, self._ord_period[j],
                      self._ord_start[j], self._ord_end[j])
            for j in range(lo, hi)
        )
        _remember(self._order_cache, account, orders)
        return orders


# Lookup results built from the columns are kept (the snapshot never changes): accounts
# placing calls are few next to all accounts, destination names and tariffs repeat. A cache
# is dropped whole when it grows past this, which bounds memory on pathological data.
CACHE_ENTRIES = 16_384
# Rate answers per rate key: the destinations called repeat, and a miss costs 4 µs. Bigger,
# as the entries are small (~250 bytes): 16 MB at most.
MATCH_CACHE_ENTRIES = 65_536
_new_match = tuple.__new__  # RateMatch(...) without NamedTuple's Python-level __new__


K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: dict[K, V], key: K, value: V) -> None:
    if len(cache) >= CACHE_ENTRIES:
        cache.clear()
    cache[key] = value
