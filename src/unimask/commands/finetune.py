"""``unimask finetune``: adapt a pretrained model (unimask or Hugging Face) to labelled pairs or chats.

    unimask finetune --model runs/tiny-causal --data pairs.jsonl                       # input/output fields
    unimask finetune --model runs/tiny-causal --data chats.jsonl --lora --lora-r 8     # LoRA through peft
    unimask finetune --model path/to/hf-llama --data qa.parquet --input-field question --output-field answer
    unimask finetune --model runs/tiny-causal --data pairs.jsonl --arch encoder_decoder   # T5Gemma-style

Every family trains on the same records: the input is the source and the output the target (a causal
decoder's loss on the output only unless --loss-on-all-tokens; a chat's loss on every assistant turn).
The result is an ordinary run directory; with --lora each checkpoint also holds adapter/ in peft's format,
and its model/ has the adapter merged in.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from unimask.commands._args import seed

    p = sub.add_parser("finetune", help="fine-tune any family on labelled pairs or chats (full or LoRA)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a unimask model/run/checkpoint directory, or a Hugging Face one")
    p.add_argument("--data", required=True, help="labelled records: a JSONL or Parquet file, or a folder of them")
    p.add_argument("--input-field", default="input", help="record field of the input (default: input)")
    p.add_argument("--output-field", default="output", help="record field of the output (default: output)")
    p.add_argument("--messages-field", default="messages", help="record field of a chat (default: messages)")
    p.add_argument("--chat-template", choices=["auto", "plain", "hf"], default="auto",
                   help="auto: the model's Hugging Face chat template when it has one, else the plain one")
    p.add_argument("--arch", choices=["causal", "prefix", "encoder_decoder"],
                   help="adapt to another family first (decoder -> encoder-decoder: T5Gemma-style; default: keep the "
                        "model's family)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps (default: 200)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 1e-3; LoRA: 5e-3)")
    p.add_argument("--batch-size", type=int, default=16, help="rows per step (default: 16)")
    p.add_argument("--seq-len", type=int, default=256, help="row length; longer examples are left out (default: 256)")
    p.add_argument("--loss-on-all-tokens", action="store_true", help="causal decoder: loss on the input too")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters only (peft)")
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default: 8)")
    p.add_argument("--lora-alpha", type=float, default=16.0, help="LoRA alpha (default: 16)")
    p.add_argument("--lora-dropout", type=float, default=0.0, help="LoRA dropout (default: 0)")
    p.add_argument("--lora-targets", default="q_proj,k_proj,v_proj,o_proj",
                   help="comma-separated module names (default: q_proj,k_proj,v_proj,o_proj)")
    p.add_argument("--skip-bad", action="store_true", help="skip records that are not usable (and count them)")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default: 0)")
    p.add_argument("--out-dir", default="runs/finetune", help="run directory (default: runs/finetune)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in --out-dir")
    p.add_argument("--resume", action="store_true", help="continue the latest checkpoint in --out-dir")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any run-config field, as in unimask train")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.set_defaults(func=run)


def base_model_dir(model: str) -> Path:
    """A unimask model directory for ``model``: itself, or a Hugging Face checkpoint converted once
    (through ``unimask.interop``) into the cache, keyed by the checkpoint's files."""
    from unimask.checkpoint import find_model_dir
    from unimask.errors import CheckpointError

    path = Path(model)
    if not path.exists():
        raise CheckpointError(f"--model {model}: no such directory")
    found = find_model_dir(path)
    if (found / "config.json").is_file():
        import json

        try:
            hf = "model_type" in json.loads((found / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            hf = False
        if not hf:
            return found
    from unimask.data.cache import cache_dir
    from unimask.data.corpus import corpus_fingerprint
    from unimask.interop import from_hf

    target = cache_dir() / "converted" / corpus_fingerprint(path)
    if not (target / "config.json").is_file():
        staging = target.with_name(target.name + ".tmp")
        from_hf(path).save(staging)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (path / name).is_file():
                (staging / name).write_bytes((path / name).read_bytes())
        staging.replace(target)
    return target


def run_config(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    objective = {"name": "supervised", "input_field": args.input_field, "output_field": args.output_field,
                 "messages_field": args.messages_field, "chat_template": args.chat_template}
    config: dict[str, Any] = {
        "init_from": str(base), "objective": objective,
        "data": {"path": args.data, "seq_len": args.seq_len, "batch_size": args.batch_size,
                 "loss_on_targets_only": not args.loss_on_all_tokens, "skip_bad": args.skip_bad,
                 "validation_fraction": 0.1},
        "optimizer": {"lr": args.lr, "warmup_steps": min(20, args.steps // 10), "schedule": "cosine",
                      "weight_decay": 0.0 if args.lora else 0.1},
        "steps": args.steps, "eval_every": max(1, args.steps // 4), "save_every": 0, "seed": args.seed,
        "out_dir": args.out_dir, "overwrite": args.overwrite, "progress": not args.no_progress,
    }
    if args.arch:
        config["model"] = {"arch": args.arch}
    if args.lora:
        config["lora"] = {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout,
                          "target_modules": [t.strip() for t in args.lora_targets.split(",") if t.strip()]}
    return config


def run(args: argparse.Namespace) -> int:
    from unimask.train import TrainConfig, train
    from unimask.train.config import apply_overrides

    base = base_model_dir(args.model)
    config = TrainConfig.from_dict(apply_overrides(run_config(args, base), args.overrides))
    result = train(config, resume=True if args.resume else None)
    parts = [f"step {result.step}"]
    if result.eval_loss is not None:
        parts.append(f"held-out loss {result.eval_loss:.4f}")
    print(", ".join(parts))
    if result.checkpoint is not None:
        print(f"model: {result.checkpoint / 'model'}")
        if args.lora:
            import json

            from unimask.checkpoint import read_tensors

            total = sum(t.numel() for t in read_tensors(result.checkpoint / "model").values())
            config = json.loads((result.checkpoint / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
            from safetensors import safe_open

            with safe_open(str(result.checkpoint / "adapter" / "adapter_model.safetensors"), framework="pt") as f:
                trainable = sum(f.get_slice(k).get_shape()[0] * f.get_slice(k).get_shape()[1] for k in f.keys())  # noqa: SIM118
            print(f"adapter (peft format, r={config['r']}): {result.checkpoint / 'adapter'}; trainable parameters "
                  f"{trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")
    return 0
