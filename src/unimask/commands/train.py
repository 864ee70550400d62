"""``unimask train``: pretrain or continue training any family with any objective.

    unimask train --config tiny-causal --set steps=200 --set optimizer.lr=3e-3
    unimask train --config run.yaml --resume                # continue the newest checkpoint that verifies
    unimask train --config tiny-causal --set objective=prefix_lm --loss-on-all-tokens   # loss on the source too
    torchrun --nproc_per_node 2 -m unimask train --config run.yaml --parallel fsdp2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def shipped_configs() -> dict[str, Path]:
    """The run configs shipped with unimask (``unimask/configs/*.yaml``), by name."""
    root = Path(__file__).resolve().parent.parent / "configs"
    return {p.stem: p for p in sorted(root.glob("*.yaml"))}


def config_path(name: str) -> Path:
    """The run config ``name`` names: a YAML file, or a shipped config by name. Neither is one line listing the
    shipped configs, with the closest name when there is one (``tiny-casual`` -> ``tiny-causal``)."""
    import difflib

    from unimask.errors import ConfigError

    path = Path(name)
    shipped = shipped_configs()
    if path.is_file() or path.is_dir():
        return path  # a directory is refused by the loader, naming it
    if name in shipped:
        return shipped[name]
    close = difflib.get_close_matches(name, shipped, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"--config {name}: no such run config file and no shipped config of that name; {hint}"
                      f"shipped: {', '.join(shipped)} (or give the path of a YAML file)")


def refuse_used_out_dir(out: Path, overwrite: bool) -> None:
    """A new run never lands in a folder that holds something: one line naming the ways on (``--resume``,
    ``--out-dir``, ``--overwrite``), before anything is written (under torchrun too)."""
    from unimask.errors import ConfigError

    if overwrite or not out.is_dir():
        return  # a file in the way, or an unwritable parent, is the trainer's to refuse
    entries = sorted(p.name for p in out.iterdir())
    if entries:
        raise ConfigError(f"out_dir {out} is not empty ({len(entries)} entries, e.g. '{entries[0]}'); continue it "
                          "with --resume, choose another --out-dir, or pass --overwrite to replace it")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (any family, any objective; resumable; DDP/FSDP2 under torchrun)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True,
                   help=f"run config YAML, or a shipped one: {', '.join(shipped_configs()) or '(none)'}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, dotted keys reach into sections (optimizer.lr=3e-4, data.seq_len=64)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="DIR",
                   help="continue from the newest checkpoint in out_dir that verifies (broken newer ones are "
                        "moved aside), or from DIR (a checkpoint or run dir); a finished run exits 0 (default: "
                        "start a new run)")
    p.add_argument("--out-dir",
                   help="shortcut for --set out_dir=DIR (default: the run config's out_dir, runs/<config>)")
    p.add_argument("--parallel", choices=["none", "ddp", "fsdp2"],
                   help="shortcut for --set parallel=... (default: the run config's, none)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="shortcut for --set precision=...: auto (the run config's default) = bf16 autocast on "
                        "CUDA; on a CPU bf16 only where a probe of this model's step finds it clearly faster")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in out_dir")
    p.add_argument("--loss-on-all-tokens", action="store_true",
                   help="causal decoders: loss on the source tokens too (shortcut for --set "
                        "data.loss_on_targets_only=false)")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unimask.train import TrainConfig, train

    path = config_path(args.config)
    overrides = list(args.overrides)
    if args.out_dir:
        overrides.append(f"out_dir={args.out_dir}")
    if args.parallel:
        overrides.append(f"parallel={args.parallel}")
    if args.precision:
        overrides.append(f"precision={args.precision}")
    if args.overwrite:
        overrides.append("overwrite=true")
    if args.loss_on_all_tokens:
        overrides.append("data.loss_on_targets_only=false")
    if args.no_progress:
        overrides.append("progress=false")
    config = TrainConfig.load(path, overrides)
    if args.resume is None:
        refuse_used_out_dir(Path(config.out_dir), config.overwrite)
    result = train(config, resume=args.resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if result.nothing_to_do:
        print(f"nothing to do: {result.checkpoint} is already at step {result.step} and the run config asks for "
              f"steps: {config.steps}; raise steps (e.g. --set steps={result.step * 2}) to train further")
        return 0
    parts = [f"step {result.step}"]
    if result.train_loss is not None:
        parts.append(f"train loss {result.train_loss:.4f}")
    if result.eval_loss is not None:
        parts.append(f"held-out loss {result.eval_loss:.4f} (perplexity {result.eval_ppl:.2f})")
    print(", ".join(parts))
    if result.precision_note:
        print(f"precision: {result.precision_note}")
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint}")
    print(f"metrics: {result.out_dir / 'metrics.jsonl'}")
    if result.stopped_early:
        print("stopped early; to continue, run the same command with --resume")
        return 130
    return 0
