"""Reference rows -> the rating snapshot blob (the format is `rater.rating.snapshot_format`).

Every row is checked here, once, so the daemon's reader trusts the columns: enum values,
references between tables (rate groups, parents, accounts of DIDs and orders, products),
parent chains that end at admin, and each distinct tariff as `Tariff` would check it.
"""

from __future__ import annotations

import json
import time
from array import array
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

import marisa_trie

from loader.snapshot.reference import ReferenceData
from rater.ledger.keys import KeySpace
from rater.rating.snapshot_format import (
    ACCOUNT_STATUSES,
    APPLICABLE_FOR,
    BILLINGS,
    DIR_CHAR,
    KINDS,
    PRODUCT_STATUSES,
    RESELLER_TYPES,
    Section,
    SnapshotError,
    blocked_head,
    pack,
    product_head,
)
from rater.rating.tariff import Tariff
from rater.shards import shard_of


def encode_snapshot(ref: ReferenceData, keyspace: KeySpace, built_at: float | None = None) -> bytes:
    """Turn reference rows into a snapshot blob. Raises SnapshotError on inconsistent rows."""
    sections: list[Section] = []
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
    return pack(sections, ref.version, time.time() if built_at is None else built_at,
                keyspace.shards)


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


def _encode_rates(rates: Iterable[tuple], markup: dict[int, int]) -> list[Section]:
    terms_ids: dict[tuple[int, ...], int] = {}
    record_ids: dict[tuple[int, int, str], int] = {}
    key_record: dict[str, int] = {}
    for gid, direction, prefix, dest, price, fee, included, init_inc, inc in rates:
        dchar = DIR_CHAR.get(direction)
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
        # rate_head(gid, direction) + prefix, spelled out: this runs once per rate
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


def _unsigned(name: str, values: Sequence[int]) -> Section:
    """A column in the smallest unsigned typecode that holds every value."""
    top = max(values, default=0)
    if min(values, default=0) < 0:
        raise SnapshotError(f"{name}: negative value")
    for typecode in "BHIQ":
        if top < 1 << (8 * array(typecode).itemsize):
            return name, typecode, array(typecode, values).tobytes()
    raise SnapshotError(f"{name}: value {top} does not fit 64 bits")


def _encode_marks(blocked: list[tuple], product_prefixes: list[tuple]) -> list[Section]:
    keys = [f"{blocked_head(gid)}{prefix}" for gid, prefix in blocked]
    keys += [f"{product_head(pid)}{prefix}" for pid, prefix in product_prefixes]
    return [("marks", "T", marisa_trie.Trie(keys).tobytes())]


def _encode_accounts(rows: list[tuple], shards: int) -> tuple[list[Section], dict[str, int]]:
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


def _encode_dids(rows: list[tuple], acct_index: dict[str, int]) -> list[Section]:
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
) -> list[Section]:
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
