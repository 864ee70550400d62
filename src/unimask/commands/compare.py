"""``unimask compare``: train the three families side by side at equal compute and score them.

    unimask compare                          # the cpu study (minutes on 2 CPU cores) into out/compare/cpu
    unimask compare --study gpu --device cuda
    unimask compare --study my-study.yaml --seeds 3 --set budget_flops=2e12
    unimask compare --study smoke            # every stage in seconds

A study started again in the same --out reuses the runs that finished. Then `unimask report` writes the
page that answers the notes' questions from results.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from unimask.experiments.study import BUILTIN_STUDIES

    p = sub.add_parser("compare", help="train the three families side by side at equal compute (results.json)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_arguments(p, ", ".join(f"{k}: {v['description']}" for k, v in BUILTIN_STUDIES.items()))
    p.set_defaults(func=run)


def add_study_arguments(p: argparse.ArgumentParser, studies: str) -> None:
    p.add_argument("--study", default="cpu", metavar="NAME|YAML", help=f"a built-in study ({studies}) or a YAML "
                   "file (default: cpu)")
    p.add_argument("--seeds", type=int, help="seeds per row (default: the study's, at least 2 in the cpu study)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N "
                   "(default: auto)")
    p.add_argument("--workers", type=int, help="parallel training processes on a CPU (default: one per core)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a study field, e.g. --set budget_flops=2e12 --set rows=[causal,prefix]")
    p.add_argument("--out", help="folder for the runs and results.json (default: out/compare/<study>)")
    p.add_argument("--overwrite", action="store_true", help="replace another study's results in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def study_from_args(args: argparse.Namespace) -> Any:
    from unimask.errors import ConfigError
    from unimask.experiments.study import load_study
    from unimask.train.config import parse_value

    overrides: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set budget_flops=2e12")
        overrides[key.strip()] = parse_value(value)
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.workers is not None:
        overrides["workers"] = args.workers
    return load_study(args.study, overrides)


def run_from_args(args: argparse.Namespace) -> tuple[Any, Path]:
    """Run the study the arguments describe; returns (spec, results.json path)."""
    from unimask.experiments.runner import run_study

    spec = study_from_args(args)
    out = Path(args.out) if args.out else Path("out") / "compare" / spec.name
    path = run_study(spec, out, device=args.device, overwrite=args.overwrite, progress=not args.no_progress,
                     echo=print)
    return spec, path


def summary(results: dict[str, Any], findings: list[Any]) -> str:
    """The terminal summary: did every row learn, then one line per claim with its verdict."""
    from unimask.experiments.findings import learned
    from unimask.experiments.report.render import claim_values
    from unimask.experiments.report.text import CLAIMS, VERDICT, t

    lines = ["", "Did every model learn? (held-out loss vs unigram baseline; in-distribution accuracy vs chance)"]
    for name, v in learned(results).items():
        mark = "ok " if v["ok"] else "NO "
        lines.append(f"  {mark} {name:<22} text loss {v['text_loss']:.3f} (unigram {v['unigram']:.3f})  "
                     f"accuracy {100 * v['accuracy']:.1f}% (chance {100 * v['chance']:.0f}%)  "
                     f"own objective {v['own_loss']:.3f}")
    lines += ["", "Verdicts on the notes' claims:"]
    cv = claim_values(results)
    for f in findings:
        claim = t(CLAIMS, f.id, "en", **cv)
        claim = claim if len(claim) <= 78 else claim[:75] + "..."
        lines.append(f"  Q{f.question} {VERDICT[f.verdict]['en']:<27} {claim}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from unimask.experiments.findings import all_findings
    from unimask.experiments.report.figures import draw_all
    from unimask.experiments.runner import load_results

    _, path = run_from_args(args)
    results = load_results(path)
    draw_all(results, path.parent / "figures")
    print(summary(results, all_findings(results)))
    print(f"\nwrote {path} (figures in {path.parent / 'figures'}); next: unimask report {path}")
    return 0
