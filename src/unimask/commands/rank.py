"""``unimask rank``: rank of causal versus bidirectional attention matrices of a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from unimask.errors import UnimaskError

MAX_SEQ_LEN = 1024  # T; the SVDs of B x heads x layers x 2 matrices of T x T dominate the run time


def register(sub: argparse._SubParsersAction) -> None:
    from unimask.commands._args import seed

    p = sub.add_parser("rank", help="numerical/effective rank and log-det of causal vs bidirectional attention",
                       description="Runs the same inputs through the model with a causal and a bidirectional "
                                   "mask (an encoder-decoder: its decoder and encoder) and measures every "
                                   "layer's and head's attention probability matrix.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="checkpoint directory (config.json + model.safetensors; default: a --preset)")
    src.add_argument("--preset", help="preset name, randomly initialised (default: tiny-causal)")
    p.add_argument("--seq-len", type=int, default=32, help="tokens per input sequence (T)")
    p.add_argument("--batch", type=int, default=2, help="number of random input sequences")
    p.add_argument("--text", default=None,
                   help="analyse this text instead of random tokens (needs a tokenizer; default: random tokens)")
    p.add_argument("--seed", type=seed, default=0, help="seed for the random init and the random inputs")
    p.add_argument("--rtol", type=float, default=None,
                   help="relative SVD tolerance for the numerical rank (default: T x float32 eps)")
    p.add_argument("--out", default="out/rank", help="directory for rank.csv, rank_summary.json, rank.png")
    p.set_defaults(func=run)


def _inputs(args: argparse.Namespace, vocab: int) -> torch.Tensor:

    if args.text is not None:
        from unimask.checkpoint import find_model_dir
        from unimask.data.tokenizer import Tokenizer, default_tokenizer

        tok_path = find_model_dir(args.model) / "tokenizer.json" if args.model else None
        tok = Tokenizer.load(tok_path) if tok_path is not None and tok_path.is_file() else default_tokenizer()
        ids = tok.encode(args.text)[: args.seq_len]
        if len(ids) < 2:
            raise UnimaskError("--text gives fewer than 2 tokens; give a longer text")
        if max(ids) >= vocab:
            raise UnimaskError(f"the tokenizer's ids reach {max(ids)} but the model's vocabulary is {vocab}; "
                               "use a checkpoint with its tokenizer.json")
        return torch.tensor([ids])
    gen = torch.Generator().manual_seed(args.seed)
    low = 3 if vocab > 8 else 0  # skip pad/bos/eos when the vocabulary allows
    return torch.randint(low, vocab, (args.batch, args.seq_len), generator=gen)


def run(args: argparse.Namespace) -> int:
    from unimask.analysis.attention_rank import collect_attentions, measure
    from unimask.analysis.rank_plots import plot_rank, summary_text, write_csv, write_summary
    from unimask.checkpoint import load_model
    from unimask.config import preset
    from unimask.models import build_model

    if args.seq_len < 2 or args.batch < 1:
        raise UnimaskError("--seq-len must be >= 2 and --batch >= 1")
    if args.seq_len > MAX_SEQ_LEN:
        raise UnimaskError(f"--seq-len {args.seq_len} is over {MAX_SEQ_LEN}: every matrix gets a full SVD "
                           "(cubic in T); analyse shorter sequences")
    torch.manual_seed(args.seed)
    if args.model:
        from unimask.checkpoint import find_model_dir
        from unimask.interop.common import refuse_hf_dir

        refuse_hf_dir(find_model_dir(args.model))
        model = load_model(args.model)
        source = args.model
    else:
        from unimask.memory import check_model_fits

        name = args.preset or "tiny-causal"
        config = preset(name)
        check_model_fits(config, f"--preset {name}")  # before the weights are allocated
        model = build_model(config)
        source = f"{name} (random init, seed {args.seed})"
    config = model.config
    if args.seq_len > config.max_seq_len:
        raise UnimaskError(f"--seq-len {args.seq_len} exceeds the model's context (max_seq_len "
                           f"{config.max_seq_len})")
    input_ids = _inputs(args, config.vocab_size)
    attentions = collect_attentions(model, input_ids)
    rows = [row for mode, layers in attentions.items() for i, p in enumerate(layers)
            for row in measure(p, mode, i, rtol=args.rtol)]
    print(f"attention rank of {source}: arch {config.arch}, T = {input_ids.shape[1]}, "
          f"{input_ids.shape[0]} sequence(s)")
    print(summary_text(rows))
    causal = [r for r in rows if r.mode == "causal"]
    full = all(r.lower_triangular and r.min_diagonal > 0 for r in causal)
    print(f"theorem check (causal = lower triangular with positive diagonal, hence invertible): "
          f"{'holds' if full else 'FAILS'} for {len(causal)} matrices")
    if args.out:
        out = Path(args.out)
        write_csv(rows, out / "rank.csv")
        write_summary(rows, out / "rank_summary.json",
                      {"source": source, "arch": config.arch, "seq_len": int(input_ids.shape[1]),
                       "sequences": int(input_ids.shape[0]), "causal_theorem_holds": full,
                       "config": json.loads(config.to_json())})
        plot_rank(attentions, rows, out / "rank.png", title=f"attention rank: {source}")
        print(f"wrote {out / 'rank.csv'}, {out / 'rank_summary.json'} and {out / 'rank.png'}")
    return 0
