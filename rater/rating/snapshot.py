"""The rating snapshot: every table rating needs, read from PostgreSQL, in one bytes blob.

`loader sync` builds it in its own process (building 1M rates holds the GIL for seconds)
and publishes it (`rater.rating.snapshot_store`); every daemon loads it with
`Snapshot.from_bytes` and swaps it in by assignment. A `Snapshot` never changes after it is
loaded, so a reader holding a reference keeps a consistent view while a newer one replaces it.

Scale: prefixes live in marisa tries and their records in flat `array` columns indexed by
trie key id, so loading is mostly memcpy and 1M rates cost 8-18 MB, not millions of Python
objects. Lookups build small result objects (`AccountInfo`, `RateMatch`, ...); the parts
that repeat (tariffs, names, the chains and orders of calling accounts) are kept in bounded
caches on the snapshot, which is safe because it never changes.

Blob layout (all integers little-endian in the header; columns in the byte order the flags say):

    header   "<4sBB2xQdII": magic b"RTSN", format version, flags (bit 0: big-endian columns),
             reference version, built_at (epoch seconds), shards, CRC-32 of the body
    body     sections, each: name length u8, kind (1 ASCII char: "T" marisa trie, "J" JSON,
             else the `array` typecode of a column), length u64, name (ASCII), bytes

Sections of format 1 (trie key ids index the columns that follow them; "u" marks an
unsigned column stored with the smallest typecode of B, H, I, Q that holds its values):

    meta          J  rate groups [id, name, markup_bp, owner], products [id, name, owner,
                     applicable_for, free_seconds, status]
    rates         T  "<group id><o|i><prefix>" (o = outbound, i = inbound)
    rate_rec      u  per rates key -> rate record; a record is a deduplicated
                     (price, terms, name) triple
    rec_price     u  per record: price per minute, micro-units
    rec_terms     u  per record -> terms row
    rec_name      u  per record -> key id in `names`
    terms         q  5 per row: connect_fee, included_seconds, init_inc, inc, markup_bp (the
                     group's markup is part of the row; rows are deduplicated, so few)
    names         T  destination names
    marks         T  "b<group id>:<prefix>" blocked prefixes, "p<product id>:<prefix>" product
                     prefixes
    accounts      T  account numbers
    acct_parent   i  parent's accounts key id, -1 under admin
    acct_top      I  accounts key id of the top of the tree
    acct_shard    I  shard of the tree (its hash tag is KeySpace.tag_of_shard(shard))
    acct_group    q  rate group id
    acct_credit   q  credit limit, micro-units
    acct_maxch    I  max channels (0 = unlimited)
    acct_flags    B  4 per account: kind, reseller type, billing, status (indexes of the enums)
    acct_orders   I  n_accounts + 1 offsets into the order columns (orders sorted by account)
    dids          T  DID numbers
    did_acct      I  per DID key id -> accounts key id
    order_ids     T  order ids
    ord_id        I  order -> key id in `order_ids`
    ord_product   I  order -> index of its product in meta products
    ord_period    I  period_no
    ord_start     q  period start, epoch seconds
    ord_end       q  period end, epoch seconds (exclusive)

Only active orders are included; which period contains "now" is decided at rating time.
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple

import marisa_trie

from rater.errors import RaterError
from rater.ledger.keys import KeySpace, shard_of
from rater.rating.tariff import Tariff

FORMAT_VERSION = 1
MAGIC = b"RTSN"
_HEADER = struct.Struct("<4sBB2xQdII")
_SECTION = struct.Struct("<BcQ")
_FLAG_BIG_ENDIAN = 1

DIRECTIONS = ("outbound", "inbound")
_DIR_CHAR = {"outbound": "o", "inbound": "i"}
KINDS = ("customer", "reseller")
RESELLER_TYPES = (None, "margin", "commission")
BILLINGS = ("prepaid", "postpaid")
ACCOUNT_STATUSES = ("active", "suspended", "deleted")
APPLICABLE_FOR = ("inbound", "outbound", "both")
PRODUCT_STATUSES = ("active", "inactive")


class SnapshotError(RaterError):
    """A snapshot blob that cannot be built or read (bad format, corrupt, inconsistent data)."""


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


# --- building ---------------------------------------------------------------------------

@dataclass
class ReferenceData:
    """The rows a snapshot is made of, as plain tuples (what `read_reference` returns).

    rate_groups       (id, name, markup_bp, owner)
    accounts          (number, parent, kind, reseller_type, billing, credit_limit, rate_group_id,
                       max_channels, status)
    rates             (rate_group_id, direction, prefix, destination, price_per_min, connect_fee,
                       included_seconds, init_inc, inc) - any iterable, read once
    blocked           (rate_group_id, prefix)
    dids              (number, account)
    products          (id, name, owner, applicable_for, free_minutes, status)
    product_prefixes  (product_id, prefix)
    orders            (id, account, product_id, period_no, period_start, period_end), the last
                      two as epoch seconds; active orders only
    """

    version: int
    rate_groups: list[tuple] = field(default_factory=list)
    accounts: list[tuple] = field(default_factory=list)
    rates: Iterable[tuple] = field(default_factory=list)
    blocked: list[tuple] = field(default_factory=list)
    dids: list[tuple] = field(default_factory=list)
    products: list[tuple] = field(default_factory=list)
    product_prefixes: list[tuple] = field(default_factory=list)
    orders: list[tuple] = field(default_factory=list)


def read_reference(conn: Any) -> ReferenceData:
    """Read the reference tables in one consistent (repeatable-read) view.

    Opens its own read-only transaction when `conn` is idle; inside the caller's transaction
    it reads there (the caller then owns consistency).
    """
    from psycopg import pq  # the loader's side only: the daemon never builds

    own = conn.info.transaction_status == pq.TransactionStatus.IDLE
    with conn.transaction() if own else contextlib.nullcontext():
        if own:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        ref = ReferenceData(version=conn.execute(
            "SELECT version FROM reference_version").fetchone()[0])
        ref.rate_groups = conn.execute(
            "SELECT id, name, markup_bp, owner FROM rate_groups ORDER BY id").fetchall()
        ref.accounts = conn.execute(
            "SELECT number, parent, kind, reseller_type, billing, credit_limit, rate_group_id,"
            " max_channels, status FROM accounts").fetchall()
        # A server-side cursor keeps a million rate rows from sitting twice in memory.
        with conn.cursor(name="snapshot_rates") as cur:
            cur.itersize = 20_000
            cur.execute(
                "SELECT rate_group_id, direction, prefix, destination, price_per_min,"
                " connect_fee, included_seconds, init_inc, inc FROM rates")
            ref.rates = list(cur)
        ref.blocked = conn.execute("SELECT rate_group_id, prefix FROM blocked_prefixes").fetchall()
        ref.dids = conn.execute("SELECT number, account FROM dids").fetchall()
        ref.products = conn.execute(
            "SELECT id, name, owner, applicable_for, free_minutes, status FROM products"
            " ORDER BY id").fetchall()
        ref.product_prefixes = conn.execute(
            "SELECT product_id, prefix FROM product_prefixes").fetchall()
        ref.orders = conn.execute(
            "SELECT id, account, product_id, period_no,"
            " floor(extract(epoch FROM period_start))::bigint,"
            " floor(extract(epoch FROM period_end))::bigint"
            " FROM orders WHERE status = 'active'").fetchall()
    return ref


def build_snapshot(conn: Any, keyspace: KeySpace, built_at: float | None = None) -> bytes:
    """Read PostgreSQL and return the snapshot blob (hash tags computed for `keyspace`)."""
    return encode_snapshot(read_reference(conn), keyspace, built_at)


def encode_snapshot(ref: ReferenceData, keyspace: KeySpace, built_at: float | None = None) -> bytes:
    """Turn reference rows into a snapshot blob. Raises SnapshotError on inconsistent rows."""
    sections: list[tuple[str, str, bytes]] = []
    groups = [[int(g[0]), str(g[1]), int(g[2]), g[3]] for g in ref.rate_groups]
    markup = {g[0]: g[2] for g in groups}
    products = [[int(p[0]), str(p[1]), p[2], p[3], int(p[4]) * 60, p[5]] for p in ref.products]
    for p in products:
        _index_of(APPLICABLE_FOR, p[3], f"product {p[0]} applicable_for")
        _index_of(PRODUCT_STATUSES, p[5], f"product {p[0]} status")
    sections.append(("meta", "J", json.dumps(
        {"rate_groups": groups, "products": products}, separators=(",", ":")).encode()))
    sections += _encode_rates(ref.rates, markup)
    sections += _encode_marks(ref.blocked, ref.product_prefixes)
    acct_sections, acct_index = _encode_accounts(ref.accounts, keyspace.shards)
    sections += acct_sections
    sections += _encode_dids(ref.dids, acct_index)
    sections += _encode_orders(ref.orders, acct_index, {p[0]: i for i, p in enumerate(products)})

    body = bytearray()
    for name, kind, data in sections:
        raw = name.encode("ascii")
        body += _SECTION.pack(len(raw), kind.encode("ascii"), len(data))
        body += raw
        body += data
    flags = _FLAG_BIG_ENDIAN if sys.byteorder == "big" else 0
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, flags, ref.version,
                          time.time() if built_at is None else built_at,
                          keyspace.shards, zlib.crc32(body))
    return header + bytes(body)


def _index_of(values: tuple, value: Any, what: str) -> int:
    try:
        return values.index(value)
    except ValueError:
        raise SnapshotError(f"{what}: unexpected value {value!r}") from None


def _trie_column(trie: marisa_trie.Trie, values: dict[str, int], typecode: str) -> array:
    """A column indexed by trie key id (marisa ids are not insertion order)."""
    column = array(typecode, bytes(array(typecode).itemsize * len(trie)))
    for key, kid in trie.iteritems():
        column[kid] = values[key]
    return column


def _encode_rates(rates: Iterable[tuple], markup: dict[int, int]) -> list[tuple[str, str, bytes]]:
    terms_ids: dict[tuple[int, ...], int] = {}
    record_ids: dict[tuple[int, int, str], int] = {}
    key_record: dict[str, int] = {}
    for gid, direction, prefix, dest, price, fee, included, init_inc, inc in rates:
        dchar = _DIR_CHAR.get(direction)
        if dchar is None:
            raise SnapshotError(f"rate {gid}/{prefix}: unexpected direction {direction!r}")
        if gid not in markup:
            raise SnapshotError(f"rate {prefix!r}: rate group {gid} does not exist")
        terms = (fee, included, init_inc, inc, markup[gid])
        ti = terms_ids.get(terms)
        if ti is None:
            _check_tariff(f"rate {gid}/{prefix}", 0, terms)  # each distinct row, once
            ti = terms_ids[terms] = len(terms_ids)
        record = (price, ti, dest)
        rid = record_ids.get(record)
        if rid is None:
            if type(price) is not int or price < 0:
                _check_tariff(f"rate {gid}/{prefix}", price, terms)  # raises, saying why
            rid = record_ids[record] = len(record_ids)
        key_record[f"{gid}{dchar}{prefix}"] = rid
    trie = marisa_trie.Trie(key_record)
    names = marisa_trie.Trie({dest for _, _, dest in record_ids})
    return [
        ("rates", "T", trie.tobytes()),
        _unsigned("rate_rec", _trie_column(trie, key_record, "Q")),
        _unsigned("rec_price", [price for price, _, _ in record_ids]),
        _unsigned("rec_terms", [ti for _, ti, _ in record_ids]),
        _unsigned("rec_name", [names[d] for _, _, d in record_ids]),
        ("terms", "q", array("q", chain.from_iterable(terms_ids)).tobytes()),
        ("names", "T", names.tobytes()),
    ]


def _check_tariff(what: str, price: int, terms: tuple[int, ...]) -> None:
    """Validate a rate's price and terms as Tariff does: readers then build tariffs with
    `Tariff.trusted`, without checking them again on every lookup."""
    try:
        Tariff(price, *terms)
    except ValueError as exc:
        raise SnapshotError(f"{what}: {exc}") from None


def _unsigned(name: str, values: Sequence[int]) -> tuple[str, str, bytes]:
    """A column in the smallest unsigned typecode that holds every value."""
    top = max(values, default=0)
    if min(values, default=0) < 0:
        raise SnapshotError(f"{name}: negative value")
    for typecode in "BHIQ":
        if top < 1 << (8 * array(typecode).itemsize):
            return name, typecode, array(typecode, values).tobytes()
    raise SnapshotError(f"{name}: value {top} does not fit 64 bits")


def _encode_marks(blocked: list[tuple], product_prefixes: list[tuple]) -> list[tuple]:
    keys = [f"b{gid}:{prefix}" for gid, prefix in blocked]
    keys += [f"p{pid}:{prefix}" for pid, prefix in product_prefixes]
    return [("marks", "T", marisa_trie.Trie(keys).tobytes())]


def _encode_accounts(rows: list[tuple], shards: int) -> tuple[list[tuple], dict[str, int]]:
    trie = marisa_trie.Trie(r[0] for r in rows)
    if len(trie) != len(rows):
        raise SnapshotError("account numbers are not unique")
    index = {r[0]: trie[r[0]] for r in rows}
    n = len(rows)
    parent = array("i", [-1]) * n
    group = array("q", bytes(8 * n))
    credit = array("q", bytes(8 * n))
    maxch = array("I", bytes(4 * n))
    flags = array("B", bytes(4 * n))
    for number, par, kind, rtype, billing, credit_limit, gid, max_channels, status in rows:
        i = index[number]
        if par is not None:
            if par not in index:
                raise SnapshotError(f"account {number}: parent {par} does not exist")
            parent[i] = index[par]
        group[i] = gid
        credit[i] = credit_limit
        maxch[i] = max_channels
        flags[4 * i:4 * i + 4] = array("B", (
            _index_of(KINDS, kind, f"account {number} kind"),
            _index_of(RESELLER_TYPES, rtype, f"account {number} reseller_type"),
            _index_of(BILLINGS, billing, f"account {number} billing"),
            _index_of(ACCOUNT_STATUSES, status, f"account {number} status"),
        ))
    top = array("I", bytes(4 * n))
    shard = array("I", bytes(4 * n))
    tops: dict[int, int] = {}
    for i in range(n):
        path = []
        j = i
        while j not in tops and parent[j] != -1:
            path.append(j)
            if len(path) > n:
                raise SnapshotError(
                    f"account {trie.restore_key(i)}: its parent chain loops")
            j = parent[j]
        t = tops.get(j, j)
        tops[j] = t
        for k in path:
            tops[k] = t
        top[i] = t
    shard_of_top: dict[int, int] = {}
    for i in range(n):
        t = top[i]
        if t not in shard_of_top:
            shard_of_top[t] = shard_of(trie.restore_key(t), shards)
        shard[i] = shard_of_top[t]
    return [
        ("accounts", "T", trie.tobytes()),
        ("acct_parent", "i", parent.tobytes()),
        ("acct_top", "I", top.tobytes()),
        ("acct_shard", "I", shard.tobytes()),
        ("acct_group", "q", group.tobytes()),
        ("acct_credit", "q", credit.tobytes()),
        ("acct_maxch", "I", maxch.tobytes()),
        ("acct_flags", "B", flags.tobytes()),
    ], index


def _encode_dids(rows: list[tuple], acct_index: dict[str, int]) -> list[tuple]:
    trie = marisa_trie.Trie(r[0] for r in rows)
    owner: dict[str, int] = {}
    for number, account in rows:
        if account not in acct_index:
            raise SnapshotError(f"DID {number}: account {account} does not exist")
        owner[number] = acct_index[account]
    column = _trie_column(trie, owner, "I")
    return [("dids", "T", trie.tobytes()), ("did_acct", "I", column.tobytes())]


def _encode_orders(
    rows: list[tuple], acct_index: dict[str, int], product_index: dict[int, int]
) -> list[tuple]:
    decorated = []
    for oid, account, pid, period_no, start, end in rows:
        if account not in acct_index:
            raise SnapshotError(f"order {oid}: account {account} does not exist")
        if pid not in product_index:
            raise SnapshotError(f"order {oid}: product {pid} does not exist")
        decorated.append((acct_index[account], int(end), oid, product_index[pid], period_no,
                          int(start)))
    decorated.sort()
    ids = marisa_trie.Trie(r[2] for r in decorated)
    offsets = array("I", bytes(4 * (len(acct_index) + 1)))
    for r in decorated:
        offsets[r[0] + 1] += 1
    for i in range(len(acct_index)):
        offsets[i + 1] += offsets[i]
    return [
        ("acct_orders", "I", offsets.tobytes()),
        ("order_ids", "T", ids.tobytes()),
        ("ord_id", "I", array("I", (ids[r[2]] for r in decorated)).tobytes()),
        ("ord_product", "I", array("I", (r[3] for r in decorated)).tobytes()),
        ("ord_period", "I", array("I", (r[4] for r in decorated)).tobytes()),
        ("ord_start", "q", array("q", (r[5] for r in decorated)).tobytes()),
        ("ord_end", "q", array("q", (r[1] for r in decorated)).tobytes()),
    ]


# --- reading ----------------------------------------------------------------------------

def read_header(blob: bytes) -> tuple[int, int, float, int]:
    """``(format, version, built_at, shards)`` of a blob, checking only the header.

    Raises SnapshotError when it is not a snapshot or has a format this code cannot read.
    """
    if len(blob) < _HEADER.size or blob[:4] != MAGIC:
        raise SnapshotError("not a rating snapshot (bad magic)")
    _magic, fmt, _flags, version, built_at, shards, _crc = _HEADER.unpack_from(blob)
    if fmt != FORMAT_VERSION:
        newer = "newer than" if fmt > FORMAT_VERSION else "older than"
        raise SnapshotError(
            f"snapshot format {fmt} is {newer} the format this rater reads ({FORMAT_VERSION}): "
            + ("upgrade the daemon" if fmt > FORMAT_VERSION else "run `loader sync` to rebuild")
        )
    return fmt, version, built_at, shards


_SECTIONS = (
    "rates", "rate_rec", "rec_price", "rec_terms", "rec_name", "terms", "names", "marks",
    "accounts", "acct_parent", "acct_top", "acct_shard", "acct_group", "acct_credit",
    "acct_maxch", "acct_flags", "acct_orders", "dids", "did_acct", "order_ids", "ord_id",
    "ord_product", "ord_period", "ord_start", "ord_end",
)


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

    @classmethod
    def from_bytes(cls, blob: bytes, pause: Callable[[], None] | None = None) -> Snapshot:
        """Load a blob. `pause` (e.g. ``gevent.sleep``) runs between sections so a daemon
        stays responsive while a large snapshot loads. Raises SnapshotError on a bad blob."""
        _fmt, version, built_at, shards = read_header(blob)
        flags = blob[5]
        crc = _HEADER.unpack_from(blob)[6]
        view = memoryview(blob)[_HEADER.size:]
        if zlib.crc32(view) != crc:
            raise SnapshotError(f"snapshot v{version} is corrupt (checksum mismatch)")
        swap = bool(flags & _FLAG_BIG_ENDIAN) != (sys.byteorder == "big")
        sections: dict[str, Any] = {}
        pos = 0
        try:
            while pos < len(view):
                name_len, kind, length = _SECTION.unpack_from(view, pos)
                pos += _SECTION.size
                name = bytes(view[pos:pos + name_len]).decode("ascii")
                pos += name_len
                data = view[pos:pos + length]
                pos += length
                if len(data) != length:
                    raise SnapshotError(f"snapshot v{version}: section {name} is truncated")
                sections[name] = _decode_section(kind.decode("ascii"), data, swap)
                if pause is not None:
                    pause()
        except (struct.error, UnicodeDecodeError, ValueError, RuntimeError) as exc:
            raise SnapshotError(f"snapshot v{version} is malformed: {exc}") from None
        self = cls.__new__(cls)
        self.version = version
        self.built_at = built_at
        self.shards = shards
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
            for direction, dchar in _DIR_CHAR.items():
                self._heads[(gid, direction)] = f"{gid}{dchar}"
        self._bheads = {gid: f"b{gid}:" for gid in self._groups}
        self._products = tuple(ProductInfo(*p) for p in meta["products"])
        self._product_index = {p.id: i for i, p in enumerate(self._products)}
        self._pheads = {p.id: f"p{p.id}:" for p in self._products}
        for name in _SECTIONS:
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
        ks = KeySpace(shards=self.shards)
        self._tags = [ks.tag_of_shard(i) for i in range(self.shards)]

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
            # validated when the blob was built (encode_snapshot checks every terms row)
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


def _remember(cache: dict, key: Any, value: Any) -> None:
    if len(cache) >= CACHE_ENTRIES:
        cache.clear()
    cache[key] = value


def _decode_section(kind: str, data: memoryview, swap: bool) -> Any:
    if kind == "T":
        return marisa_trie.Trie().frombytes(bytes(data))
    if kind == "J":
        return json.loads(bytes(data))
    column = array(kind)
    column.frombytes(data)
    if swap and column.itemsize > 1:
        column.byteswap()
    return column
