"""``unimask emergence``: emergent abilities from the metric, analytically and on a trained sweep."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from unimask.errors import UnimaskError

MAX_POINTS = 10_000  # model sizes on the analytic grid (each is a CSV row and a plotted point)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"'{text}': give positive integers, e.g. 1,5,10")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    from unimask.commands._args import seed

    p = sub.add_parser("emergence", help="emergent abilities: analytic metric effects and a trained size sweep")
    modes = p.add_subparsers(dest="mode", metavar="MODE")
    a = modes.add_parser("analytic", help="exact match, edit distance and composite tasks from per-token accuracy")
    a.add_argument("--lengths", type=_ints, default=(1, 5, 10, 20), help="answer lengths L (comma-separated)")
    a.add_argument("--n-c", type=float, default=None, help="N_c of CE(N) = (N_c/N)^alpha (default 1e6)")
    a.add_argument("--alpha", type=float, default=None, help="alpha of CE(N) = (N_c/N)^alpha (default 0.3)")
    a.add_argument("--n-min", type=float, default=1e7, help="smallest model size")
    a.add_argument("--n-max", type=float, default=1e12, help="largest model size")
    a.add_argument("--points", type=int, default=61, help="model sizes on a log grid")
    a.add_argument("--k", type=int, default=5, help="subtasks of the composite task")
    a.add_argument("--p-before", type=float, default=0.4, help="subtask accuracy before")
    a.add_argument("--p-after", type=float, default=0.6, help="subtask accuracy after")
    a.add_argument("--out", default="out/emergence", help="directory for analytic.csv/.json/.png ('' for none)")
    a.set_defaults(func=run_analytic)
    s = modes.add_parser("sweep", help="train a sweep of model sizes on multi-digit addition and plot the metrics")
    s.add_argument("--widths", type=_ints, default=(16, 32, 64, 128), help="d_model of each model")
    s.add_argument("--layers", type=int, default=2, help="layers of every model")
    s.add_argument("--arch", choices=["causal", "prefix", "encoder_decoder"], default="causal", help="model family")
    s.add_argument("--digits", type=int, default=3, help="digits per operand")
    s.add_argument("--steps", type=int, default=None, help="training steps per model (default 1000)")
    s.add_argument("--batch-size", type=int, default=64, help="examples per training step")
    s.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    s.add_argument("--train-examples", type=int, default=20000, help="training problems generated")
    s.add_argument("--test-examples", type=int, default=256, help="held-out problems scored")
    s.add_argument("--tokenizer", default="char", help="'char' (one token per character), 'default' or a path")
    s.add_argument("--threads", type=int, default=1, help="torch threads while training")
    s.add_argument("--seed", type=seed, default=0, help="seed of the data and the models")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--save-models", action="store_true", help="also save each model to OUT/width-<d>")
    s.add_argument("--out", default="out/emergence", help="directory for sweep.csv/.json/.png ('' for none)")
    s.set_defaults(func=run_sweep)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def run_analytic(args: argparse.Namespace) -> int:
    import numpy as np

    from unimask.analysis import emergence as em

    if not 0 < args.n_min < args.n_max < math.inf or not 2 <= args.points <= MAX_POINTS:
        raise UnimaskError(f"need 0 < --n-min < --n-max (finite) and 2 <= --points <= {MAX_POINTS}")
    if not (0 <= args.p_before <= 1 and 0 <= args.p_after <= 1) or not 1 <= args.k <= 100:
        raise UnimaskError("--p-before/--p-after must be in [0, 1] and --k in 1..100")
    n_c = em.DEFAULT_N_C if args.n_c is None else args.n_c
    alpha = em.DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not (0 < n_c < math.inf and 0 < alpha < math.inf):
        raise UnimaskError(f"--n-c and --alpha must be positive and finite (CE(N) = (N_c/N)^alpha), got "
                           f"{n_c:g} and {alpha:g}")
    sizes = np.logspace(np.log10(args.n_min), np.log10(args.n_max), args.points)
    rows = em.analytic_rows(sizes, args.lengths, n_c, alpha)
    example = em.composite_example(args.p_before, args.p_after, args.k)
    print(f"per-token accuracy p(N) = exp(-(N_c/N)^alpha), N_c = {n_c:g}, alpha = {alpha:g}")
    header = f"{'N':>10}{'p':>8}" + "".join(f"{'EM L=' + str(L):>11}" for L in args.lengths) + \
        "".join(f"{'ED L=' + str(L):>10}" for L in args.lengths)
    print(header)
    for row in rows[:: max(1, len(rows) // 10)]:
        print(f"{row['n_params']:>10.2e}{row['per_token_accuracy']:>8.3f}"
              + "".join(f"{row[f'exact_match_L{L}']:>11.2e}" for L in args.lengths)
              + "".join(f"{row[f'edit_distance_L{L}']:>10.2f}" for L in args.lengths))
    print(f"composite task of {args.k} subtasks: {args.p_before:.0%} -> {args.p_after:.0%} each gives "
          f"{example['overall_before']:.2%} -> {example['overall_after']:.2%} overall "
          f"(x{example['overall_gain']:.1f} vs x{example['subtask_gain']:.2f})")
    if args.out:
        out = Path(args.out)
        em.write_rows_csv(rows, out / "analytic.csv")
        (out / "analytic.json").write_text(json.dumps({"n_c": n_c, "alpha": alpha, "lengths": list(args.lengths),
                                                       "composite": example, "rows": rows}, indent=2) + "\n",
                                           encoding="utf-8")
        png = em.plot_analytic(rows, args.lengths, example, out / "analytic.png")
        print(f"wrote {out / 'analytic.csv'}, {out / 'analytic.json'} and {png}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from unimask.analysis.emergence_report import plot_sweep, sweep_text, write_sweep
    from unimask.analysis.emergence_sweep import SweepConfig
    from unimask.analysis.emergence_sweep import run_sweep as train_sweep

    cfg = SweepConfig(widths=args.widths, n_layers=args.layers, arch=args.arch, digits=args.digits,
                      steps=args.steps if args.steps is not None else SweepConfig.steps,
                      batch_size=args.batch_size, lr=args.lr, train_examples=args.train_examples,
                      test_examples=args.test_examples, seed=args.seed, tokenizer=args.tokenizer,
                      threads=args.threads)
    if cfg.threads <= 0:
        raise UnimaskError("--threads must be positive")
    if args.save_models and not args.out:
        raise UnimaskError("--save-models needs --out")
    results = train_sweep(cfg, progress=not args.no_progress, save_dir=Path(args.out) if args.save_models else None)
    print(sweep_text(results))
    for r in results[-1:]:
        for ex in r.examples[:3]:
            print(f"  width {r.width}: {ex['prompt']}{ex['answer']}  predicted {ex['prediction']!r}")
    if args.out:
        out = Path(args.out)
        paths = write_sweep(results, cfg, out)
        png = plot_sweep(results, out / "sweep.png",
                         title=f"{args.digits}-digit addition, {args.arch}, {cfg.steps} steps per model")
        print(f"wrote {', '.join(str(p) for p in paths)} and {png}")
    return 0
