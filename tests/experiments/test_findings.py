"""The verdict rule and the findings, on constructed results (clearly better, clearly worse, within noise)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from unimask.experiments.facts import calculator_facts
from unimask.experiments.findings import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    Stat,
    all_findings,
    compare,
    f_efficiency,
    f_masks,
    f_twice_params,
    f_zero_shot,
    learned,
    verdict_of,
)

FACTS = calculator_facts()
ARCH = {"causal": "causal", "prefix": "prefix", "encdec-prefix-params": "encoder_decoder",
        "encdec-prefix-compute": "encoder_decoder", "encdec-span-params": "encoder_decoder",
        "encdec-span-compute": "encoder_decoder"}


def _tasks(acc: float) -> dict[str, dict[str, float]]:
    return {name: {"accuracy": acc, "token_accuracy": acc, "exact_match": acc ** (2 if name != "max" else 1),
                   "answer_tokens": 2.0 if name != "max" else 1.0, "answer_logprob": -1.0}
            for name in ("max", "min", "maxmin", "sort")}


def run(row: str, seed: int, *, loss: float = 3.0, acc: float = 0.6, zs: float = 0.3, flow: float = 0.5,
        params: int = 1000) -> dict[str, Any]:
    rank = {"bidirectional": {"mean_effective_rank_ratio": 0.3, "full_rank_share": 1.0},
            "causal": {"mean_effective_rank_ratio": 0.5, "full_rank_share": 1.0}}
    return {"row": row, "arch": ARCH[row], "seed": seed, "params": params, "steps": 100, "tokens": 1000,
            "loss_tokens": 1000 if row == "causal" else 500, "flops": 1e9, "objective": "causal_lm",
            "eval": {"text_loss": loss, "task_loss": loss / 2, "cloze": zs, "ending": zs,
                     "information_flow": 0.0 if ARCH[row] == "causal" else flow,
                     "tasks": {"in_distribution": _tasks(acc), "zero_shot": _tasks(zs), "few_shot": _tasks(zs)},
                     "attention_rank": rank, "attention_rank_init": rank},
            "curve": []}


def results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"runs": runs, "facts": copy.deepcopy(FACTS), "timing": {"prefix_over_causal": 1.0},
            "baselines": {"unigram_text_loss": 5.0, "unigram_task_loss": 4.0, "chance_accuracy": 0.25},
            "study": {"source_tokens": 32, "continuation_tokens": 16, "few_shot": 3, "timing_repeats": 5}}


@pytest.mark.parametrize("a, b, higher, expected", [
    ((1.00, 1.02), (0.50, 0.52), True, SUPPORTED),       # clearly better
    ((0.50, 0.52), (1.00, 1.02), True, CONTRADICTED),    # clearly worse
    ((1.00, 0.60), (0.80, 0.90), True, INCONCLUSIVE),    # within noise
    ((2.00, 2.01), (3.00, 3.02), False, SUPPORTED),      # lower is better: a's loss is lower
    ((2.00, 2.00), (2.00, 2.00), True, INCONCLUSIVE),    # no difference at all
])
def test_the_verdict_rule(a: tuple, b: tuple, higher: bool, expected: str) -> None:
    assert verdict_of(compare(Stat(a), Stat(b), higher_is_better=higher)) == expected


def test_the_rule_is_twice_the_spread() -> None:
    a, b = Stat((1.0, 1.2)), Stat((0.0, 0.2))  # sd = 0.1414 each; spread = 0.2; diff 1.0 > 0.4
    c = compare(a, b)
    assert c.gain == pytest.approx(1.0) and c.spread == pytest.approx(0.2) and c.counts
    near = compare(Stat((1.0, 1.2)), Stat((0.65, 0.85)))  # diff 0.35 < 2 x 0.2
    assert not near.counts
    assert Stat((3.0,)).sd == 0.0 and Stat((1.0, 3.0)).mean == 2.0


def test_efficiency_follows_the_losses() -> None:
    better = results([run("causal", 0, loss=3.0), run("causal", 1, loss=3.02), run("prefix", 0, loss=3.5),
                      run("prefix", 1, loss=3.52)])
    assert f_efficiency(better).verdict == SUPPORTED
    worse = results([run("causal", 0, loss=3.5), run("causal", 1, loss=3.52), run("prefix", 0, loss=3.0),
                     run("prefix", 1, loss=3.02)])
    assert f_efficiency(worse).verdict == CONTRADICTED
    noisy = results([run("causal", 0, loss=3.0), run("causal", 1, loss=3.6), run("prefix", 0, loss=3.2),
                     run("prefix", 1, loss=3.4)])
    assert f_efficiency(noisy).verdict == INCONCLUSIVE


def _encdec(p_loss: float, c_loss: float) -> dict[str, Any]:
    runs = [run("causal", s, loss=3.0 + 0.01 * s) for s in (0, 1)]
    for obj in ("prefix", "span"):
        runs += [run(f"encdec-{obj}-params", s, loss=p_loss + 0.01 * s, params=1000) for s in (0, 1)]
        runs += [run(f"encdec-{obj}-compute", s, loss=c_loss + 0.01 * s, params=2000) for s in (0, 1)]
    return results(runs)


def test_twice_the_parameters() -> None:
    assert f_twice_params(_encdec(p_loss=3.3, c_loss=2.7)).verdict == SUPPORTED  # only the 2x model wins
    assert f_twice_params(_encdec(p_loss=2.7, c_loss=2.6)).verdict == CONTRADICTED  # wins without the 2x
    assert f_twice_params(_encdec(p_loss=3.4, c_loss=3.3)).verdict == CONTRADICTED  # the 2x model loses
    assert f_twice_params(_encdec(p_loss=3.0, c_loss=3.0)).verdict == INCONCLUSIVE


def test_zero_shot_against_the_best_other_row() -> None:
    rows = [run("causal", s, zs=0.5 + 0.01 * s) for s in (0, 1)] + [run("prefix", s, zs=0.3 + 0.01 * s) for s in (0, 1)]
    assert f_zero_shot(results(rows)).verdict == SUPPORTED
    rows = [run("causal", s, zs=0.3 + 0.01 * s) for s in (0, 1)] + [run("prefix", s, zs=0.5 + 0.01 * s) for s in (0, 1)]
    f = f_zero_shot(results(rows))
    assert f.verdict == CONTRADICTED and f.values["best"] == "prefix"


def test_masks_need_zero_flow_in_causal_runs_only() -> None:
    good = results([run("causal", 0), run("prefix", 0), run("encdec-span-params", 0)])
    assert f_masks(good).verdict == SUPPORTED
    leaky = copy.deepcopy(good)
    leaky["runs"][0]["eval"]["information_flow"] = 1e-3  # a causal decoder that saw the future
    assert f_masks(leaky).verdict == CONTRADICTED
    blind = copy.deepcopy(good)
    blind["runs"][1]["eval"]["information_flow"] = 0.0  # a prefix decoder that never looks ahead
    assert f_masks(blind).verdict == CONTRADICTED


def test_every_question_has_a_finding_and_facts_are_checked() -> None:
    found = all_findings(results([run("causal", s) for s in (0, 1)] + [run("prefix", s) for s in (0, 1)]))
    assert {f.question for f in found} == set(range(1, 10))
    by_id = {f.id: f for f in found}
    assert by_id["finetune"].verdict == "not measured"
    assert by_id["co2"].verdict == CONTRADICTED  # 284 t is not GPT-3 (Patterson: 552 t)
    assert by_id["cost"].verdict == CONTRADICTED
    assert by_id["175b"].verdict == SUPPORTED and by_id["families"].verdict == SUPPORTED
    assert by_id["composite"].key_number == "1.02% → 7.78%"


def test_learned_flags_a_row_at_chance() -> None:
    res = results([run("causal", s, loss=3.0, acc=0.8) for s in (0, 1)]
                  + [run("prefix", s, loss=3.0, acc=0.26) for s in (0, 1)])
    flags = learned(res)
    assert flags["causal"]["ok"] and not flags["prefix"]["ok"]
