"""Scores of one trained model on the study's probes (``experiments.probes``), as plain numbers.

All scoring goes through ``unimask.evaluation`` in the reading format of the model's training objective,
so every family reads every probe the way it was trained to read text.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from unimask.evaluation import ReadingFormat, greedy_answers, rank_choices, score_pairs
from unimask.experiments.probes import SETTINGS


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def loss_on(model, fmt: ReadingFormat, pairs: list[tuple[list[int], list[int]]]) -> float:
    """Mean negative log-likelihood per continuation token (nats)."""
    scores = score_pairs(model, fmt, pairs)
    return -sum(s.logprob for s in scores) / max(1, sum(s.n_tokens for s in scores))


def multiple_choice(model, fmt: ReadingFormat, items: list[dict[str, Any]]) -> float:
    if not items:
        return math.nan
    picks = rank_choices(model, fmt, [(it["source"], it["choices"]) for it in items])
    return _mean([float(p == it["label"]) for p, it in zip(picks, items)])


def task_scores(model, fmt: ReadingFormat, tok, items: list[dict[str, Any]], *, generate: bool = True,
                ) -> dict[str, float]:
    """Likelihood-ranking accuracy, greedy exact match, teacher-forced per-token accuracy of the answer
    and the answer's mean log-likelihood, for one task in one setting."""
    picks = rank_choices(model, fmt, [(it["source"], it["choices"]) for it in items])
    answer_pairs = [(it["source"], it["choices"][it["label"]]) for it in items]
    scores = score_pairs(model, fmt, answer_pairs)
    out = {"accuracy": _mean([float(p == it["label"]) for p, it in zip(picks, items)]),
           "token_accuracy": sum(s.n_correct for s in scores) / max(1, sum(s.n_tokens for s in scores)),
           "answer_logprob": _mean([s.logprob for s in scores]),
           "answer_tokens": _mean([float(s.n_tokens) for s in scores])}
    if generate:
        longest = max(len(c) for it in items for c in it["choices"])
        answers = greedy_answers(model, fmt, tok, [it["source"] for it in items], max_new_tokens=longest + 3)
        out["exact_match"] = _mean([float(a == it["answer"]) for a, it in zip(answers, items)])
    return out


def information_flow(model, fmt: ReadingFormat, source: list[int]) -> float:
    """How much the model's output at the FIRST input position moves when the LAST input token changes
    (max |delta logit|): exactly 0 for a causal decoder, positive when the input is read bidirectionally.
    For an encoder-decoder the encoder states are compared."""
    ids = torch.tensor([fmt.input_ids(source)])
    other = ids.clone()
    other[0, -1] = (int(ids[0, -1]) + 1) % model.config.vocab_size
    with torch.no_grad():
        if model.config.arch == "encoder_decoder":
            a, b = model.encode(ids)[0], model.encode(other)[0]
            return float((a[0, 0] - b[0, 0]).abs().max())
        kw = {"prefix_lengths": torch.tensor([ids.shape[1]])} if model.config.arch == "prefix" else {}
        a = model(ids, **kw).logits[0, 0]
        b = model(other, **kw).logits[0, 0]
    return float((a - b).abs().max())


def attention_rank(model, inputs: list[list[int]]) -> dict[str, dict[str, float]]:
    from unimask.analysis.attention_rank import analyse, summarise

    ids = torch.tensor(inputs)
    return summarise(analyse(model, ids))


def samples(model, fmt: ReadingFormat, tok, probes: dict[str, Any], n: int = 2) -> list[dict[str, str]]:
    """Greedy continuations of two held-out texts and one prompt of each of the first two tasks."""
    out = []
    sources = [p["source"] for p in probes["text"][:n]]
    tasks = list(probes["tasks"]["in_distribution"].items())[:n]
    sources += [items[0]["source"] for _, items in tasks if items]
    for src in sources:
        new = model.generate([fmt.input_ids(src)], max_new_tokens=16, eos_token_id=tok.eos_id)[0].tolist()
        out.append({"prompt": tok.decode(src), "output": tok.decode(new, skip_special=False).replace("<pad>", "")})
    return out


CURVE_TASKS = ("sort", "maxmin")  # the multi-token answers the emergence curve follows


def evaluate_model(model, fmt: ReadingFormat, tok, probes: dict[str, Any], *, full: bool = True,
                   ) -> dict[str, Any]:
    """Every score of one model. ``full=False`` scores only the multi-token tasks in their trained format
    (``CURVE_TASKS``: the points of a training curve)."""
    model.eval()
    result: dict[str, Any] = {"tasks": {}}
    for setting in SETTINGS if full else ("in_distribution",):
        result["tasks"][setting] = {name: task_scores(model, fmt, tok, items, generate=setting == "in_distribution")
                                    for name, items in probes["tasks"][setting].items() if full or name in CURVE_TASKS}
    if not full:
        return result
    pairs = [(p["source"], p["continuation"]) for p in probes["text"]]
    result["text_loss"] = loss_on(model, fmt, pairs)
    task_pairs = [(it["source"], it["choices"][it["label"]]) for items in probes["tasks"]["in_distribution"].values()
                  for it in items]
    result["task_loss"] = loss_on(model, fmt, task_pairs)
    result["cloze"] = multiple_choice(model, fmt, probes["cloze"])
    result["ending"] = multiple_choice(model, fmt, probes["ending"])
    result["information_flow"] = information_flow(model, fmt, probes["text"][0]["source"])
    if probes["rank_inputs"]:
        result["attention_rank"] = attention_rank(model, probes["rank_inputs"])
    result["samples"] = samples(model, fmt, tok, probes)
    return result


__all__ = ["attention_rank", "evaluate_model", "information_flow", "loss_on", "multiple_choice", "samples",
           "task_scores"]
