"""The byte-level BPE tokenizer: exact round trips, special-token layout, loading foreign tokenizers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unimask.data.tokenizer import Tokenizer, default_tokenizer, train_tokenizer
from unimask.errors import DataError
from unimask.objectives import build_objective
from unimask.objectives.base import Vocab

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "大型语言模型的三种架构：因果解码器、前缀解码器和编码器-解码器。",
    "emoji: 🎉👍🏽🧑‍🚀 done",
    "def f(x: int) -> int:\n\treturn x ** 2  # square\r\n",
    "  leading, \u00a0nbsp,\ttabs\t\tand\n\n\n trailing   ",
    "[MASK] <extra_id_0> <s> are plain text in user data",
    "",
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return default_tokenizer()


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=80))
def test_round_trip_any_unicode(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_special_token_layout(tok):
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    s = tok.special
    assert len(s.sentinels) == 100
    assert s.sentinels[0] == tok.vocab_size - 1 == tok.token_to_id("<extra_id_0>")
    assert list(s.sentinels) == list(range(tok.vocab_size - 1, tok.vocab_size - 101, -1))
    ids = {s.mask, s.smask, s.gmask, s.sop, s.eop, s.nlu, s.nlg, s.s2s}
    assert None not in ids and len(ids) == 8
    # special-token strings inside user text stay text: no injected mask or sentinel
    assert not set(tok.encode("[MASK] <extra_id_0> </s>")) & (ids | set(s.sentinels) | {0, 1, 2})
    assert tok.decode([s.mask, 300], skip_special=False).startswith("[MASK]")
    assert tok.vocab_size == 4096


def test_save_load_and_training_are_deterministic(tmp_path):
    docs = ["hello world, hello tokenizer. " * 3, "another line of text with words", "数字 123 456"] * 5
    a = train_tokenizer(docs, vocab_size=400)
    b = train_tokenizer(docs, vocab_size=400)
    assert a.backend.to_str() == b.backend.to_str()
    path = a.save(tmp_path / "tok")
    c = Tokenizer.load(path.parent)
    assert c.encode("hello world 数字") == a.encode("hello world 数字")
    assert c.special == a.special and c.vocab_size == a.vocab_size


def test_bad_training_input():
    with pytest.raises(DataError, match="empty corpus"):
        train_tokenizer(["", ""], vocab_size=1000)
    with pytest.raises(DataError, match="too small"):
        train_tokenizer(["text"], vocab_size=100)


def test_foreign_tokenizer_without_special_tokens(tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    hf = HFTokenizer(models.WordLevel({"hello": 0, "world": 1, "[UNK]": 2}, unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = Tokenizer.load(tmp_path)
    assert tok.encode("hello world") == [0, 1]
    assert tok.special.mask is None and tok.special.sentinels == ()
    with pytest.raises(DataError, match="no eos token"):
        _ = tok.eos_id
    with pytest.raises(DataError, match="tokenizer"):
        Tokenizer.load(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match=r"not a Hugging Face tokenizer\.json"):
        Tokenizer.load(tmp_path / "bad")


def test_a_tokenizer_without_the_objective_tokens_is_a_clear_error(tmp_path):
    tok = train_tokenizer(["some text here. more text."] * 10, vocab_size=400, n_sentinels=0)
    vocab = Vocab.from_tokenizer(tok)
    with pytest.raises(DataError, match="sentinel"):
        build_objective("span_corruption").check(vocab)


def test_word_starts_are_the_tokens_that_begin_with_whitespace(tok):
    """As fairseq's GPT-2 BPE ``is_beginning_of_word``: a token begins a word when its text starts with a space."""
    vocab = Vocab.from_tokenizer(tok)
    ids = tok.encode("The quick brown fox jumps over the lazy dog, unbelievably.")
    texts = [tok.decode([i]) for i in ids]
    assert [i in vocab.word_starts for i in ids] == [t.startswith(" ") for t in texts]
    assert sum(i in vocab.word_starts for i in ids) >= 8  # " quick", " brown", ... each start a word
    specials = {tok.pad_id, tok.bos_id, tok.eos_id, tok.special.mask, *tok.special.sentinels}
    assert not specials & vocab.word_starts
    assert not specials & set(vocab.ordinary.tolist()) and len(vocab.ordinary) == tok.vocab_size - 111
