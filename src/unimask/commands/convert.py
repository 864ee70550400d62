"""``unimask convert``: Hugging Face checkpoints to unimask checkpoints and back.

``--from-hf DIR --out DIR`` reads a transformers model directory (config.json + safetensors, sharded or
not) and writes a unimask checkpoint; ``--to-hf DIR --out DIR`` writes a unimask checkpoint as a
directory that transformers' ``from_pretrained`` loads. Tokenizer and special-token files travel along.
The output directory must be new or empty and appears only when the conversion succeeded.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from unimask.errors import UnimaskError

DTYPES = ("float32", "bfloat16", "float16", "auto")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert Hugging Face checkpoints (LLaMA, Mistral, Qwen2, GPT-2, T5, BART) "
                                       "to unimask and back")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-hf", metavar="DIR",
                     help="a Hugging Face model directory to import (this or --to-hf is required)")
    src.add_argument("--to-hf", metavar="DIR",
                     help="a unimask checkpoint directory to export (this or --from-hf is required)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must be new or empty)")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="import: dtype of the unimask weights ('auto' keeps the checkpoint's; default float32)")
    p.add_argument("--model-type", default=None,
                   help="export: Hugging Face model_type to write (default: the original one, else the first "
                        "family that expresses the model exactly)")
    p.add_argument("--as-causal", action="store_true",
                   help="export: allow a prefix decoder, which transformers will run as a causal decoder")
    p.add_argument("--max-shard-size", default="5GB",
                   help="export: largest safetensors file before sharding, e.g. 500MB, 5GB (default 5GB)")
    p.set_defaults(func=run)


def parse_size(text: str) -> int:
    """'5GB', '500MB', '200KB' or a byte count -> bytes (powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise UnimaskError(f"--max-shard-size: cannot read '{text}'; write e.g. 500MB or 5GB")
    unit = (m.group(2) or "B").upper().replace("I", "")
    value = int(float(m.group(1)) * {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}[unit])
    if value <= 0:
        raise UnimaskError("--max-shard-size must be positive")
    return value


def run(args: argparse.Namespace) -> int:
    if args.from_hf:
        return _from_hf(Path(args.from_hf), Path(args.out), args.dtype)
    return _to_hf(Path(args.to_hf), Path(args.out), args.model_type, args.as_causal, parse_size(args.max_shard_size))


def _from_hf(src: Path, out: Path, dtype_name: str) -> int:
    import shutil

    import torch

    from unimask.interop import from_hf
    from unimask.interop.common import copy_side_files, staged_directory

    dtype = dtype_name if dtype_name == "auto" else getattr(torch, dtype_name)
    with staged_directory(out) as tmp:
        model = from_hf(src, dtype=dtype)
        model.save(tmp)
        shutil.copyfile(src / "config.json", tmp / "hf_config.json")  # provenance; --to-hf prefers its model_type
        copied = copy_side_files(src, tmp)
    c = model.config
    print(f"wrote {out}: {c.arch} model, {model.num_parameters():,} parameters "
          f"({c.n_layers} layers, d_model {c.d_model})" + (f"; copied {', '.join(copied)}" if copied else ""))
    return 0


def _to_hf(src: Path, out: Path, model_type: str | None, as_causal: bool, max_shard_bytes: int) -> int:
    from unimask.checkpoint import find_model_dir, load_model
    from unimask.errors import ConfigError
    from unimask.interop import export_hf, to_hf
    from unimask.interop.common import refuse_hf_dir

    src = find_model_dir(src)  # a training checkpoint or run directory: its model/ holds model and tokenizer
    refuse_hf_dir(src)
    model = load_model(src)
    if model_type is None and (src / "hf_config.json").is_file():  # written by --from-hf
        try:
            original = json.loads((src / "hf_config.json").read_text(encoding="utf-8")).get("model_type")
            export_hf(model, model_type=original, as_causal=as_causal)  # still expressible (Mistral stays Mistral)?
            model_type = original
        except (json.JSONDecodeError, AttributeError, ConfigError):
            pass
    to_hf(model, out, model_type=model_type, tokenizer_dir=src, as_causal=as_causal, max_shard_bytes=max_shard_bytes)
    written = json.loads((out / "config.json").read_text(encoding="utf-8"))["model_type"]
    print(f"wrote {out} as a Hugging Face '{written}' model")
    return 0
