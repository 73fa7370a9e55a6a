"""Event Socket framing: bytes in any chunking -> frames, and frames -> bytes. No I/O.

A frame is a header block (``Name: value`` lines ended by a blank line) followed by
exactly ``Content-Length`` bytes of body when that header is present, wherever it sits
in the block. Values stay raw bytes here; decoding is the caller's business (messages.py),
done per value, after splitting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from rater.errors import FrameError

MAX_HEADER_BYTES = 64 * 1024
# `show channels as json` on a busy switch is the biggest body we expect (~2 KB a channel).
MAX_BODY_BYTES = 256 * 1024 * 1024

CONTENT_LENGTH = "Content-Length"
CONTENT_TYPE = "Content-Type"

_SEP = b": "
_NL = 10  # b"\n"[0]
# How FreeSWITCH heads every event frame: parsed by one regex call on the hot path.
_EVENT_HEAD = re.compile(rb"Content-Length: (\d{1,15})\nContent-Type: ([^\n]*)")
# The same head with its blank line, matched in place at a frame's first byte.
_EVENT_FRAME = re.compile(rb"Content-Length: (\d{1,15})\nContent-Type: ([^\n]{0,255})\n\n")


class Frame(NamedTuple):
    """One frame: headers in wire order (name, raw value), the body, and the stream
    offset of its first header byte (for error messages)."""

    headers: tuple[tuple[str, bytes], ...]
    body: bytes = b""
    offset: int = 0

    def header(self, name: str) -> bytes | None:
        """The raw value of the first header called `name`, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def content_type(self) -> str:
        value = self.header(CONTENT_TYPE)
        return "" if value is None else value.decode("latin-1")


_new_frame = tuple.__new__  # Frame(...) without NamedTuple's Python-level __new__


