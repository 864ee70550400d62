"""From ``results.json`` to verdicts: statistics across seeds, the written verdict rule, one finding per claim.

The rule (``compare``): a difference between two rows counts when it exceeds twice its across-seed
spread, ``|mean_a - mean_b| > 2 * sqrt(sd_a^2 + sd_b^2)`` with ``sd`` the sample standard deviation over
seeds; the claim is then *supported* or *contradicted* by the difference's sign, and *inconclusive at
this scale* otherwise. Claims about published facts use the rule stated in their finding. Every number
a finding shows is read from the results (runs or calculator facts); nothing here is typed in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MIN_TOKEN_ACCURACY = 0.2  # points of the p^L check: models that get at least this share of answer tokens right
MIN_SUBTASK_MATCH = 0.1  # runs of the composite check: both subtasks solved at least this often
NATIVE = "encdec-prefix-compute"  # the natively pretrained encoder-decoder the adapted one is compared with
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_MEASURED = "supported", "contradicted", "inconclusive", "not measured"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_MEASURED)


@dataclass(frozen=True)
class Stat:
    """A metric over seeds: ``values`` (one per seed), their mean and sample standard deviation."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        vals = [v for v in self.values if not math.isnan(v)]
        return statistics.fmean(vals) if vals else math.nan

    @property
    def sd(self) -> float:
        vals = [v for v in self.values if not math.isnan(v)]
        return statistics.stdev(vals) if len(vals) > 1 else 0.0

    def text(self, digits: int = 3, percent: bool = False) -> str:
        if math.isnan(self.mean):
            return "n/a"
        if percent:
            return f"{100 * self.mean:.1f}% ± {100 * self.sd:.1f}"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: ``gain`` > 0 when a is better, its ``spread`` and whether it ``counts``."""

    gain: float
    spread: float

    @property
    def counts(self) -> bool:
        return abs(self.gain) > 2.0 * self.spread and not math.isnan(self.gain)


def compare(a: Stat, b: Stat, higher_is_better: bool = True) -> Comparison:
    """The verdict rule's comparison of two rows' metrics (see the module docstring)."""
    gain = (a.mean - b.mean) if higher_is_better else (b.mean - a.mean)
    return Comparison(gain, math.sqrt(a.sd ** 2 + b.sd ** 2))


def verdict_of(c: Comparison, claim_says_a_better: bool = True) -> str:
    """Supported when the difference counts in the claimed direction, contradicted when it counts against."""
    if not c.counts:
        return INCONCLUSIVE
    return SUPPORTED if (c.gain > 0) == claim_says_a_better else CONTRADICTED


# Reading results ----------------------------------------------------------------------------------------

def rows_of(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Runs grouped by row, in the study's row order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for run in results["runs"]:
        out.setdefault(run["row"], []).append(run)
    return out


def stat(runs: list[dict[str, Any]], fn: Callable[[dict[str, Any]], float]) -> Stat:
    values = []
    for r in runs:
        try:
            values.append(float(fn(r)))
        except (KeyError, TypeError, ZeroDivisionError):
            values.append(math.nan)
    return Stat(tuple(values))


def task_mean(run: dict[str, Any], setting: str, metric: str = "accuracy") -> float:
    tasks = run["eval"]["tasks"][setting]
    vals = [t[metric] for t in tasks.values() if metric in t]
    return statistics.fmean(vals) if vals else math.nan


def zero_shot(run: dict[str, Any]) -> float:
    """Mean zero-shot accuracy: the task suite in a never-trained format, held-out cloze and ending."""
    vals = [task_mean(run, "zero_shot"), run["eval"].get("cloze", math.nan), run["eval"].get("ending", math.nan)]
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.fmean(vals) if vals else math.nan


def loss_token_share(run: dict[str, Any]) -> float:
    return run["loss_tokens"] / run["tokens"]


def loss_tokens_per_gflop(run: dict[str, Any]) -> float:
    return run["loss_tokens"] / (run["flops"] / 1e9)


def rank_ratio(run: dict[str, Any], mode: str, key: str = "attention_rank") -> float:
    return run["eval"][key][mode]["mean_effective_rank_ratio"]


# Findings --------------------------------------------------------------------------------------------------

@dataclass
class Finding:
    """One claim of the notes, checked. Texts are keys into the report's bilingual strings
    (``report.text``) with ``values`` for their placeholders; ``numbers`` are ``(label key, value text)``."""

    id: str
    question: int
    verdict: str
    numbers: list[tuple[str, str]] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    command: str = "unimask compare --study cpu && unimask report"
    key_number: str = ""


def _fmt_pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def _have(rows: dict[str, list[dict[str, Any]]], *names: str) -> bool:
    return all(n in rows for n in names)


def f_families(results: dict[str, Any]) -> Finding:
    facts = results["facts"]["parameters"]
    ok = all(p["gap"] is not None and abs(p["gap"]) <= p["tolerance"] for p in facts)
    numbers = [(f"model:{p['model']}", f"{p['parameters']:,} ({p['arch']}; published {p['published']:,.0f}, "
                                       f"{100 * p['gap']:+.2f}%)") for p in facts]
    return Finding("families", 1, SUPPORTED if ok else CONTRADICTED, numbers, figures=["masks", "params"],
                   command="unimask params llama-7b  (and each model name)",
                   key_number=f"{len(facts)}/{len(facts)}" if ok else "")


def f_masks(results: dict[str, Any]) -> Finding:
    rows = rows_of(results)
    flows = {name: stat(runs, lambda r: r["eval"]["information_flow"]) for name, runs in rows.items()}
    arch = {name: runs[0]["arch"] for name, runs in rows.items()}
    causal_zero = all(v == 0.0 for name, s in flows.items() if arch[name] == "causal" for v in s.values)
    others_pos = all(v > 0.0 for name, s in flows.items() if arch[name] != "causal" for v in s.values)
    numbers = [(f"row:{name}", s.text(4)) for name, s in flows.items()]
    verdict = SUPPORTED if causal_zero and others_pos else CONTRADICTED
    return Finding("masks", 2, verdict, numbers, figures=["masks", "information_flow"],
                   command="unimask compare --study cpu && unimask report  (and: unimask masks)",
                   key_number=f"causal {flows.get('causal', Stat((math.nan,))).mean:g}")


def f_loss_tokens(results: dict[str, Any]) -> Finding:
    rows = rows_of(results)
    share = {name: stat(runs, loss_token_share) for name, runs in rows.items()}
    per_flop = {name: stat(runs, loss_tokens_per_gflop) for name, runs in rows.items()}
    numbers = [(f"row:{name}", f"{share[name].text(percent=True)} of tokens; {per_flop[name].mean:,.0f} per GFLOP")
               for name in rows]
    verdict = INCONCLUSIVE
    if _have(rows, "causal", "prefix"):
        verdict = verdict_of(compare(share["causal"], share["prefix"]))
    return Finding("loss_tokens", 3, verdict, numbers, figures=["loss_tokens"],
                   key_number=f"{_fmt_pct(share['causal'].mean)} vs {_fmt_pct(share['prefix'].mean)}"
                   if _have(rows, "causal", "prefix") else "")


def f_efficiency(results: dict[str, Any]) -> Finding:
    rows = rows_of(results)
    text = {name: stat(runs, lambda r: r["eval"]["text_loss"]) for name, runs in rows.items()}
    numbers = [(f"row:{name}", text[name].text()) for name in rows]
    numbers.append(("baseline:unigram", f"{results['baselines']['unigram_text_loss']:.3f}"))
    timing = results.get("timing")
    if timing:
        numbers.append(("timing:prefix_over_causal", f"{timing['prefix_over_causal']:.3f}"))
    verdict, values = INCONCLUSIVE, {}
    if _have(rows, "causal", "prefix"):
        c = compare(text["causal"], text["prefix"], higher_is_better=False)
        verdict = verdict_of(c)
        values = {"gain": f"{c.gain:+.3f}", "spread": f"{2 * c.spread:.3f}"}
    return Finding("efficiency", 2, verdict, numbers, values, figures=["curves", "target_loss"],
                   key_number=values.get("gain", ""))


def _own_loss_drop(run: dict[str, Any]) -> tuple[float, float]:
    """(first, last) held-out loss on the run's own objective (the trainer's validation split)."""
    curve = run.get("loss_curve") or []
    if len(curve) < 2:
        return math.nan, math.nan
    return curve[0]["heldout_loss"], curve[-1]["heldout_loss"]


def f_objectives(results: dict[str, Any]) -> Finding:
    rows = rows_of(results)
    base = results["baselines"]["unigram_text_loss"]
    first = {name: stat(runs, lambda r: _own_loss_drop(r)[0]) for name, runs in rows.items()}
    last = {name: stat(runs, lambda r: _own_loss_drop(r)[1]) for name, runs in rows.items()}
    text = {name: stat(runs, lambda r: r["eval"]["text_loss"]) for name, runs in rows.items()}
    trained = {name: first[name].mean - last[name].mean > 1.0 for name in rows}
    numbers = [(f"row:{name}", f"{runs[0]['objective']}: {first[name].mean:.3f} -> {last[name].text()}; "
                               f"text {text[name].mean:.3f} (unigram {base:.3f})") for name, runs in rows.items()]
    return Finding("objectives", 3, SUPPORTED if all(trained.values()) else CONTRADICTED, numbers,
                   figures=["curves", "target_loss"], key_number=f"{sum(trained.values())}/{len(trained)}")


def _multi_token_points(results: dict[str, Any]) -> list[dict[str, float]]:
    """(per-token accuracy, answer length, exact match) of every multi-token task in every run and checkpoint."""
    points = []
    for run in results["runs"]:
        sources = [("final", run["eval"]["tasks"]["in_distribution"])]
        sources += [(f"step {p['step']}", p["tasks"]) for p in run.get("curve", [])]
        for where, tasks in sources:
            for name, t in tasks.items():
                if t.get("answer_tokens", 1) > 1.5 and "exact_match" in t:
                    points.append({"row": run["row"], "seed": run["seed"], "where": where, "task": name,
                                   "p": t["token_accuracy"], "length": t["answer_tokens"], "em": t["exact_match"]})
    return points


def f_metrics(results: dict[str, Any]) -> Finding:
    points = [pt for pt in _multi_token_points(results) if pt["p"] >= MIN_TOKEN_ACCURACY]
    if not points:  # models that get almost no token right agree with p^L trivially
        return Finding("metrics", 4, INCONCLUSIVE, figures=["emergence"])
    gaps = [abs(pt["em"] - pt["p"] ** pt["length"]) for pt in points]
    mean_gap = statistics.fmean(gaps)
    low = [pt for pt in points if pt["p"] < 0.5]
    numbers = [("emergence:points", str(len(points))), ("emergence:mean_gap", f"{mean_gap:.3f}")]
    if low:
        numbers.append(("emergence:low_p", f"{statistics.fmean(pt['p'] for pt in low):.3f} -> "
                                           f"{statistics.fmean(pt['em'] for pt in low):.3f}"))
    return Finding("metrics", 4, SUPPORTED if mean_gap <= 0.1 else CONTRADICTED, numbers,
                   {"gap": f"{mean_gap:.3f}"}, figures=["emergence"], key_number=f"{mean_gap:.3f}")


def f_composite(results: dict[str, Any]) -> Finding:
    facts = results["facts"]["composite"]
    rows = rows_of(results)
    diffs, numbers = [], []
    for name, runs in rows.items():
        pairs = []
        for r in runs:
            t = r["eval"]["tasks"]["in_distribution"]
            if {"maxmin", "max", "min"} <= set(t) and min(t["max"]["exact_match"], t["min"]["exact_match"]) >= \
                    MIN_SUBTASK_MATCH:  # two subtasks near 0 agree with their product trivially
                pairs.append((t["maxmin"]["exact_match"], t["max"]["exact_match"] * t["min"]["exact_match"]))
        if pairs:
            both = Stat(tuple(a for a, _ in pairs))
            prod = Stat(tuple(b for _, b in pairs))
            diffs.extend(abs(a - b) for a, b in pairs)
            numbers.append((f"row:{name}", f"{both.text(percent=True)} vs {prod.text(percent=True)}"))
    sub = f"{facts['k']} x ({100 * facts['subtask_before']:.0f}% -> {100 * facts['subtask_after']:.0f}%)"
    whole = f"{100 * facts['overall_before']:.2f}% -> {100 * facts['overall_after']:.2f}%"
    numbers.append(("composite:arithmetic", f"{sub}: {whole}"))
    verdict = INCONCLUSIVE if not diffs else (SUPPORTED if statistics.fmean(diffs) <= 0.1 else CONTRADICTED)
    return Finding("composite", 4, verdict, numbers,
                   {"before": f"{100 * facts['overall_before']:.2f}%", "after": f"{100 * facts['overall_after']:.2f}%",
                    "gap": f"{statistics.fmean(diffs):.3f}" if diffs else "n/a"},
                   figures=["composite"], key_number=f"{100 * facts['overall_before']:.2f}% → "
                                                      f"{100 * facts['overall_after']:.2f}%")


def f_zero_shot(results: dict[str, Any]) -> Finding:
    rows = rows_of(results)
    zs = {name: stat(runs, zero_shot) for name, runs in rows.items()}
    fs = {name: stat(runs, lambda r: task_mean(r, "few_shot")) for name, runs in rows.items()}
    ind = {name: stat(runs, lambda r: task_mean(r, "in_distribution")) for name, runs in rows.items()}
    numbers = [(f"row:{name}", f"zero-shot {zs[name].text(percent=True)}, few-shot {fs[name].text(percent=True)}, "
                               f"in-distribution {ind[name].text(percent=True)}") for name in rows]
    numbers.append(("baseline:chance", _fmt_pct(results["baselines"]["chance_accuracy"])))
    verdict, values = INCONCLUSIVE, {}
    if "causal" in rows and len(rows) > 1:
        best = max((n for n in rows if n != "causal"), key=lambda n: zs[n].mean)
        c = compare(zs["causal"], zs[best])
        verdict = verdict_of(c)
        values = {"best": best, "gain": f"{100 * c.gain:+.1f}", "spread": f"{200 * c.spread:.1f}"}
    return Finding("zero_shot", 5, verdict, numbers, values, figures=["accuracy"],
                   key_number=values.get("gain", "") + (" pts" if values else ""))


def f_low_rank(results: dict[str, Any]) -> Finding:
    runs = [r for r in results["runs"] if "attention_rank" in r["eval"]]
    if not runs:
        return Finding("low_rank", 5, INCONCLUSIVE, figures=["rank"])
    bi = stat(runs, lambda r: rank_ratio(r, "bidirectional"))
    ca = stat(runs, lambda r: rank_ratio(r, "causal"))
    bi0 = stat(runs, lambda r: rank_ratio(r, "bidirectional", "attention_rank_init"))
    ca0 = stat(runs, lambda r: rank_ratio(r, "causal", "attention_rank_init"))
    full = stat(runs, lambda r: r["eval"]["attention_rank"]["causal"]["full_rank_share"])
    full_bi = stat(runs, lambda r: r["eval"]["attention_rank"]["bidirectional"]["full_rank_share"])
    c = compare(ca, bi)  # causal has the higher effective rank if the claim holds
    numbers = [("rank:trained_bidirectional", bi.text()), ("rank:trained_causal", ca.text()),
               ("rank:init_bidirectional", bi0.text()), ("rank:init_causal", ca0.text()),
               ("rank:full_causal", full.text(percent=True)), ("rank:full_bidirectional", full_bi.text(percent=True))]
    return Finding("low_rank", 5, verdict_of(c), numbers, {"bi": f"{bi.mean:.3f}", "ca": f"{ca.mean:.3f}"},
                   figures=["rank"], command="unimask compare --study cpu && unimask report  (and: unimask rank)",
                   key_number=f"{bi.mean:.2f} vs {ca.mean:.2f}")


def f_twice_params(results: dict[str, Any]) -> Finding:
    rows = rows_of(results)
    loss = {name: stat(runs, lambda r: r["eval"]["text_loss"]) for name, runs in rows.items()}
    params = {name: runs[0]["params"] for name, runs in rows.items()}
    numbers = [(f"row:{name}", f"{loss[name].text()} ({params[name]:,} parameters)") for name in rows]
    verdicts, values = [], {}
    for objective in ("prefix", "span"):
        p_row, c_row = f"encdec-{objective}-params", f"encdec-{objective}-compute"
        if not _have(rows, "causal", p_row, c_row):
            continue
        eq_params = compare(loss[p_row], loss["causal"], higher_is_better=False)
        eq_compute = compare(loss[c_row], loss["causal"], higher_is_better=False)
        if eq_params.counts and eq_params.gain > 0:
            v = CONTRADICTED  # it wins without the extra parameters
        elif eq_compute.counts and eq_compute.gain < 0:
            v = CONTRADICTED  # twice the parameters do not win
        elif eq_compute.counts and eq_compute.gain > 0:
            v = SUPPORTED
        else:
            v = INCONCLUSIVE
        verdicts.append(v)
        values[f"{objective}_params"] = f"{eq_params.gain:+.3f}"
        values[f"{objective}_compute"] = f"{eq_compute.gain:+.3f}"
    if not verdicts:
        verdict = INCONCLUSIVE
    else:
        verdict = verdicts[0] if all(v == verdicts[0] for v in verdicts) else INCONCLUSIVE
    return Finding("twice_params", 5, verdict, numbers, values, figures=["encdec"],
                   key_number=values.get("prefix_compute", ""))


def f_large(results: dict[str, Any]) -> Finding:
    facts = results["facts"]
    above = [p for p in facts["parameters"] if p["parameters"] > facts["notes"]["large_threshold"]]
    sizes = sorted({r["params"] for r in results["runs"]})
    numbers = [("large:named", f"{len(above)}/{len(facts['parameters'])}"),
               ("large:smallest", f"{min(p['parameters'] for p in facts['parameters']):,}"),
               ("large:study", f"{sizes[0]:,} – {sizes[-1]:,}")]
    return Finding("large", 6, SUPPORTED if len(above) == len(facts["parameters"]) else CONTRADICTED, numbers,
                   figures=["params"], command="unimask params bart-large",
                   key_number=f"{len(above)}/{len(facts['parameters'])}")


def f_175b(results: dict[str, Any]) -> Finding:
    by = {p["model"]: p for p in results["facts"]["parameters"]}
    names = {"gpt3-175b": 175e9, "llama-65b": 65e9, "palm-540b": 540e9}
    numbers, ok = [], True
    for model, nominal in names.items():
        if model in by:
            gap = (by[model]["parameters"] - nominal) / nominal
            ok &= abs(gap) <= 0.01
            numbers.append((f"model:{model}", f"{by[model]['parameters']:,} ({100 * gap:+.2f}% from the name)"))
    return Finding("175b", 7, SUPPORTED if ok else CONTRADICTED, numbers, figures=["params"],
                   command="unimask params gpt3-175b", key_number=numbers[0][1].split(" ")[0] if numbers else "")


def finetune_stats(results: dict[str, Any]) -> dict[tuple[str, str, int], Stat]:
    """Accuracy on the held-out fine-tuning task by (row, init, labelled examples), over seeds."""
    runs = (results.get("finetune") or {}).get("runs") or []
    keys = sorted({(r["row"], r["init"], r["n"]) for r in runs})
    return {k: stat([r for r in runs if (r["row"], r["init"], r["n"]) == k], lambda r: r["accuracy"]) for k in keys}


def f_finetune(results: dict[str, Any]) -> Finding:
    stats = finetune_stats(results)
    command = "unimask compare --study cpu && unimask report  (and: unimask finetune --model DIR --data FILE)"
    if not stats:
        return Finding("finetune", 8, NOT_MEASURED, command=command)
    sizes = sorted({n for _, _, n in stats})
    rows = list(dict.fromkeys(r for r, init, _ in stats if init == "scratch"))
    numbers, verdicts, values = [], [], {}
    for row in rows:
        cells = []
        for n in sizes:
            pre, scratch = stats.get((row, "pretrained", n)), stats.get((row, "scratch", n))
            if pre and scratch:
                cells.append(f"{n}: {pre.text(percent=True)} vs {scratch.text(percent=True)}")
                if n == sizes[0]:
                    verdicts.append(verdict_of(compare(pre, scratch)))
                    values[row] = f"{100 * (pre.mean - scratch.mean):+.1f}"
        numbers.append((f"row:{row}", "; ".join(cells)))
    adapted = [(n, stats.get(("adapted-encdec", "pretrained", n)), stats.get((NATIVE, "pretrained", n)))
               for n in sizes]
    if any(a and b for _, a, b in adapted):
        numbers.append(("finetune:adapted", "; ".join(f"{n}: {a.text(percent=True)} vs {b.text(percent=True)}"
                                                        for n, a, b in adapted if a and b)))
    numbers.append(("baseline:chance", _fmt_pct(results["baselines"]["chance_accuracy"])))
    if any(v == CONTRADICTED for v in verdicts):
        verdict = CONTRADICTED
    elif verdicts and all(v == SUPPORTED for v in verdicts):
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    gains = ", ".join(f"{r} {v}" for r, v in values.items())
    values = {"n": str(sizes[0]), "task": str(results["finetune"]["task"]), "gains": gains}
    return Finding("finetune", 8, verdict, numbers, values, figures=["finetune"], command=command,
                   key_number=gains)


def f_cost(results: dict[str, Any]) -> Finding:
    g = results["facts"]["gpt3"]
    claim = results["facts"]["notes"]["gpt3_cost_usd"]
    estimates = [g["cost_usd_v100_list_price"], g["cost_usd_a100_40pct_mfu"]]
    verdict = CONTRADICTED if all(e > 3 * claim or e < claim / 3 for e in estimates) else SUPPORTED
    numbers = [("cost:v100", f"${g['cost_usd_v100_list_price']:,.0f} ({g['v100_hours']:,.0f} V100-hours at "
                             f"${g['v100_price_per_hour']:.2f})"),
               ("cost:a100", f"${g['cost_usd_a100_40pct_mfu']:,.0f}"),
               ("cost:break_even", f"${claim / g['v100_hours']:.3f}"),
               ("cost:flops", f"{g['flops_6nd']:.3e} (6ND), {g['flops_with_attention']:.3e} (with attention)")]
    return Finding("cost", 9, verdict, numbers, figures=["cost"],
                   command="unimask params gpt3-175b --tokens 300e9 --accelerator v100 --count 10000 --mfu 0.2",
                   key_number=f"${g['cost_usd_v100_list_price'] / 1e6:.1f}M")


def f_co2(results: dict[str, Any]) -> Finding:
    g = results["facts"]["gpt3"]
    pub = results["facts"]["published_co2"]
    quoted = results["facts"]["notes"]["gpt3_co2_t"]
    verdict = CONTRADICTED if abs(g["co2_t"] - quoted) / quoted > 0.25 else SUPPORTED
    numbers = [("co2:calculator", f"{g['energy_mwh']:,.0f} MWh, {g['co2_t']:,.0f} t CO2e"),
               ("co2:patterson", f"{pub['patterson_gpt3_t']['value']:,.0f} t ({pub['patterson_gpt3_t']['source']})"),
               ("co2:strubell", f"{quoted:,.0f} t ({pub['strubell_nas_t']['source']})")]
    return Finding("co2", 9, verdict, numbers, figures=["cost"],
                   command="unimask params gpt3-175b --tokens 300e9 --accelerator v100 --count 10000 --mfu 0.2",
                   key_number=f"{g['co2_t']:,.0f} t")


FINDINGS: tuple[Callable[[dict[str, Any]], Finding], ...] = (
    f_families, f_masks, f_efficiency, f_objectives, f_loss_tokens, f_metrics, f_composite, f_zero_shot, f_low_rank,
    f_twice_params, f_large, f_175b, f_finetune, f_cost, f_co2)


def all_findings(results: dict[str, Any]) -> list[Finding]:
    """Every finding, in the order of the notes' questions."""
    found = [f(results) for f in FINDINGS]
    return sorted(found, key=lambda f: f.question)


def learned(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Did every row learn? Held-out text loss against the unigram baseline and in-distribution accuracy
    against chance, per row (the study's own sanity check)."""
    base, chance = results["baselines"]["unigram_text_loss"], results["baselines"]["chance_accuracy"]
    out = {}
    for name, runs in rows_of(results).items():
        loss = stat(runs, lambda r: r["eval"]["text_loss"])
        acc = stat(runs, lambda r: task_mean(r, "in_distribution"))
        own = stat(runs, lambda r: _own_loss_drop(r)[1])
        out[name] = {"text_loss": loss.mean, "unigram": base, "accuracy": acc.mean, "chance": chance,
                     "own_loss": own.mean, "ok": loss.mean < base - 0.5 and acc.mean > chance + 0.1}
    return out


__all__ = ["CONTRADICTED", "INCONCLUSIVE", "NOT_MEASURED", "SUPPORTED", "VERDICTS", "Comparison", "Finding", "Stat",
           "all_findings", "compare", "learned", "rows_of", "stat", "verdict_of"]
