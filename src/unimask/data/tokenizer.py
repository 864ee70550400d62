"""Byte-level BPE tokenizer with the special tokens every objective needs.

Byte-level BPE (Radford et al. 2019, GPT-2; Sennrich et al. 2016, BPE) trained with Hugging Face
``tokenizers``: every string, Chinese, emoji, code or odd whitespace, encodes and decodes back exactly,
because the base alphabet is the 256 bytes and there is no normaliser.

Vocabulary layout of a tokenizer trained here::

    0 <pad>  1 <s>  2 </s>  3 [MASK]  4 [sMASK]  5 [gMASK]  6 <|startofpiece|>  7 <|endofpiece|>
    8 [NLU]  9 [NLG]  10 [S2S]  ...byte-level BPE merges...  <extra_id_99> ... <extra_id_0>

so the T5 sentinels count down from the top of the vocabulary (Raffel et al. 2020: ``<extra_id_0>`` is the
last id), the GLM tokens (Du et al. 2022) and UL2 mode tokens (Tay et al. 2022) sit at the bottom.
Any Hugging Face ``tokenizer.json`` loads too; special tokens it lacks are ``None`` and an objective
that needs one raises ``DataError`` naming it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from unimask.data.cache import atomic_write_text, cache_dir
from unimask.errors import DataError

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
MASK, SMASK, GMASK = "[MASK]", "[sMASK]", "[gMASK]"
SOP, EOP = "<|startofpiece|>", "<|endofpiece|>"
NLU, NLG, S2S = "[NLU]", "[NLG]", "[S2S]"
N_SENTINELS = 100
BASE_SPECIALS = (PAD, BOS, EOS, MASK, SMASK, GMASK, SOP, EOP, NLU, NLG, S2S)
DEFAULT_VOCAB_SIZE = 4096
_DEFAULT_VERSION = "v1"

# Fallback names for pad/bos/eos in tokenizers trained elsewhere (GPT-2, BERT, LLaMA, T5 ...).
_ALIASES = {
    "pad": (PAD, "[PAD]", "<|pad|>", "<|endoftext|>", "</s>"),
    "bos": (BOS, "[CLS]", "<|begin_of_text|>", "<|endoftext|>", "<bos>"),
    "eos": (EOS, "[SEP]", "<|end_of_text|>", "<|endoftext|>", "<eos>"),
}


def sentinel(i: int) -> str:
    """The name of T5 sentinel ``i`` (``<extra_id_i>``)."""
    return f"<extra_id_{i}>"


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the objectives' special tokens (``None`` where a tokenizer lacks one).

    ``sentinels[i]`` is the id of ``<extra_id_i>``; in a tokenizer trained here ``sentinels[0]`` is the
    highest id of the vocabulary and the ids count down.
    """

    mask: int | None
    smask: int | None
    gmask: int | None
    sop: int | None
    eop: int | None
    nlu: int | None
    nlg: int | None
    s2s: int | None
    sentinels: tuple[int, ...]

    def require(self, name: str, purpose: str) -> int:
        """The id of special token ``name`` (a field name), or a ``DataError`` saying who needs it."""
        value = getattr(self, name)
        if value is None:
            token = {"mask": MASK, "smask": SMASK, "gmask": GMASK, "sop": SOP, "eop": EOP, "nlu": NLU,
                     "nlg": NLG, "s2s": S2S}.get(name, name)
            raise DataError(f"the tokenizer has no {token} token, which {purpose} needs; train one with "
                            "`unimask tokenizer train` or add the token")
        return int(value)

    def require_sentinels(self, n: int, purpose: str) -> tuple[int, ...]:
        """The first ``n`` sentinel ids, or a ``DataError`` when the tokenizer has fewer."""
        if len(self.sentinels) < n:
            raise DataError(f"{purpose} needs {n} sentinel tokens <extra_id_0>.. but the tokenizer has "
                            f"{len(self.sentinels)}; train one with `unimask tokenizer train` or shorten seq_len")
        return self.sentinels[:n]


