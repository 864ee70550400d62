"""Batches in the batch contract: prepared tokens -> pieces -> objective -> family layout -> packed rows.

Determinism and exact resume: every piece of text gets its own random generator seeded by
``(seed, split, epoch, piece)``, and rows are packed greedily in order, so the whole stream is a pure
function of the seed. The iterator's state is only ``(epoch, piece, sub-example)`` of the first example
not yet emitted; ``load_state_dict`` recomputes from there and yields exactly the batches that would
have come next. Ranks take disjoint pieces (``perm[rank::world_size]``) of each epoch's permutation.

The split is made on units of at most ``UNIT_TOKENS`` tokens of each document (independent of the
objective and ``seq_len``), so every objective and family is evaluated on the same held-out text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unimask.config import _Validated
from unimask.data.shards import TokenStore, is_prepared, prepare
from unimask.data.tokenizer import Tokenizer, default_tokenizer
from unimask.errors import ConfigError, DataError
from unimask.objectives import Objective, build_objective
from unimask.objectives.base import Vocab
from unimask.objectives.layout import ARCHS, Item, item_lengths, layout, pack_rows, stack_rows

log = logging.getLogger(__name__)

UNIT_TOKENS = 2048
# Keys that left the data section: where they live now.
MOVED_KEYS = {"decoder_start_token_id": "model.decoder_start_token_id"}
SPLITS = {"train": 0, "validation": 1}
_SPLIT_SEED = 20240607


@dataclass
class DataConfig(_Validated):
    """Where the text comes from and how batches are shaped.

    ``path``: a prepared directory, a text file/folder, JSONL or Parquet (``None`` = built-in corpus);
    ``tokenizer``: a tokenizer.json or directory (``None`` = the prepared data's, else the default);
    ``seq_len``: row length (encoder length of an encoder-decoder); ``target_len``: decoder length of an
    encoder-decoder (``None`` = ``seq_len``); ``pack``: several examples per row.
    ``loss_on_targets_only``: T5's switch of the same name (seqio's decoder feature converters). True: the
    loss covers the target only. False: a causal decoder's row also carries loss on its source tokens
    (every token but the first is predicted), whatever the objective; refused for a prefix decoder (its
    bidirectional prefix sees the tokens it would predict) and an encoder-decoder (the source is the
    encoder's input, never decoded).
    The decoder start token of an encoder-decoder is not a data setting: it is the model's
    ``decoder_start_token_id`` (``ModelConfig.start_token_id``), which generation starts from too.
    """

    _where = "data"
    _field_prefix = "data."

    path: str | None = None
    text_field: str = "text"
    tokenizer: str | None = None
    seq_len: int = 128
    target_len: int | None = None
    batch_size: int = 8
    pack: bool = True
    validation_fraction: float = 0.05
    skip_bad: bool = False
    loss_on_targets_only: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        """Like every config, plus one line for a key that moved to another section."""
        if isinstance(data, dict):
            for key, where in MOVED_KEYS.items():
                if key in data:
                    raise ConfigError(f"data.{key} moved to {where}: the model's config decides the decoder start "
                                      f"token of training and generation alike; set {where} (e.g. --set "
                                      f"{where}={data[key]}) and drop data.{key}")
        return super().from_dict(data)

    def check_arch(self, arch: str) -> None:
        """``ConfigError`` when the settings cannot be laid out for ``arch`` (the loss switch)."""
        if self.loss_on_targets_only or arch == "causal":
            return
        why = ("a prefix decoder sees its source bidirectionally, so a loss on the source would leak the tokens "
               "it predicts" if arch == "prefix" else "an encoder-decoder never decodes its source")
        raise ConfigError(f"data.loss_on_targets_only: false is for arch 'causal' only ({why}); the model's arch "
                          f"is '{arch}': set it to true")

    def __post_init__(self) -> None:
        self._check_types()
        for name in ("seq_len", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"data config field '{name}' must be positive, got {getattr(self, name)}")
        if self.target_len is not None and self.target_len <= 0:
            raise ConfigError(f"data config field 'target_len' must be positive, got {self.target_len}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(f"data config field 'validation_fraction' must be in [0, 1), got "
                              f"{self.validation_fraction}")


def load_store(data: DataConfig, progress: bool = False) -> tuple[TokenStore, Tokenizer]:
    """The prepared tokens for ``data`` (preparing a raw corpus once into the cache) and the tokenizer."""
    from unimask.data.cache import cache_dir
    from unimask.data.corpus import corpus_fingerprint

    explicit = Tokenizer.load(data.tokenizer) if data.tokenizer else None
    if data.path is not None and is_prepared(data.path):
        store = TokenStore(data.path)
        tok = explicit or store.tokenizer()
        if explicit is not None and explicit.fingerprint() != store.index.get("tokenizer_fingerprint"):
            raise DataError(f"{data.path}: prepared with another tokenizer than {data.tokenizer}; "
                            "prepare the data again with this tokenizer or drop the tokenizer setting")
        return store, tok
    tok = explicit or default_tokenizer()
    key = f"{corpus_fingerprint(data.path)}-{tok.fingerprint()}-{data.text_field}-{int(data.skip_bad)}"
    target = cache_dir() / "prepared" / key
    if not is_prepared(target):
        prepare(data.path, target, tok, text_field=data.text_field, skip_bad=data.skip_bad, overwrite=True,
                progress=progress, keep_existing=True)
    return TokenStore(target), tok


def _units(store: TokenStore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents cut into units of at most ``UNIT_TOKENS``: ``(doc, start, length)`` arrays ``(U,)``."""
    counts = -(-store.doc_len // UNIT_TOKENS)  # ceil
    doc = np.repeat(np.arange(store.n_docs), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(len(doc)) - first
    start = k * UNIT_TOKENS
    length = np.minimum(store.doc_len[doc] - start, UNIT_TOKENS)
    return doc, start, length


def split_units(n_units: int, fraction: float) -> np.ndarray:
    """Bool ``(n_units,)``: True for validation units (a fixed-seed subset, at least one when n >= 2)."""
    n_val = round(n_units * fraction)
    if fraction > 0 and n_units >= 2:
        n_val = min(max(n_val, 1), n_units - 1)
    chosen = np.random.default_rng(_SPLIT_SEED).permutation(n_units)[:n_val]
    flags = np.zeros(n_units, dtype=bool)
    flags[chosen] = True
    return flags


def _pieces(doc: np.ndarray, start: np.ndarray, length: np.ndarray, n: int,
            min_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Units cut into pieces of at most ``n`` tokens; pieces shorter than ``min_length`` are dropped."""
    counts = -(-length // n)
    p_doc = np.repeat(doc, counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(len(p_doc)) - first
    p_start = np.repeat(start, counts) + k * n
    p_len = np.minimum(np.repeat(length, counts) - k * n, n)
    keep = p_len >= min_length
    return p_doc[keep], p_start[keep], p_len[keep], int((~keep).sum())


def piece_length(objective: Objective, arch: str, seq_len: int, target_len: int, sentinels: int) -> int:
    """The largest number of input tokens whose examples fit the rows (by the objective's bounds)."""

    def fits(n: int) -> bool:
        need = getattr(objective, "sentinels_needed", None)
        if need is not None and need(n) > sentinels:
            return False
        if arch == "encoder_decoder":
            s, t = objective.bounds(n)
            return s <= seq_len and t <= target_len
        return objective.row_bound(n) <= seq_len

    if not fits(objective.min_length):
        raise DataError(f"seq_len {seq_len} is too short for objective '{objective.name}' with arch '{arch}'; "
                        "raise seq_len")
    lo, hi = objective.min_length, max(objective.min_length, 4 * seq_len)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


class BatchIterator:
    """Batches (dicts of tensors in the batch contract) for one split, rank and objective.

    ``train`` is infinite (each epoch reshuffled by ``(seed, epoch)``); ``validation`` runs once per
    ``for`` loop in a fixed order. ``state_dict()`` / ``load_state_dict()`` resume exactly.
    """

    def __init__(self, store: TokenStore, tokenizer: Tokenizer, objective: Objective, arch: str,
                 data: DataConfig, *, split: str, seed: int, rank: int, world_size: int,
                 start_id: int | None = None) -> None:
        data.check_arch(arch)
        self.store, self.tokenizer, self.objective, self.arch, self.data = store, tokenizer, objective, arch, data
        self.split, self.seed, self.rank, self.world_size = split, seed, rank, world_size
        self.vocab = Vocab.from_tokenizer(tokenizer)
        objective.check(self.vocab)
        self.seq_len = data.seq_len
        self.target_len = data.target_len or data.seq_len
        # the encoder-decoder's first decoder token: the model's start_token_id (the trainer passes it)
        self.start_id = start_id if start_id is not None else self.vocab.pad
        self.piece_len = piece_length(objective, arch, self.seq_len, self.target_len,
                                      len(self.vocab.special.sentinels))
        doc, start, length = _units(store)
        val = split_units(len(doc), data.validation_fraction)
        sel = val if split == "validation" else ~val
        self.p_doc, self.p_start, self.p_len, self.dropped_short = _pieces(
            doc[sel], start[sel], length[sel], self.piece_len, objective.min_length)
        if split == "train" and len(self.p_doc) == 0:
            raise DataError(f"no text in the corpus is long enough for objective '{objective.name}' (it needs "
                            f"at least {objective.min_length} tokens per document); give it longer texts")
        if split == "train" and len(self.p_doc) < world_size:
            raise DataError(f"the corpus gives {len(self.p_doc)} training pieces for objective "
                            f"'{objective.name}', fewer than the {world_size} ranks (texts shorter than "
                            f"{objective.min_length} tokens are skipped); give it more text")
        self.dropped_long = 0
        self._epoch, self._piece, self._sub = 0, 0, 0
        self._order_cache: tuple[int, np.ndarray] | None = None

    # Order ------------------------------------------------------------------------------------------
    def _order(self, epoch: int) -> np.ndarray:
        """This rank's piece indices for ``epoch``."""
        if self._order_cache is not None and self._order_cache[0] == epoch:
            return self._order_cache[1]
        n = len(self.p_doc)
        perm = np.random.default_rng([self.seed, epoch]).permutation(n) if self.split == "train" else np.arange(n)
        mine = perm[self.rank::self.world_size]
        self._order_cache = (epoch, mine)
        return mine

    def _items(self, epoch: int, piece: int) -> list[Item]:
        """Laid-out examples of one piece (several when an unusually long example had to be split)."""
        ids = self.store.tokens(int(self.p_doc[piece]), int(self.p_start[piece]), int(self.p_len[piece]))
        rng = np.random.default_rng([self.seed, SPLITS[self.split], epoch, piece])
        return self._fit(ids, rng)

    def _fit(self, ids: np.ndarray, rng: np.random.Generator) -> list[Item]:
        ex = self.objective(ids, rng, self.vocab)
        item = layout(ex, self.arch, start_id=self.start_id, with_2d=self.objective.uses_2d_positions,
                      targets_only=self.data.loss_on_targets_only)
        row, dec = item_lengths(item)
        if row <= self.seq_len and dec <= self.target_len:
            return [item]
        half = len(ids) // 2
        if half < self.objective.min_length:
            self.dropped_long += 1
            return []
        return self._fit(ids[:half], rng) + self._fit(ids[half:], rng)

    def _stream(self, epoch: int, piece: int, sub: int) -> Iterator[tuple[int, int, int, Item | None]]:
        """``(epoch, piece, sub, item)`` from a position on; ``item=None`` marks the end of an epoch."""
        while True:
            order = self._order(epoch)
            for pos in range(piece, len(order)):
                items = self._items(epoch, int(order[pos]))
                for s in range(sub if pos == piece else 0, len(items)):
                    yield epoch, pos, s, items[s]
            yield epoch, len(order), 0, None
            if self.split != "train":
                return
            epoch, piece, sub = epoch + 1, 0, 0

    # Batches ----------------------------------------------------------------------------------------
    def _next_rows(self) -> list[dict[str, np.ndarray]]:
        rows: list[dict[str, np.ndarray]] = []
        current: list[Item] = []
        used = (0, 0)
        start_state = (self._epoch, self._piece, self._sub)
        state = start_state
        for epoch, pos, sub, item in self._stream(*start_state):
            if item is None:  # end of epoch: close the partial row
                if current:
                    rows.append(pack_rows(current, self.seq_len, self.target_len, self.vocab.pad))
                    current, used = [], (0, 0)
                state = (epoch + 1, 0, 0) if self.split == "train" else (epoch, pos, 0)
                if len(rows) >= self.data.batch_size or self.split != "train":
                    break
                continue
            r, d = item_lengths(item)
            fits = current and used[0] + r <= self.seq_len and used[1] + d <= self.target_len
            if current and (not self.data.pack or not fits):
                rows.append(pack_rows(current, self.seq_len, self.target_len, self.vocab.pad))
                current, used = [], (0, 0)
                if len(rows) >= self.data.batch_size:
                    state = (epoch, pos, sub)
                    break
            current.append(item)
            used = (used[0] + r, used[1] + d)
        self._epoch, self._piece, self._sub = state
        return rows

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            rows = self._next_rows()
            if not rows:
                if self.split != "train":
                    self._epoch, self._piece, self._sub = 0, 0, 0  # the next loop is a fresh pass
                return
            yield to_tensors(stack_rows(rows))
            if self.split != "train" and len(rows) < self.data.batch_size:
                self._epoch, self._piece, self._sub = 0, 0, 0
                return

    def __next__(self) -> dict[str, torch.Tensor]:
        rows = self._next_rows()
        if not rows:
            self._epoch, self._piece, self._sub = 0, 0, 0
            raise StopIteration
        return to_tensors(stack_rows(rows))

    def state_dict(self) -> dict[str, Any]:
        """Position of the next batch (JSON-able)."""
        return {"epoch": self._epoch, "piece": self._piece, "sub": self._sub, "seed": self.seed,
                "rank": self.rank, "world_size": self.world_size, "split": self.split,
                "objective": self.objective.config(), "arch": self.arch, "n_pieces": len(self.p_doc)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the batch that followed ``state``; a state from other settings raises ``DataError``."""
        for key in ("seed", "rank", "world_size", "split", "arch", "n_pieces"):
            mine = self.state_dict()[key]
            if key in state and state[key] != mine:
                raise DataError(f"data state was saved with {key}={state[key]!r} but this loader has {mine!r}; "
                                "resume with the same data settings")
        self._epoch, self._piece, self._sub = int(state["epoch"]), int(state["piece"]), int(state.get("sub", 0))

    @property
    def epoch(self) -> int:
        return self._epoch

    def __len__(self) -> int:
        if self.split == "train":
            raise TypeError("the training stream is infinite")
        saved = (self._epoch, self._piece, self._sub)
        self._epoch, self._piece, self._sub = 0, 0, 0
        n = sum(1 for _ in self)
        self._epoch, self._piece, self._sub = saved
        return n


def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """numpy batch -> tensors (bool stays bool, integers become int64)."""
    out = {}
    for key, value in batch.items():
        t = torch.from_numpy(np.ascontiguousarray(value))
        out[key] = t if t.dtype == torch.bool else t.long()
    return out


def resolve_data(data: DataConfig | dict[str, Any] | None) -> DataConfig:
    """A ``DataConfig`` from itself, a mapping or None (defaults); a missing corpus path is a ``DataError``."""
    if data is None:
        data = DataConfig()
    elif isinstance(data, dict):
        data = DataConfig.from_dict(data)
    if data.path is not None and not Path(data.path).exists() and data.path != "builtin":
        raise DataError(f"{data.path}: no such corpus file or folder")
    if data.path == "builtin":
        data = data.replace(path=None)
    return data


def data_tokenizer(data: DataConfig | dict[str, Any] | None, objective: Any = None) -> Tokenizer:
    """The tokenizer the batches of ``data`` will use (preparing the corpus once if needed). Labelled data
    (``objective: supervised``) is tokenized on the fly with ``data.tokenizer`` or the default tokenizer."""
    from unimask.finetune.batches import SupervisedSpec

    data = resolve_data(data)
    if SupervisedSpec.from_objective(objective) is not None:
        return Tokenizer.load(data.tokenizer) if data.tokenizer else default_tokenizer()
    return load_store(data)[1]


def build_batches(data: DataConfig | dict[str, Any] | None, objective: str | dict[str, Any] | Objective,
                  arch: str, *, split: str = "train", seed: int = 0, rank: int = 0, world_size: int = 1,
                  start_id: int | None = None) -> BatchIterator:
    """A ``BatchIterator`` over ``data`` for ``objective`` laid out for ``arch`` (causal, prefix, encoder_decoder).

    ``start_id``: the first decoder token of an encoder-decoder, the model's ``start_token_id`` (default:
    the tokenizer's pad id, for callers without a model).
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown arch '{arch}'; use one of {', '.join(ARCHS)}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; use 'train' or 'validation'")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside world_size {world_size}")
    data = resolve_data(data)
    data.check_arch(arch)
    from unimask.finetune.batches import SupervisedSpec, supervised_batches

    spec = SupervisedSpec.from_objective(objective)
    if spec is not None:
        tok = data_tokenizer(data, objective)
        start = start_id if start_id is not None else tok.pad_id
        return supervised_batches(data, spec, arch, tok, split=split, seed=seed, rank=rank,  # type: ignore[return-value]
                                  world_size=world_size, start_id=start, pad=tok.pad_id)
    obj = build_objective(objective)
    store, tok = load_store(data)
    return BatchIterator(store, tok, obj, arch, data, split=split, seed=seed, rank=rank, world_size=world_size,
                         start_id=start_id)
