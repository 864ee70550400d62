"""``unimask eval``: a trained model on the synthetic tasks' held-out splits, zero- and few-shot.

Two suites, each task scored by likelihood ranking of its choices (accuracy, with chance beside it) and by
greedy exact match, in the reading format of the model's training objective (read from the run's
``config.yaml`` when there is one; ``--objective`` overrides), through the same scoring code as the
comparison study and the lm-evaluation-harness adapter:

* ``study`` (default): the study's task suite (max, min, mode, lookup, sort, maxmin, median) in three
  settings: in distribution (the trained format), zero-shot (a phrasing never trained), few-shot (``--shots``
  solved examples before the query, in the never-trained phrasing);
* ``synthetic``: addition, copy, reverse, sort, lookup, brackets (``unimask.data.synthetic``), in
  distribution and few-shot; wrong choices are other instances' answers of the same task.

Prints one table and writes ``<out>/<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from unimask.errors import UnimaskError

SUITES = ("study", "synthetic")
N_CHOICES = 4


def register(sub: argparse._SubParsersAction) -> None:
    from unimask.commands._args import seed

    p = sub.add_parser("eval", help="score a model on the synthetic tasks' held-out splits (zero-/few-shot)",
                       description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--model", required=True, help="a run directory, a checkpoint or a model directory")
    p.add_argument("--task", default="all", help="a task name, several separated by commas, or all (default)")
    p.add_argument("--suite", choices=SUITES, default="study", help="which task suite (default: study)")
    p.add_argument("--instances", type=int, default=100, help="held-out instances per task (default: 100)")
    p.add_argument("--shots", type=int, default=3, help="solved examples in the few-shot setting (default: 3)")
    p.add_argument("--objective", default=None,
                   help="reading format: causal_lm, prefix_lm, span_corruption, ul2, bart_infilling, supervised "
                        "(default: the run's objective, else the family's usual one)")
    p.add_argument("--seed", type=seed, default=1, help="seed of the instances (default: 1, as the study)")
    p.add_argument("--out", default="out/eval", help="folder of the JSON results (default: out/eval)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run_objective(model_dir: Path) -> str | None:
    """The objective of the run that wrote ``model_dir``, from the nearest ``config.yaml`` above it."""
    from unimask.evaluation.formats import objective_name
    from unimask.train.config import load_yaml

    for folder in (model_dir, *model_dir.parents[:3]):
        cfg = folder / "config.yaml"
        if cfg.is_file():
            try:
                name = objective_name(load_yaml(cfg).get("objective", ""))
            except UnimaskError:
                return None
            return name or None
    return None


def _study_items(task: str, n: int, shots: int, seed: int, tok: Any) -> dict[str, list[dict[str, Any]]]:
    from unimask.data.task_suite import few_shot_prefix, instances

    out = {}
    for setting, novel, k in (("in_distribution", False, 0), ("zero_shot", True, 0), ("few_shot", True, shots)):
        context = few_shot_prefix(task, k, seed=seed, novel=novel) if k else ""
        out[setting] = [{"source": tok.encode(context + i.prompt), "choices": [tok.encode(c) for c in i.choices],
                         "label": i.label, "answer": i.answer.strip()}
                        for i in instances(task, n, seed=seed, novel=novel)]
    return out


def _synthetic_items(task: str, n: int, shots: int, seed: int, tok: Any) -> dict[str, list[dict[str, Any]]]:
    from unimask.data.synthetic import make_examples

    test = make_examples(task, n, seed=seed, split="test")
    answers = sorted({a for _, a in test} | {a for _, a in make_examples(task, 4 * N_CHOICES, seed=seed + 1)})
    rng = np.random.default_rng([seed, len(task)])
    context = "".join(f"{p}{a}\n" for p, a in make_examples(task, shots, seed=seed + 7919)) if shots else ""
    out: dict[str, list[dict[str, Any]]] = {"in_distribution": [], "few_shot": []}
    for prompt, answer in test:
        others = [a for a in answers if a != answer]
        k = min(N_CHOICES - 1, len(others))  # brackets: yes or no, two choices
        if k < 1:
            raise UnimaskError(f"task '{task}' has only one distinct answer; nothing to choose between")
        wrong = [others[int(i)] for i in rng.choice(len(others), k, replace=False)]
        options = [answer, *wrong]
        order = rng.permutation(len(options))
        choices = [tok.encode(options[int(i)]) for i in order]
        label = int(np.argmax(order == 0))
        for setting, ctx in (("in_distribution", ""), ("few_shot", context)):
            out[setting].append({"source": tok.encode(ctx + prompt), "choices": choices, "label": label,
                                 "answer": answer})
    return out


def _task_names(suite: str, given: str) -> list[str]:
    from unimask.data import synthetic, task_suite

    known = list(task_suite.TASKS) if suite == "study" else list(synthetic.TASKS)
    if given == "all":
        return known
    names = [t.strip() for t in given.split(",") if t.strip()]
    for name in names:
        if name not in known:
            raise UnimaskError(f"--task: unknown {suite} task '{name}'; the {suite} suite has: "
                               f"{', '.join(known)}, or all (--suite chooses the suite)")
    return names


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import unimask
    from unimask.evaluation.formats import reading_format
    from unimask.experiments.evaluate import task_scores

    if args.instances < 1:
        raise UnimaskError(f"--instances must be at least 1, got {args.instances}")
    if args.shots < 0:
        raise UnimaskError(f"--shots must be 0 or more, got {args.shots}")
    names = _task_names(args.suite, args.task)
    m = unimask.load(args.model)
    from unimask.checkpoint import find_model_dir

    objective = args.objective or run_objective(find_model_dir(args.model)) or None
    m.objective = objective or m.objective
    fmt = reading_format(m.objective, m.config.arch, m.tokenizer, start_id=m.config.start_token_id)
    make = _study_items if args.suite == "study" else _synthetic_items
    rows: list[dict[str, Any]] = []
    bar = tqdm(names, desc="tasks", unit="task", disable=args.no_progress)
    for task in bar:
        bar.set_postfix_str(task)
        for setting, items in make(task, args.instances, args.shots, args.seed, m.tokenizer).items():
            scores = task_scores(m.model, fmt, m.tokenizer, items)
            rows.append({"task": task, "setting": setting, "n": len(items), "accuracy": scores["accuracy"],
                         "exact_match": scores["exact_match"],
                         "chance": sum(1.0 / len(it["choices"]) for it in items) / len(items),
                         "token_accuracy": scores["token_accuracy"]})
    bar.close()
    _print_table(rows, m, fmt.objective)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.model).resolve().name
    path = out / f"{name}-{args.suite}.json"
    result = {"model": str(args.model), "arch": m.config.arch, "objective": fmt.objective, "suite": args.suite,
              "instances": args.instances, "shots": args.shots, "seed": args.seed, "results": rows}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"results: {path}")
    return 0


def _print_table(rows: list[dict[str, Any]], m: Any, objective: str) -> None:
    def pct(x: float) -> str:
        return "  n/a" if math.isnan(x) else f"{100 * x:5.1f}%"

    print(f"{m!r}, read as {objective}")
    print(f"{'task':<10} {'setting':<16} {'n':>4}  {'accuracy':>8}  {'chance':>6}  {'exact':>6}")
    for r in rows:
        print(f"{r['task']:<10} {r['setting']:<16} {r['n']:>4}  {pct(r['accuracy']):>8}  {pct(r['chance']):>6}  "
              f"{pct(r['exact_match']):>6}")
