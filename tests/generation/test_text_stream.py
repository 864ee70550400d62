"""Streaming detokenisation and stop strings: the streamed pieces rebuild exactly what decoding all tokens at
once gives, cut at the first stop string; hand-written cases for the stop-string helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unimask.data.tokenizer import Tokenizer
from unimask.generation.text import (
    TextStream,
    encode_with_specials,
    find_stop,
    partial_stop_length,
    truncate_at_stop,
)


@pytest.fixture(scope="module")
def tok(model_dirs: dict[str, Path]) -> Tokenizer:
    return Tokenizer.load(model_dirs["causal"])


def stream_all(tok: Tokenizer, ids: list[int], stops: tuple[str, ...] = ()) -> tuple[list[str], TextStream]:
    s = TextStream(tok, stops)
    pieces = [s.push(t) for t in ids]
    pieces.append(s.finish())
    return pieces, s


def test_stop_helpers_by_hand() -> None:
    assert find_stop("abc\nUser: x", ["\nUser:", "zz"]) == 3
    assert find_stop("abc", ["zz"]) == -1
    assert find_stop("xxSTOPyySTO", ["yy", "STOP"]) == 2
    assert partial_stop_length("hello\nUs", ["\nUser:"]) == 3
    assert partial_stop_length("hello", ["\nUser:"]) == 0
    assert partial_stop_length("aab", ["abc", "bx"]) == 2  # "ab" is a prefix of "abc"
    assert truncate_at_stop("one two three", ["two"]) == ("one ", True)
    assert truncate_at_stop("one", ["two"]) == ("one", False)


def test_stream_of_text_tokens_rebuilds_it(tok: Tokenizer) -> None:
    text = "The quick brown fox — naïve 漢字 🙂 jumps."
    ids = tok.encode(text)
    pieces, s = stream_all(tok, ids)
    assert "".join(pieces) == text == s.text
    assert sum(1 for p in pieces if p) > 3  # it really streamed, in several pieces
    # multi-byte characters are split over byte-level tokens, yet no piece holds a replacement character
    assert all("\ufffd" not in p for p in pieces)


def test_stop_string_split_over_tokens(tok: Tokenizer) -> None:
    text = "Hello there.\n\nUser: and more"
    pieces, s = stream_all(tok, tok.encode(text), ("\n\nUser:",))
    assert s.stopped and s.text == "Hello there." == "".join(pieces)
    assert not any("\n" in p for p in pieces)  # the held-back start of the stop string never leaked


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_stream_equals_decode_then_cut(tok: Tokenizer, data: st.DataObject) -> None:
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), min_size=0, max_size=40))
    full = tok.decode(ids)
    stops: tuple[str, ...] = ()
    if full and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(full) - 1))
        j = data.draw(st.integers(i + 1, min(len(full), i + 4)))
        stops = (full[i:j], "never-appears-xyz")
    pieces, s = stream_all(tok, ids, stops)
    expected, found = truncate_at_stop(full, stops)
    assert "".join(pieces) == expected == s.text
    assert s.stopped == found


def test_special_names_become_ids_only_on_request(tok: Tokenizer) -> None:
    text = "a [MASK] b <extra_id_0>"
    plain = tok.encode(text)
    assert tok.special.mask not in plain and tok.special.sentinels[0] not in plain  # user text stays text
    ids = encode_with_specials(tok, text, ["[MASK]", "<extra_id_0>"])
    assert ids.count(tok.special.mask) == 1 and ids.count(tok.special.sentinels[0]) == 1
    assert tok.decode(ids, skip_special=False) == text
