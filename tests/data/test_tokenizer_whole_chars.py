"""Chinese and other large scripts: frequent characters as whole tokens, rare ones as bytes, exact round trip."""

from __future__ import annotations

import pytest

from unimask.data.tokenizer import BASE_SPECIALS, sentinel, train_tokenizer
from unimask.errors import DataError
from unimask.generation.text import TextStream

ZH = "大型语言模型的三种架构：因果解码器、前缀解码器和编码器解码器。注意力掩码决定了模型的家族。"
EN = "The attention mask decides the family of the model. "


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([ZH * 20, EN * 20], vocab_size=700, whole_chars=40)


def test_frequent_characters_are_one_token_each(tok):
    for ch in "语言模型解码器":
        ids = tok.encode(ch)
        assert len(ids) == 1 and tok.decode(ids) == ch
    text = "大型语言模型"
    assert [tok.decode([i]) for i in tok.encode(text)] == list(text)  # no byte pieces, no U+FFFD


def test_rare_characters_fall_back_to_bytes_and_everything_round_trips(tok):
    assert len(tok.encode("龘")) == 3  # three UTF-8 bytes
    for s in ["大型语言模型 and the mask 😀 龘", "混合 text 中文", ZH + EN, "\u3000全角　空格"]:
        ids = tok.encode(s)
        assert tok.decode(ids) == s
        stream = TextStream(tok)
        pieces = [stream.push(i) for i in ids] + [stream.finish()]
        assert "".join(pieces) == s and not any("\ufffd" in p for p in pieces)  # never a broken byte


def test_vocabulary_layout_and_budget(tok):
    assert tok.vocab_size <= 700
    assert [tok.token_to_id(t) for t in BASE_SPECIALS] == list(range(len(BASE_SPECIALS)))
    assert tok.token_to_id(sentinel(0)) == tok.vocab_size - 1  # sentinels stay on top
    plain = train_tokenizer([ZH * 20, EN * 20], vocab_size=700)
    assert len(plain.encode("龘")) == 3


def test_bad_settings(tok):
    with pytest.raises(DataError, match="must be 0 or more"):
        train_tokenizer([ZH], vocab_size=700, whole_chars=-1)
    with pytest.raises(DataError, match="no room for 500 whole characters"):
        train_tokenizer([ZH], vocab_size=700, whole_chars=500)
