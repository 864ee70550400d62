"""``unimask demo``: the main job on the built-in default: the cpu comparison study, then its report.

One progress bar covers the whole study (with its ETA); at the end a summary of the verdicts and the
path of the page. The same as `unimask compare --study cpu` followed by `unimask report`.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from unimask.commands.compare import add_study_arguments

    p = sub.add_parser("demo", help="the main job: the cpu study of the three families and its report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_arguments(p, "cpu, gpu, smoke")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unimask.commands.compare import run_from_args, summary
    from unimask.experiments.report import build_report
    from unimask.experiments.runner import load_results

    _, path = run_from_args(args)
    results = load_results(path)
    report = build_report(results, path.parent / "report", overwrite=True)
    print(summary(results, report.findings))
    print(f"\nreport: {report.html.resolve()}\n        {report.markdown['en']} / {report.markdown['zh']}")
    return 0
