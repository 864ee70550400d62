"""Batches of labelled examples with the interface of ``unimask.data.pipeline.BatchIterator``.

Examples are split into train and validation by a stable hash of their text (so a record is always on the
same side), shuffled per epoch by ``(seed, epoch)``, split between ranks, and packed into rows
(``objectives.layout.pack_rows``). The iterator's state is ``(epoch, position)``: resuming yields exactly
the batches that would have come next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unimask.errors import ConfigError, DataError
from unimask.finetune.data import Layout, ReadReport, hf_renderer, items_of, plain_renderer, read_records
from unimask.objectives.layout import item_lengths, pack_rows, stack_rows

SUPERVISED = "supervised"


@dataclass(frozen=True)
class SupervisedSpec:
    """The ``objective: {name: supervised, ...}`` settings: which record fields hold the input, the output
    and chats, and which chat template renders chats (``auto``: the model's Hugging Face template when its
    tokenizer folder has one, else the plain server template)."""

    input_field: str = "input"
    output_field: str = "output"
    messages_field: str = "messages"
    chat_template: str = "auto"

    @classmethod
    def from_objective(cls, objective: Any) -> SupervisedSpec | None:
        """The spec when ``objective`` names ``supervised`` (a string or a mapping), else None."""
        if objective == SUPERVISED:
            return cls()
        if not isinstance(objective, dict) or objective.get("name") != SUPERVISED:
            return None
        settings = {k: v for k, v in objective.items() if k != "name"}
        known = {"input_field", "output_field", "messages_field", "chat_template"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"objective 'supervised': unknown setting(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(known))}")
        for key, value in settings.items():
            if not isinstance(value, str) or not value:
                raise ConfigError(f"objective 'supervised': {key} must be a non-empty string")
        if settings.get("chat_template", "auto") not in ("auto", "plain", "hf"):
            raise ConfigError("objective 'supervised': chat_template must be auto, plain or hf")
        return cls(**settings)


def _is_validation(text: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return h / 2 ** 64 < fraction


class SupervisedBatches:
    """Batches of one split of a labelled dataset, laid out for one family (see the module docstring)."""

    def __init__(self, items: list[dict[str, np.ndarray]], tokenizer: Any, data: Any, *, split: str, seed: int,
                 rank: int, world_size: int, pad: int) -> None:
        self.items, self.tokenizer, self.data = items, tokenizer, data
        self.split, self.seed, self.rank, self.world_size, self.pad = split, seed, rank, world_size, pad
        self.seq_len = data.seq_len
        self.target_len = data.target_len or data.seq_len
        self._epoch, self._pos = 0, 0
        if split == "train" and len(items) < world_size:
            raise DataError(f"{len(items)} training examples are fewer than the {world_size} ranks; give it more data")

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.items)
        perm = np.random.default_rng([self.seed, epoch]).permutation(n) if self.split == "train" else np.arange(n)
        return perm[self.rank::self.world_size]

    def _next_rows(self) -> list[dict[str, np.ndarray]]:
        rows: list[dict[str, np.ndarray]] = []
        current: list[dict[str, np.ndarray]] = []
        used = (0, 0)
        while len(rows) < self.data.batch_size:
            order = self._order(self._epoch)
            if self._pos >= len(order):
                if current:
                    rows.append(pack_rows(current, self.seq_len, self.target_len, self.pad))
                    current, used = [], (0, 0)
                if self.split != "train":
                    break
                self._epoch, self._pos = self._epoch + 1, 0
                continue
            item = self.items[int(order[self._pos])]
            r, d = item_lengths(item)
            fits = current and used[0] + r <= self.seq_len and used[1] + d <= self.target_len
            if current and (not self.data.pack or not fits):
                rows.append(pack_rows(current, self.seq_len, self.target_len, self.pad))
                current, used = [], (0, 0)
                continue
            current.append(item)
            used = (used[0] + r, used[1] + d)
            self._pos += 1
        if current:  # a partly filled row at the end of the batch: put its examples back
            self._pos -= len(current)
        return rows

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from unimask.data.pipeline import to_tensors

        while True:
            rows = self._next_rows()
            if not rows:
                self._epoch, self._pos = 0, 0
                return
            yield to_tensors(stack_rows(rows))
            if self.split != "train" and len(rows) < self.data.batch_size:
                self._epoch, self._pos = 0, 0
                return

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "piece": self._pos, "sub": 0, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "split": self.split, "objective": {"name": SUPERVISED},
                "n_pieces": len(self.items)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "rank", "world_size", "split", "n_pieces"):
            if key in state and state[key] != self.state_dict()[key]:
                raise DataError(f"data state was saved with {key}={state[key]!r} but this loader has "
                                f"{self.state_dict()[key]!r}; resume with the same data")
        self._epoch, self._pos = int(state["epoch"]), int(state["piece"])

    @property
    def epoch(self) -> int:
        return self._epoch


def supervised_batches(data: Any, spec: SupervisedSpec, arch: str, tokenizer: Any, *, split: str, seed: int,
                       rank: int, world_size: int, start_id: int, pad: int,
                       report: ReadReport | None = None) -> SupervisedBatches:
    """Batches of the labelled records in ``data.path`` for ``arch`` (``data.loss_on_targets_only`` as in
    pretraining)."""
    if data.path is None:
        raise ConfigError("objective 'supervised' needs labelled data: set data.path to a JSONL or Parquet file")
    render = plain_renderer
    if spec.chat_template in ("auto", "hf") and data.tokenizer:
        from pathlib import Path

        folder = Path(data.tokenizer)
        hf = hf_renderer(folder if folder.is_dir() else folder.parent)
        if hf is None and spec.chat_template == "hf":
            raise ConfigError(f"objective 'supervised': chat_template hf, but {folder} has no chat_template")
        render = hf or plain_renderer
    records = read_records(data.path, input_field=spec.input_field, output_field=spec.output_field,
                           messages_field=spec.messages_field, skip_bad=data.skip_bad, report=report)
    layout = Layout(arch, tokenizer.bos_id, tokenizer.eos_id, start_id, data.loss_on_targets_only)
    items: list[dict[str, np.ndarray]] = []
    target_len = data.target_len or data.seq_len
    too_long = in_split = 0
    for rec in records:
        key = rec.source if rec.messages is None else repr(rec.messages)
        if _is_validation(str(key) + str(rec.target), data.validation_fraction) != (split == "validation"):
            continue
        in_split += 1
        for item in items_of(rec, tokenizer, render, layout):
            r, d = item_lengths(item)
            if r > data.seq_len or d > target_len:
                too_long += 1
                continue
            items.append(item)
    if too_long and split == "train":
        import logging

        logging.getLogger(__name__).warning("%d labelled examples are longer than data.seq_len %d and were left out",
                                            too_long, data.seq_len)
    if split == "train" and not in_split:
        raise DataError(f"{data.path}: all {len(records)} records fell in the validation split; give more records "
                        "or --set data.validation_fraction=0")
    if split == "train" and not items:
        raise DataError(f"{data.path}: no training example fits data.seq_len {data.seq_len}; raise data.seq_len")
    return SupervisedBatches(items, tokenizer, data, split=split, seed=seed, rank=rank, world_size=world_size, pad=pad)


__all__ = ["SUPERVISED", "SupervisedBatches", "SupervisedSpec", "supervised_batches"]