class FrameParser:
    """Incremental parser: `feed()` any chunk, get back the frames it completed.

    After a `FrameError` the stream cannot be resynchronised, so the parser stays failed
    and every later `feed()` raises again.
    """

    def __init__(
        self, max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self._max_header = max_header_bytes
        self._max_body = max_body_bytes
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._scan = 0  # where the search for the blank line resumes (index into _buf)
        # A header block already parsed, waiting for its body: (headers, length, offset).
        self._pending: tuple[tuple[tuple[str, bytes], ...], int, int] | None = None
        self._failure: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that belong to a frame not yet complete (0 at a frame boundary),
        counting the header block of a frame still waiting for its body."""
        pending = self._pending
        return len(self._buf) + (0 if pending is None else self._base - pending[2])

    @property
    def offset(self) -> int:
        """Stream offset of the next byte `feed()` will receive."""
        return self._base + len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add `data` to the stream; return the frames it completed, in order.

        Raises FrameError (a MalformedFrame) naming the problem and its stream offset;
        the error's `frames` holds the frames completed before the bad bytes.
        """
        if self._failure is not None:
            raise FrameError(
                f"stream already failed: {self._failure}", self._failure.offset, []
            )
        if not self._buf and self._pending is None and type(data) is bytes:
            # the usual chunk under light load: exactly one whole event frame
            head = _EVENT_FRAME.match(data)
            if head is not None:
                size = head[1]
                start = head.end()
                length = int(size)
                if start + length == len(data) and length <= self._max_body:
                    offset = self._base
                    self._base = offset + start + length
                    self._scan = 0
                    return [_new_frame(Frame, (
                        ((CONTENT_LENGTH, size), (CONTENT_TYPE, head[2])), data[start:],
                        offset))]
        # Whole frames usually arrive in one chunk: parse the chunk itself and keep
        # only an incomplete tail, instead of copying everything through the buffer.
        buffered = bool(self._buf)
        if buffered:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = bytes(data)
        frames: list[Frame] = []
        pos = 0
        try:
            pos = self._drain(buf, frames)
        except FrameError as exc:
            exc.frames = frames
            self._failure = exc
            self._pending = None
            pos = len(buf)  # the stream is dead: hold none of it (never a copy of a huge chunk)
            raise
        finally:
            if buffered:
                del self._buf[:pos]
            elif pos < len(buf):
                self._buf = bytearray(buf[pos:])
            self._base += pos
            self._scan = max(0, self._scan - pos)
        return frames

    def _drain(self, buf: bytes | bytearray, frames: list[Frame]) -> int:
        """Append the complete frames in `buf` to `frames`; return the bytes consumed."""
        pos = 0
        end = len(buf)
        pending = self._pending
        match_frame = _EVENT_FRAME.match
        while True:
            if pending is None:
                # fast path: an event head and its whole body are here
                head = match_frame(buf, pos)
                if head is not None:
                    size = head[1]
                    length = int(size)
                    start = head.end()
                    if start + length <= end and length <= self._max_body:
                        frames.append(_new_frame(Frame, (
                            ((CONTENT_LENGTH, size), (CONTENT_TYPE, head[2])),
                            bytes(buf[start : start + length]), self._base + pos)))
                        pos = start + length
                        if pos == end:
                            return pos
                        continue
                while pos < end and buf[pos] == _NL:  # tolerate blank lines between frames
                    pos += 1
                blank = buf.find(b"\n\n", pos if pos > self._scan else self._scan)
                if blank < 0 or blank - pos > self._max_header:
                    if blank >= 0 or end - pos > self._max_header:
                        raise FrameError(
                            f"header block longer than {self._max_header} bytes without a "
                            f"blank line, at byte offset {self._base + pos}",
                            self._base + pos,
                        )
                    self._scan = max(pos, end - 1)
                    return pos
                offset = self._base + pos
                event = _EVENT_HEAD.fullmatch(buf, pos, blank)  # the usual event head
                if event is not None:
                    size = event[1]
                    headers: tuple[tuple[str, bytes], ...] = (
                        (CONTENT_LENGTH, size), (CONTENT_TYPE, event[2]))
                    length = self._content_length(size, offset)
                else:
                    headers, length = self._parse_block(bytes(buf[pos:blank]), offset)
                pos = blank + 2
                if not length:
                    frames.append(Frame(headers, b"", offset))
                    continue
                pending = (headers, length, offset)
            headers, length, offset = pending
            if end - pos < length:
                self._pending = pending
                return pos
            frames.append(Frame(headers, bytes(buf[pos : pos + length]), offset))
            pos += length
            pending = self._pending = None

    def _parse_block(
        self, block: bytes, offset: int
    ) -> tuple[tuple[tuple[str, bytes], ...], int]:
        headers = []
        length: int | None = None
        at = offset  # stream offset of the current line
        for line in block.split(b"\n"):
            name, sep, value = line.partition(_SEP)
            if not sep or not name:
                raise FrameError(
                    f"header line without 'Name: value' at byte offset {at}: "
                    f"{line[:60].decode('latin-1')!r}",
                    at,
                )
            key = name.decode("latin-1")
            if key == CONTENT_LENGTH:
                size = self._content_length(value, at)
                if length is not None and size != length:
                    # which one frames the body? (a reader taking the other would be fooled)
                    raise FrameError(
                        f"conflicting Content-Length {length} and {size} at byte offset {at}",
                        at,
                    )
                length = size
            headers.append((key, value))
            at += len(line) + 1
        return tuple(headers), length or 0

    def _content_length(self, value: bytes, offset: int) -> int:
        if not value.isdigit():
            what = "negative" if value.startswith(b"-") else "non-numeric"
            raise FrameError(
                f"{what} Content-Length {value[:20].decode('latin-1')!r} "
                f"at byte offset {offset}",
                offset,
            )
        # int() refuses more than 4300 digits (ValueError): compare the length first
        digits = value.lstrip(b"0") or b"0"
        if len(digits) > len(str(self._max_body)) or int(digits) > self._max_body:
            shown = digits[:20].decode("latin-1") + ("..." if len(digits) > 20 else "")
            raise FrameError(
                f"Content-Length {shown} exceeds the limit of {self._max_body} bytes "
                f"at byte offset {offset}",
                offset,
            )
        return int(digits)


def build_frame(
    headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]],
    body: bytes | str = b"",
) -> bytes:
    """Serialise one frame. A body gets a Content-Length header (placed first, as
    FreeSWITCH does for events) unless `headers` already carries the right one.

    Raises ValueError for a name or value that would break the framing.
    """
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    lines: list[bytes] = []
    has_length = False
    for name, value in items:
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if not name or ":" in name or "\n" in name or b"\n" in raw:
            raise ValueError(f"header {name!r} cannot be framed (empty, ':' or newline)")
        if name == CONTENT_LENGTH:
            if raw != str(len(payload)).encode():
                raise ValueError(
                    f"Content-Length {raw!r} does not match a body of {len(payload)} bytes"
                )
            has_length = True
        lines.append(name.encode("latin-1") + _SEP + raw)
    if payload and not has_length:
        lines.insert(0, b"%s: %d" % (CONTENT_LENGTH.encode(), len(payload)))
    if not lines:
        raise ValueError("a frame needs at least one header")
    return b"\n".join(lines) + b"\n\n" + payload
