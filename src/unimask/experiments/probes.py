"""The held-out probes every model of a study is scored on, built once per study from its corpus.

* ``text``: held-out text continuations: ``continuation_tokens`` tokens after ``source_tokens`` tokens of
  a document that never entered the corpus; the loss on them is comparable across families because
  every model reads the same source and is scored on the same tokens.
* ``cloze`` and ``ending``: zero-shot multiple choice on held-out text (tasks never trained on): the
  next word among four words of the same token count, and the next eight tokens among four spans of
  other held-out documents (after LAMBADA and HellaSwag, with random distractors; chance 1/4).
* ``tasks``: the task suite (``unimask.data.task_suite``) in three settings: ``in_distribution`` (the
  trained format, no examples), ``zero_shot`` (a format never trained on) and ``few_shot`` (that format
  after ``few_shot`` solved examples).

Probes are token ids and plain numbers (JSON-able), so worker processes receive them as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unimask.data.task_suite import N_CHOICES, few_shot_prefix, instances
from unimask.data.tokenizer import Tokenizer
from unimask.experiments.study import StudySpec

SETTINGS = ("in_distribution", "zero_shot", "few_shot")
ENDING_TOKENS = 8


def _windows(docs: list[list[int]], need: int, count: int) -> list[tuple[int, int]]:
    """``(doc, start)`` of up to ``count`` windows of ``need`` tokens, spread over the documents."""
    out: list[tuple[int, int]] = []
    for k in range(0, 64):  # k-th window of every long-enough document, until enough
        for d, ids in enumerate(docs):
            start = k * need
            if start + need <= len(ids):
                out.append((d, start))
                if len(out) == count:
                    return out
    return out


def text_pairs(docs: list[list[int]], spec: StudySpec) -> list[dict[str, Any]]:
    S, C = spec.source_tokens, spec.continuation_tokens
    return [{"source": docs[d][s:s + S], "continuation": docs[d][s + S:s + S + C]}
            for d, s in _windows(docs, S + C, spec.text_pairs)]


def _is_word(tok: Tokenizer, i: int) -> bool:
    text = tok.decode([i])
    return len(text) > 2 and text[0] == " " and text[1:].isalpha()


def cloze_items(docs: list[list[int]], tok: Tokenizer, spec: StudySpec, rng: np.random.Generator,
                ) -> list[dict[str, Any]]:
    """Next-word choice: a one-token word after ``source_tokens`` of context, against three other
    one-token words drawn from the held-out text's words (frequency-weighted)."""
    S = spec.source_tokens
    positions = [(d, i) for d, ids in enumerate(docs) for i in range(S, len(ids)) if _is_word(tok, ids[i])]
    pool = np.array([docs[d][i] for d, i in positions])
    if len(positions) == 0 or len(set(pool.tolist())) < N_CHOICES:
        return []
    chosen = rng.choice(len(positions), size=min(spec.text_pairs, len(positions)), replace=False)
    items = []
    for c in chosen.tolist():
        d, i = positions[c]
        answer = docs[d][i]
        wrong: list[int] = []
        while len(wrong) < N_CHOICES - 1:
            w = int(pool[int(rng.integers(0, len(pool)))])
            if w != answer and w not in wrong:
                wrong.append(w)
        options = [answer, *wrong]
        order = rng.permutation(N_CHOICES)
        items.append({"source": docs[d][i - S:i], "choices": [[options[int(k)]] for k in order],
                      "label": int(np.argmax(order == 0))})
    return items


def ending_items(docs: list[list[int]], spec: StudySpec, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The true next ``ENDING_TOKENS`` tokens against three spans of as many tokens from other documents."""
    S, E = spec.source_tokens, ENDING_TOKENS
    wins = _windows(docs, S + E, spec.text_pairs)
    if len({d for d, _ in wins}) < N_CHOICES:
        return []
    items = []
    for d, s in wins:
        others = [w for w in wins if w[0] != d]
        picks = rng.choice(len(others), size=N_CHOICES - 1, replace=False)
        options = [docs[d][s + S:s + S + E]] + [docs[o][t + S:t + S + E] for o, t in (others[int(p)] for p in picks)]
        order = rng.permutation(N_CHOICES)
        items.append({"source": docs[d][s:s + S], "choices": [options[int(k)] for k in order],
                      "label": int(np.argmax(order == 0))})
    return items


def task_items(spec: StudySpec, tok: Tokenizer) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{setting: {task: [item, ...]}}``; an item holds the source ids, the choice ids, the label and
    the answer text."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for setting in SETTINGS:
        novel = setting != "in_distribution"
        shots = spec.few_shot if setting == "few_shot" else 0
        per_task = {}
        for name in spec.tasks:
            context = few_shot_prefix(name, shots, seed=1, novel=novel) if shots else ""
            per_task[name] = [{"source": tok.encode(context + i.prompt), "choices": [tok.encode(c) for c in i.choices],
                               "label": i.label, "answer": i.answer.strip()}
                              for i in instances(name, spec.eval_instances, seed=1, novel=novel)]
        out[setting] = per_task
    return out


def build_probes(spec: StudySpec, heldout: list[str], tok: Tokenizer) -> dict[str, Any]:
    """Every probe of the study (see the module docstring)."""
    docs = [ids for ids in tok.encode_batch(heldout) if ids]
    rng = np.random.default_rng(20241201)
    return {"text": text_pairs(docs, spec), "cloze": cloze_items(docs, tok, spec, rng),
            "ending": ending_items(docs, spec, rng), "tasks": task_items(spec, tok),
            "rank_inputs": [p["source"][: spec.rank_length] for p in text_pairs(docs, spec)
                            if len(p["source"]) >= spec.rank_length][: spec.rank_sequences]}


def unigram_loss(counts: np.ndarray, sequences: list[list[int]]) -> float:
    """Mean negative log-likelihood (nats per token) of ``sequences`` under the corpus' unigram
    distribution with add-one smoothing: the baseline a model must beat to have learned anything."""
    p = (counts.astype(np.float64) + 1.0) / (counts.sum() + len(counts))
    ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences if len(s)])
    return float(-np.log(p[ids]).mean())


__all__ = ["SETTINGS", "build_probes", "cloze_items", "ending_items", "task_items", "text_pairs", "unigram_loss"]