class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus the ids unimask's objectives use.

    ``encode`` adds no special tokens and treats special-token strings inside the text as plain text,
    so user data can never inject a sentinel or mask token.
    """

    def __init__(self, backend: object) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        if not isinstance(backend, HFTokenizer):
            raise TypeError("Tokenizer wraps a tokenizers.Tokenizer")
        self.backend = backend
        backend.encode_special_tokens = True  # special-token strings in user text stay text
        vocab = backend.get_vocab(with_added_tokens=True)
        self._vocab = vocab
        self.vocab_size: int = max(vocab.values()) + 1 if vocab else 0
        sentinels: list[int] = []
        while sentinel(len(sentinels)) in vocab:
            sentinels.append(vocab[sentinel(len(sentinels))])
        self.special = SpecialTokens(
            mask=vocab.get(MASK), smask=vocab.get(SMASK), gmask=vocab.get(GMASK), sop=vocab.get(SOP),
            eop=vocab.get(EOP), nlu=vocab.get(NLU), nlg=vocab.get(NLG), s2s=vocab.get(S2S),
            sentinels=tuple(sentinels),
        )
        self._ids = {role: next((vocab[n] for n in names if n in vocab), None) for role, names in _ALIASES.items()}

    # Files --------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load ``tokenizer.json`` (or a directory holding it); any Hugging Face tokenizer.json works."""
        from tokenizers import Tokenizer as HFTokenizer

        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.is_file():
            raise DataError(f"{path}: no tokenizer.json there; train one with `unimask tokenizer train`")
        try:
            backend = HFTokenizer.from_file(str(p))
        except Exception as exc:  # the Rust side raises a plain Exception
            raise DataError(f"{p}: not a Hugging Face tokenizer.json ({str(exc).splitlines()[0][:120]})") from None
        return cls(backend)

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/tokenizer.json`` (atomically) and return its path."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "tokenizer.json"
        atomic_write_text(path, self.backend.to_str(pretty=False))
        return path

    # Text <-> ids -------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without any special token added."""
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` for many texts at once (parallel in the Rust backend)."""
        return [list(e.ids) for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Text of ``ids``; special tokens are dropped when ``skip_special``."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def token_to_id(self, token: str) -> int | None:
        return self._vocab.get(token)

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(int(i))

    # Ids of the three structural tokens ---------------------------------------------------------------
    def _role(self, role: str) -> int:
        value = self._ids[role]
        if value is None:
            raise DataError(f"the tokenizer has no {role} token (looked for {', '.join(_ALIASES[role])}); "
                            "train one with `unimask tokenizer train`")
        return value

    @property
    def pad_id(self) -> int:
        return self._role("pad")

    @property
    def bos_id(self) -> int:
        return self._role("bos")

    @property
    def eos_id(self) -> int:
        return self._role("eos")

    def fingerprint(self) -> str:
        """A short hash of the tokenizer's JSON (for cache keys of prepared data)."""
        return hashlib.sha256(self.backend.to_str().encode("utf-8")).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, sentinels={len(self.special.sentinels)})"


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, *, min_frequency: int = 2,
                    n_sentinels: int = N_SENTINELS, whole_chars: int = 0) -> Tokenizer:
    """Train a byte-level BPE tokenizer (GPT-2 style) with unimask's special tokens.

    ``vocab_size`` counts everything (the 11 base specials, 256 bytes, merges, ``whole_chars`` and
    ``n_sentinels`` sentinels); a small corpus may give fewer merges, hence a smaller vocabulary.

    ``whole_chars`` (for Chinese, Japanese and other large scripts): the most frequent non-ASCII characters
    of the corpus (at least ``min_frequency`` times), up to that many, each become one token of its own, so
    a Chinese character is one token and never three byte tokens; rarer characters still fall back to
    bytes, so every string still round-trips exactly.
    """
    from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    floor = len(BASE_SPECIALS) + 256 + n_sentinels
    if vocab_size < floor:
        raise DataError(f"--vocab-size {vocab_size} is too small: byte-level BPE with unimask's special tokens "
                        f"needs at least {floor}")
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    if whole_chars < 0:
        raise DataError(f"--whole-chars must be 0 or more, got {whole_chars}")
    if vocab_size - whole_chars < floor:
        raise DataError(f"--vocab-size {vocab_size} leaves no room for {whole_chars} whole characters; raise it to "
                        f"at least {floor + whole_chars}")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_sentinels - whole_chars, min_frequency=min_frequency, show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in BASE_SPECIALS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    seen = [False]
    counts: Counter[str] = Counter()

    def stream() -> Iterable[str]:
        for text in texts:
            if text:
                seen[0] = True
                if whole_chars:
                    counts.update(ch for ch in text if ord(ch) > 127 and not ch.isspace())
                yield text

    backend.train_from_iterator(stream(), trainer=trainer)
    if not seen[0]:
        raise DataError("cannot train a tokenizer on an empty corpus; give it some text")
    if whole_chars:  # before the sentinels, which stay on top
        chars = [ch for ch, n in counts.most_common() if n >= min_frequency][:whole_chars]
        backend.add_tokens([AddedToken(ch, normalized=False, single_word=False) for ch in chars])
    # Sentinels last, <extra_id_0> on top: add them from the highest index down.
    backend.add_special_tokens([AddedToken(sentinel(i), special=True, normalized=False)
                                for i in reversed(range(n_sentinels))])
    return Tokenizer(backend)


def default_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE) -> Tokenizer:
    """The tokenizer trained on the built-in corpus, built once (a few seconds) and cached on disk."""
    import sys

    tag = f"py{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    path = cache_dir() / f"tokenizer-builtin-{_DEFAULT_VERSION}-{tag}-{vocab_size}" / "tokenizer.json"
    if path.is_file():
        try:
            return Tokenizer.load(path)
        except DataError:
            path.unlink(missing_ok=True)  # a broken cache entry: rebuild it
    from unimask.data.corpus import builtin_documents

    tok = train_tokenizer(builtin_documents(), vocab_size)
    tok.save(path.parent)
    return tok


def tokenizer_summary(tok: Tokenizer) -> str:
    """One JSON line describing a tokenizer (vocabulary size and the special ids)."""
    s = tok.special
    info = {"vocab_size": tok.vocab_size, "pad": tok._ids["pad"], "bos": tok._ids["bos"], "eos": tok._ids["eos"],
            "mask": s.mask, "smask": s.smask, "gmask": s.gmask, "sop": s.sop, "eop": s.eop, "nlu": s.nlu,
            "nlg": s.nlg, "s2s": s.s2s, "sentinels": len(s.sentinels),
            "extra_id_0": s.sentinels[0] if s.sentinels else None}
    return json.dumps(info)
