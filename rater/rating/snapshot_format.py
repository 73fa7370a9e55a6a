"""The rating snapshot's blob format: one bytes object holding every table rating needs.

`loader.snapshot` writes it (`pack`), `rater.rating.snapshot.Snapshot` reads it (`unpack`);
this module is the only place that knows the byte layout, the trie key shapes and the enum
indexes below.

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
    acct_shard    I  shard of the tree (its hash tag is rater.shards.tag_of_shard(shard))
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

import json
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import marisa_trie

from rater.errors import RaterError

FORMAT_VERSION = 1
MAGIC = b"RTSN"
_HEADER = struct.Struct("<4sBB2xQdII")
_SECTION = struct.Struct("<BcQ")
_FLAG_BIG_ENDIAN = 1

# Enum values stored as their index in these tuples (acct_flags, and checked in meta).
DIRECTIONS = ("outbound", "inbound")
DIR_CHAR = {"outbound": "o", "inbound": "i"}
KINDS = ("customer", "reseller")
RESELLER_TYPES = (None, "margin", "commission")
BILLINGS = ("prepaid", "postpaid")
ACCOUNT_STATUSES = ("active", "suspended", "deleted")
APPLICABLE_FOR = ("inbound", "outbound", "both")
PRODUCT_STATUSES = ("active", "inactive")

# The sections besides "meta" that a format 1 blob must hold.
SECTIONS = (
    "rates", "rate_rec", "rec_price", "rec_terms", "rec_name", "terms", "names", "marks",
    "accounts", "acct_parent", "acct_top", "acct_shard", "acct_group", "acct_credit",
    "acct_maxch", "acct_flags", "acct_orders", "dids", "did_acct", "order_ids", "ord_id",
    "ord_product", "ord_period", "ord_start", "ord_end",
)

Section = tuple[str, str, bytes]
"""``(name, kind, data)`` of one section, as `pack` takes them."""


class SnapshotError(RaterError):
    """A snapshot blob that cannot be built or read (bad format, corrupt, inconsistent data)."""


class Header(NamedTuple):
    format: int
    version: int
    built_at: float
    shards: int


# --- trie keys --------------------------------------------------------------------------

def rate_head(group_id: int, direction: str) -> str:
    """Start of the `rates` keys of a group and direction; the prefix follows."""
    return f"{group_id}{DIR_CHAR[direction]}"


def blocked_head(group_id: int) -> str:
    """Start of the `marks` keys of a group's blocked prefixes; the prefix follows."""
    return f"b{group_id}:"


def product_head(product_id: int) -> str:
    """Start of the `marks` keys of a product's prefixes; the prefix follows."""
    return f"p{product_id}:"


# --- the container ----------------------------------------------------------------------

def pack(sections: Iterable[Section], version: int, built_at: float, shards: int) -> bytes:
    """The blob of these sections: header (with the body's CRC-32), then each section."""
    body = bytearray()
    for name, kind, data in sections:
        raw = name.encode("ascii")
        body += _SECTION.pack(len(raw), kind.encode("ascii"), len(data))
        body += raw
        body += data
    flags = _FLAG_BIG_ENDIAN if sys.byteorder == "big" else 0
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, flags, version, built_at, shards,
                          zlib.crc32(body))
    return header + bytes(body)


def read_header(blob: bytes) -> Header:
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
    return Header(fmt, version, built_at, shards)


def unpack(
    blob: bytes, pause: Callable[[], None] | None = None
) -> tuple[Header, dict[str, Any]]:
    """The header and the decoded sections of a blob: tries, JSON values, `array` columns
    in this machine's byte order. `pause` runs after each section.

    Raises SnapshotError on a bad header, a checksum mismatch or a malformed body.
    """
    header = read_header(blob)
    version = header.version
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
    return header, sections


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
