"""Golden tests of the framing layer on every byte FreeSWITCH sent in the captures."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fssim.captured import capture_bytes, sessions
from rater.errors import FrameError, MalformedFrame
from rater.esl.frames import Frame, FrameParser, build_frame

CAPTURES = sessions()

# Frames per Content-Type in each capture (counted independently, see the README table).
EXPECTED_COUNTS = {
    "esl_api_only": {"auth/request": 1, "command/reply": 2, "api/response": 6,
                     "text/disconnect-notice": 1},
    "esl_badauth": {"auth/request": 1, "command/reply": 1, "text/disconnect-notice": 1},
    "esl_json_full": {"auth/request": 1, "command/reply": 10, "api/response": 22,
                      "text/event-json": 290, "text/disconnect-notice": 1},
    "esl_json_subset": {"auth/request": 1, "command/reply": 5, "text/event-json": 11,
                        "api/response": 1, "text/disconnect-notice": 1},
    "esl_plain_full": {"auth/request": 1, "command/reply": 10, "api/response": 22,
                       "text/event-plain": 293, "text/disconnect-notice": 1},
    "esl_plain_subset": {"auth/request": 1, "command/reply": 5, "text/event-plain": 11,
                         "api/response": 1, "text/disconnect-notice": 1},
    "esl_shutdown_plain": {"auth/request": 1, "command/reply": 2, "text/event-plain": 36,
                           "text/disconnect-notice": 1},
    "esl_sipp_json": {"auth/request": 1, "command/reply": 3, "text/event-json": 82,
                      "text/disconnect-notice": 1},
    "esl_sipp_killed_plain": {"auth/request": 1, "command/reply": 3, "text/event-plain": 50,
                              "text/disconnect-notice": 1},
    "esl_sipp_plain": {"auth/request": 1, "command/reply": 3, "text/event-plain": 82,
                       "text/disconnect-notice": 1},
}


def test_every_capture_is_covered():
    assert sorted(EXPECTED_COUNTS) == CAPTURES


def feed_all(chunks) -> list[Frame]:
    parser = FrameParser()
    frames: list[Frame] = []
    for chunk in chunks:
        frames += parser.feed(chunk)
    assert parser.buffered == 0, "bytes left over after the last frame"
    return frames


def by_lines(data: bytes):
    return data.splitlines(keepends=True)


def by_bytes(data: bytes):
    return (data[i : i + 1] for i in range(len(data)))


def by_random_chunks(data: bytes, seed: int):
    rng = random.Random(seed)
    i = 0
    while i < len(data):
        n = rng.choice((1, 2, 3, 7, 64, 1000, 4096, 65536))
        yield data[i : i + n]
        i += n


@pytest.fixture(scope="module", params=CAPTURES)
def capture(request):
    data = capture_bytes(request.param)
    return request.param, data, feed_all([data])


def test_content_type_counts(capture):
    name, _, frames = capture
    assert Counter(f.content_type for f in frames) == EXPECTED_COUNTS[name]


def test_frames_rebuild_to_the_exact_bytes(capture):
    _, data, frames = capture
    assert b"".join(build_frame(f.headers, f.body) for f in frames) == data
    assert [f.offset for f in frames] == sorted({f.offset for f in frames})


def test_line_by_line_gives_the_same_frames(capture):
    _, data, whole = capture
    assert feed_all(by_lines(data)) == whole


def test_byte_by_byte_gives_the_same_frames(capture):
    _, data, whole = capture
    assert feed_all(by_bytes(data)) == whole


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_chunks_give_the_same_frames(capture, seed):
    _, data, whole = capture
    assert feed_all(by_random_chunks(data, seed)) == whole


def test_content_length_first_or_second():
    frames = feed_all([capture_bytes("esl_plain_subset")])
    event = next(f for f in frames if f.content_type == "text/event-plain")
    api = next(f for f in frames if f.content_type == "api/response")
    assert [k for k, _ in event.headers] == ["Content-Length", "Content-Type"]
    assert [k for k, _ in api.headers] == ["Content-Type", "Content-Length"]
    assert len(event.body) == int(event.header("Content-Length"))


def test_known_frames():
    frames = feed_all([capture_bytes("esl_shutdown_plain")])
    assert frames[-1].content_type == "text/disconnect-notice"
    assert frames[-1].body == b"The system is being shut down.\n"
    bad = feed_all([capture_bytes("esl_badauth")])
    assert bad[1].header("Reply-Text") == b"-ERR invalid"
    api = feed_all([capture_bytes("esl_api_only")])
    assert api[-3].body == b"-ERR No such channel!\n"
    assert api[-4].body == b"vm"  # no trailing newline: the body is exactly its length


def test_values_stay_raw():
    (frame,) = FrameParser().feed(b"Content-Type: text/x\nX-Value: a%20b: c\n\n")
    assert frame.header("X-Value") == b"a%20b: c"  # split at the first ': ', not decoded


def test_blank_lines_between_frames_are_skipped():
    frames = FrameParser().feed(b"\n\nContent-Type: auth/request\n\n\nContent-Type: x\n\n")
    assert [f.content_type for f in frames] == ["auth/request", "x"]


@pytest.mark.parametrize(
    ("stream", "message", "offset"),
    [
        (b"Content-Type: auth/request\n\nno separator here\n\n", "without 'Name: value'", 28),
        (b"Content-Type: x\nContent-Length: 12a\n\n", "non-numeric Content-Length", 16),
        (b"Content-Type: x\nContent-Length: -5\n\n", "negative Content-Length", 16),
        (b"Content-Type: x\n: no name\n\n", "without 'Name: value'", 16),
    ],
)
def test_malformed_input_names_the_problem_and_its_offset(stream, message, offset):
    parser = FrameParser()
    with pytest.raises(MalformedFrame, match=message) as info:
        parser.feed(stream)
    assert isinstance(info.value, FrameError)
    assert info.value.offset == offset
    assert f"byte offset {offset}" in str(info.value)


def test_oversized_header_block():
    parser = FrameParser(max_header_bytes=1024)
    parser.feed(b"Content-Type: auth/request\n\n")
    with pytest.raises(FrameError, match=r"longer than 1024 bytes.*byte offset 28"):
        for _ in range(100):
            parser.feed(b"X-Filler: " + b"y" * 50 + b"\n")


def test_default_header_limit_is_64_kib():
    with pytest.raises(FrameError, match="65536"):
        FrameParser().feed(b"X: " + b"y" * 70_000)


def test_frames_before_bad_bytes_are_kept_and_the_parser_stays_failed():
    parser = FrameParser()
    good = b"Content-Type: auth/request\n\n"
    with pytest.raises(FrameError) as info:
        parser.feed(good + good + b"garbage\n\n")
    assert [f.content_type for f in info.value.frames] == ["auth/request", "auth/request"]
    with pytest.raises(FrameError, match="already failed"):
        parser.feed(good)


def test_buffered_counts_an_unfinished_frame():
    parser = FrameParser()
    assert parser.feed(b"Content-Type: api/response\nContent-Length: 10\n\n12345") == []
    assert parser.buffered > 0
    (frame,) = parser.feed(b"67890")
    assert frame.body == b"1234567890"
    assert parser.buffered == 0


def test_build_frame():
    assert build_frame({"Content-Type": "api/response"}, "+OK\n") == (
        b"Content-Length: 4\nContent-Type: api/response\n\n+OK\n")
    assert build_frame([("Content-Type", "command/reply"), ("Reply-Text", "+OK")]) == (
        b"Content-Type: command/reply\nReply-Text: +OK\n\n")
    with pytest.raises(ValueError):
        build_frame({"Content-Type": "x", "Content-Length": "3"}, b"four")
    with pytest.raises(ValueError):
        build_frame({"Reply-Text": "+OK\nInjected: yes"})
    with pytest.raises(ValueError):
        build_frame({})


def test_chunked_frames_hold_immutable_bytes():
    data = capture_bytes("esl_plain_subset")
    for frame in feed_all(by_random_chunks(data, 7)):
        assert type(frame.body) is bytes
        assert all(type(v) is bytes for _, v in frame.headers)
