"""``unimask params``: parameters, FLOPs, memory, time, cost, energy and CO2 of an architecture."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from unimask.config import ModelConfig

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
_SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def parse_amount(text: str) -> float:
    """'300B' -> 3e11, '1.4T' -> 1.4e12, '2e9' -> 2e9."""
    t = text.strip().upper().replace(",", "").replace("_", "")
    scale = 1.0
    if t and t[-1] in _SUFFIX:
        t, scale = t[:-1], _SUFFIX[t[-1]]
    try:
        value = float(t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an amount; write e.g. 300B, 1.4T or 2e9") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' must be a finite amount; write e.g. 300B, 1.4T or 2e9")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be positive")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from unimask.analysis.compute import ACCELERATORS

    p = sub.add_parser("params", help="parameters, FLOPs, memory, time, cost, energy and CO2 of an architecture",
                       description="Counts from the architecture alone (no stored counts). MODEL is a preset "
                                   "name, a unimask or Hugging Face config.json, or a checkpoint, run or Hugging "
                                   "Face model directory; 'presets' compares every preset with its published "
                                   "total.")
    p.add_argument("model", help="preset name, config.json (unimask or Hugging Face), checkpoint/run/HF "
                                 "directory, or 'presets'")
    p.add_argument("--tokens", type=parse_amount, default=None,
                   help="training tokens, e.g. 300B (default: 20 per parameter, Hoffmann et al. 2022)")
    p.add_argument("--seq-len", type=int, default=None, help="sequence (encoder: source) length (default: "
                   "min(max_seq_len, 2048))")
    p.add_argument("--target-len", type=int, default=None, help="encoder-decoder target length (default seq/4)")
    p.add_argument("--batch-size", type=int, default=1, help="micro-batch per accelerator, for activations")
    p.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="bf16", help="weight/activation dtype")
    p.add_argument("--accelerator", choices=sorted(ACCELERATORS), default="a100",
                   help="accelerator model: its peak FLOP/s, power and price")
    p.add_argument("--count", type=int, default=8, help="number of accelerators")
    p.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation (0-1)")
    p.add_argument("--peak-flops", type=parse_amount, default=None,
                   help="override peak FLOP/s per accelerator (default: the --accelerator's)")
    p.add_argument("--power-w", type=float, default=None,
                   help="override power per accelerator in W (default: the --accelerator's)")
    p.add_argument("--price-per-hour", type=float, default=None,
                   help="USD per accelerator-hour (default: the --accelerator's cloud price)")
    p.add_argument("--pue", type=float, default=1.1, help="datacenter power usage effectiveness")
    p.add_argument("--grid", type=float, default=429.0, help="grid intensity, gCO2e per kWh")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--out", default="out/params", help="directory for <name>.json and <name>.png ('' for none)")
    p.set_defaults(func=run)


def _compare_presets(args: argparse.Namespace) -> int:
    from unimask.analysis.cost_report import plot_presets
    from unimask.analysis.params import count_parameters, format_count
    from unimask.analysis.published import NOMINAL, PUBLISHED
    from unimask.config import preset

    rows = []
    for name, pub in PUBLISHED.items():
        n = count_parameters(preset(name)).total
        rows.append({"preset": name, "count": n, "published": pub.total, "rel_error": (n - pub.total) / pub.total,
                     "tolerance": pub.tolerance, "source": pub.source,
                     "nominal_name": NOMINAL.get(name)})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'preset':<15}{'counted':>18}{'published':>12}{'gap':>9}  source")
        for r in rows:
            print(f"{r['preset']:<15}{r['count']:>18,}{format_count(r['published']):>12}{r['rel_error']:>+9.3%}  "
                  f"{r['source']}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "presets.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        png = plot_presets(rows, out / "presets.png")
        if not args.json:
            print(f"wrote {out / 'presets.json'} and {png}")
    return 0


def _resolve(spec: str) -> tuple[ModelConfig, str]:
    """(config, display name) of a preset, a unimask or Hugging Face config.json, or a checkpoint or run
    directory (its latest ``checkpoint-N/model``)."""
    from unimask.checkpoint import find_model_dir
    from unimask.config import PRESETS, resolve_model_config
    from unimask.errors import ConfigError

    path = Path(spec)
    if spec in PRESETS or not path.exists():
        return resolve_model_config(spec), spec
    file = find_model_dir(path) / "config.json" if path.is_dir() else path
    where = path.resolve() if path.is_dir() else file.resolve().parent if file.name == "config.json" else None
    name = file.stem if where is None else where.parent.name if where.name == "model" else where.name
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if isinstance(data, dict) and "model_type" in data and "arch" not in data:  # a Hugging Face config.json
        from unimask.interop import config_from_hf_config

        return config_from_hf_config(data, str(file)), name
    if not file.is_file():
        raise ConfigError(f"{spec}: no config.json there; give a preset, a config.json or a checkpoint directory")
    return resolve_model_config(file), name


def _check_out(out: Path) -> None:
    """--out is a directory for <name>.json and <name>.png: refuse a file there (never overwritten)."""
    from unimask.data.cache import check_writable
    from unimask.errors import UnimaskError

    if out.exists() and not out.is_dir():
        raise UnimaskError(f"--out {out}: an existing file, not a directory (it is left alone); params writes "
                           "<name>.json and <name>.png into a directory: choose another --out, or '' for none")
    check_writable(out, "--out directory")


def run(args: argparse.Namespace) -> int:
    from unimask.analysis.compute import Setup, estimate
    from unimask.analysis.cost_report import assumptions, plot_estimate, render_table

    if args.out:
        _check_out(Path(args.out))
    if args.model == "presets":
        return _compare_presets(args)
    config, name = _resolve(args.model)
    seq_len = args.seq_len if args.seq_len is not None else min(config.max_seq_len, 2048)
    setup = Setup(tokens=args.tokens, seq_len=seq_len, target_len=args.target_len, batch_size=args.batch_size,
                  bytes_per_param=DTYPE_BYTES[args.dtype], accelerator=args.accelerator, count=args.count,
                  mfu=args.mfu, peak_flops=args.peak_flops, power_w=args.power_w,
                  price_per_hour=args.price_per_hour, pue=args.pue, grid_gco2_per_kwh=args.grid)
    est = estimate(config, setup, name=name)
    if args.json:
        print(json.dumps({**est.as_dict(), "assumptions": assumptions(est)}, indent=2))
    else:
        print(render_table(est, config))
    if args.out:
        out = Path(args.out)
        stem = name.replace("/", "_").removesuffix(".json")
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.json").write_text(json.dumps(est.as_dict(), indent=2) + "\n", encoding="utf-8")
        png = plot_estimate(est, out / f"{stem}.png")
        if not args.json:
            print(f"wrote {out / (stem + '.json')} and {png}")
    return 0
