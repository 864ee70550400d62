"""``unimask info MODEL``: what a checkpoint or preset is (family, shapes, parameters) after loading it."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a checkpoint directory or a preset (loads checkpoints fully)")
    p.add_argument("model", help="checkpoint directory or preset name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unimask.checkpoint import load_model
    from unimask.config import resolve_model_config

    if Path(args.model).is_dir():
        model = load_model(args.model)
        config = model.config
        count = f"{model.num_parameters():,} (loaded)"
    else:
        config = resolve_model_config(args.model)
        count = "(not built; see `unimask params`)"
    print(f"arch: {config.arch}  layers: {config.encoder_layers}+{config.n_layers}  d_model: {config.d_model}  "
          f"heads: {config.n_heads} (kv {config.kv_heads}, head_dim {config.head_dim_})  d_ff: {config.d_ff}")
    print(f"activation: {config.activation}  norm: {config.norm} ({config.norm_position})  "
          f"positions: {config.position}  vocab: {config.vocab_size}  tied: {config.tie_embeddings}")
    print(f"parameters: {count}")
    return 0
