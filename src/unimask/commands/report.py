"""``unimask report``: the page that answers each question of the notes from a study's results.json.

    unimask report                                  # out/compare/cpu/results.json -> out/compare/cpu/report/
    unimask report out/compare/gpu/results.json --out report-gpu --overwrite

Writes report.html (one self-contained page, figures embedded, English and Chinese), report.md and
report.zh.md with figures/ beside them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_RESULTS = Path("out") / "compare" / "cpu" / "results.json"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="HTML + Markdown report (English and Chinese) from a study's results.json",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", default=str(DEFAULT_RESULTS),
                   help=f"results.json or its folder (default: {DEFAULT_RESULTS})")
    p.add_argument("--out", help="report folder (default: report/ beside results.json)")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unimask.experiments.report import build_report
    from unimask.experiments.runner import load_results

    results_path = Path(args.results)
    results = load_results(results_path)
    base = results_path if results_path.is_dir() else results_path.parent
    out = Path(args.out) if args.out else base / "report"
    report = build_report(results, out, overwrite=args.overwrite)
    print(f"wrote {report.html} and {', '.join(str(p) for p in report.markdown.values())}")
    return 0
