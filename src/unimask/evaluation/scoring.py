"""Family-aware scoring: log-likelihood of continuations, likelihood ranking of choices, greedy answers.

Every function takes a model, its ``ReadingFormat`` (``evaluation.formats``) and token ids, so the same
code scores a causal decoder, a prefix decoder and an encoder-decoder on the same pairs. Batches are
right-padded: a decoder row is ``input + given + continuation`` and padding comes after every real token,
so causal attention never reaches it and a prefix decoder's prefix covers only the input; an
encoder-decoder's encoder padding is masked with ``attention_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from unimask.evaluation.formats import ReadingFormat
from unimask.objectives.base import IGNORE

Pair = tuple[Sequence[int], Sequence[int]]


@dataclass(frozen=True)
class PairScore:
    """``logprob``: sum of log p(continuation token | everything before it) over the continuation;
    ``n_tokens``: its length; ``n_correct``: tokens that are the model's argmax (teacher forced)."""

    logprob: float
    n_tokens: int
    n_correct: int

    @property
    def all_correct(self) -> bool:
        return self.n_correct == self.n_tokens


def _decoder_batch(fmt: ReadingFormat, pairs: Sequence[Pair], pad: int) -> dict[str, Tensor]:
    rows, labels, prefix = [], [], []
    for src, cont in pairs:
        head = fmt.input_ids(list(src)) + fmt.given_ids(list(src))
        full = head + list(cont)
        rows.append(full[:-1])
        lab = [IGNORE] * (len(head) - 1) + list(cont)  # position t predicts full[t + 1]
        labels.append(lab)
        prefix.append(len(fmt.input_ids(list(src))))
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    lab_t = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for i, (r, lab) in enumerate(zip(rows, labels)):
        ids[i, : len(r)] = torch.tensor(r)
        lab_t[i, : len(lab)] = torch.tensor(lab)
    batch = {"input_ids": ids, "labels": lab_t}
    if fmt.arch == "prefix":
        batch["prefix_lengths"] = torch.tensor(prefix)
    return batch


def _encdec_batch(fmt: ReadingFormat, pairs: Sequence[Pair], pad: int) -> dict[str, Tensor]:
    enc = [fmt.input_ids(list(src)) for src, _ in pairs]
    dec, labels = [], []
    for src, cont in pairs:
        given = fmt.given_ids(list(src))
        full = [fmt.start_id, *given, *cont]
        dec.append(full[:-1])
        labels.append([IGNORE] * len(given) + list(cont))
    S, T = max(len(e) for e in enc), max(len(d) for d in dec)
    ids = torch.full((len(enc), S), pad, dtype=torch.long)
    mask = torch.zeros((len(enc), S), dtype=torch.long)
    dec_t = torch.full((len(enc), T), pad, dtype=torch.long)
    lab_t = torch.full((len(enc), T), IGNORE, dtype=torch.long)
    for i, (e, d, lab) in enumerate(zip(enc, dec, labels)):
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
        dec_t[i, : len(d)] = torch.tensor(d)
        lab_t[i, : len(lab)] = torch.tensor(lab)
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec_t, "labels": lab_t}


def _by_length(pairs: Sequence[Pair], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding)."""
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


@torch.no_grad()
def score_pairs(model, fmt: ReadingFormat, pairs: Sequence[Pair], *, batch_size: int = 64) -> list[PairScore]:
    """Score each ``(source ids, continuation ids)`` pair (continuations non-empty), in input order."""
    if any(len(c) == 0 for _, c in pairs):
        raise ValueError("every continuation needs at least one token")
    if any(len(fmt.input_ids(list(s))) == 0 for s, _ in pairs):  # nothing to read before the continuation
        raise ValueError("every pair needs a non-empty input; give a non-empty source")
    pad = model.config.pad_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[PairScore | None] = [None] * len(pairs)
    try:
        for idx in _by_length(pairs, batch_size):
            chunk = [pairs[i] for i in idx]
            make = _encdec_batch if fmt.arch == "encoder_decoder" else _decoder_batch
            batch = {k: v.to(device) for k, v in make(fmt, chunk, pad).items()}
            labels = batch.pop("labels")
            logits = model(**batch).logits.float()  # (B, T, V)
            logp = logits.log_softmax(-1)
            keep = labels != IGNORE
            picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]  # (B, T)
            correct = (logits.argmax(-1) == labels) & keep
            sums = (picked * keep).sum(-1).tolist()
            counts = keep.sum(-1).tolist()
            rights = correct.sum(-1).tolist()
            for j, i in enumerate(idx):
                out[i] = PairScore(float(sums[j]), int(counts[j]), int(rights[j]))
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def rank_choices(model, fmt: ReadingFormat, items: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], *,
                 batch_size: int = 64) -> list[int]:
    """For each ``(source ids, [choice ids, ...])`` the index of the choice with the highest summed
    log-likelihood (Brown et al. 2020's multiple-choice scoring; choices of one item should have equal
    token counts, as the task suite's do)."""
    flat: list[Pair] = [(src, c) for src, choices in items for c in choices]
    scores = score_pairs(model, fmt, flat, batch_size=batch_size)
    picks, k = [], 0
    for _, choices in items:
        values = [s.logprob for s in scores[k:k + len(choices)]]
        picks.append(max(range(len(values)), key=values.__getitem__))
        k += len(choices)
    return picks


def extract_answer(tokenizer, ids: Sequence[int], special_ids: frozenset[int], stop: str = "\n") -> str:
    """The answer in generated ``ids``: skip leading special tokens (a sentinel, a start-of-piece), stop
    at the next special token (EOS, a sentinel, padding), then cut at ``stop`` and strip spaces."""
    ids = list(ids)
    start = 0
    while start < len(ids) and ids[start] in special_ids:
        start += 1
    end = start
    while end < len(ids) and ids[end] not in special_ids:
        end += 1
    text = tokenizer.decode(ids[start:end], skip_special=True)
    return text.split(stop)[0].strip()


def special_token_ids(tokenizer) -> frozenset[int]:
    """Ids that end or frame an answer: pad, bos, eos, the mask tokens, mode tokens and sentinels."""
    s = tokenizer.special
    ids = {tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, *s.sentinels}
    ids |= {v for v in (s.mask, s.smask, s.gmask, s.sop, s.eop, s.nlu, s.nlg, s.s2s) if v is not None}
    return frozenset(ids)


@torch.no_grad()
def greedy_answers(model, fmt: ReadingFormat, tokenizer, sources: Sequence[Sequence[int]], *,
                   max_new_tokens: int = 16, batch_size: int = 64, stop: str = "\n") -> list[str]:
    """Greedy (KV-cache) decoding from each source in the model's format; the answer text of each
    (``extract_answer``). The target-side ``given`` tokens are not forced: the model writes them."""
    special = special_token_ids(tokenizer)
    answers: list[str] = [""] * len(sources)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    for k in range(0, len(order), batch_size):
        idx = order[k:k + batch_size]
        prompts = [fmt.input_ids(list(sources[i])) for i in idx]
        new = model.generate(prompts, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_id)
        for j, i in enumerate(idx):
            row = new[j].tolist()
            if fmt.echo_source:  # BART writes the source back first
                src = list(sources[i])
                row = row[len(src):] if row[: len(src)] == src else row
            answers[i] = extract_answer(tokenizer, row, special, stop)
    return answers


__all__ = ["PairScore", "extract_answer", "greedy_answers", "rank_choices", "score_pairs", "special_token_ids"]
