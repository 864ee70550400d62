"""Training throughput and model-FLOPs utilisation (MFU) on this machine.

    python benchmarks/bench_train.py [--steps 20] [--models tiny-causal,tiny-prefix,tiny-encdec,causal-10m]

1. Measures the machine's fp32 matmul peak itself (square matmuls of a few sizes, best FLOP/s).
2. Trains each model with its natural objective through the real trainer (``unimask.train.train``) on the
   built-in corpus and reports tokens/s, tokens carrying loss/s and MFU = achieved model FLOP/s / peak.

Model FLOPs per training step (Kaplan et al. 2020; Chowdhery et al. 2022, PaLM appendix B): 6 x (matmul
parameters) per token (forward 2, backward 4; the output head counts, the embedding lookup does not),
plus attention 12 x layers x (heads x head_dim) x context per token (QK^T and AV, forward and backward,
the full square as PaLM counts it). Encoder-decoders count the encoder on source tokens, the decoder on
target tokens and cross-attention over the source. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch

MODELS: dict[str, dict[str, Any]] = {
    "tiny-causal": {"model": "tiny-causal", "objective": "causal_lm"},
    "tiny-prefix": {"model": "tiny-prefix", "objective": "prefix_lm"},
    "tiny-encdec": {"model": "tiny-encdec", "objective": "span_corruption"},
    # ~11M parameters with the 4096-token built-in tokenizer
    "causal-10m": {"model": {"preset": "tiny-causal", "d_model": 320, "n_layers": 8, "n_heads": 8, "n_kv_heads": 8,
                             "d_ff": 864}, "objective": "causal_lm"},
}


def matmul_peak(sizes: tuple[int, ...] = (512, 1024, 2048), seconds: float = 1.0) -> float:
    """Best fp32 FLOP/s of ``a @ b`` over square sizes (2 n^3 FLOPs each), measured here."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(3):
            a @ b  # warm up
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / len(sizes):
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def matmul_params(model: torch.nn.Module, prefix: str) -> int:
    """Weights of the linear layers under ``prefix`` (a tied head counts: it is a real matmul)."""
    return sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and name.startswith(prefix))


def step_flops(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Model FLOPs of one forward+backward pass over ``batch`` (padding included: it is computed too)."""
    c = model.config
    hq = c.n_heads * c.head_dim_
    head = c.vocab_size * c.d_model
    if c.arch == "encoder_decoder":
        B, S = batch["input_ids"].shape
        T = batch["labels"].shape[1]
        enc, dec = matmul_params(model, "encoder"), matmul_params(model, "decoder")
        dense = 6 * (enc * B * S + (dec + head) * B * T)
        attn = 12 * hq * B * (c.encoder_layers * S * S + c.n_layers * (T * T + T * S))
        return float(dense + attn)
    B, T = batch["input_ids"].shape
    dense = 6 * (matmul_params(model, "decoder") + head) * B * T
    return float(dense + 12 * c.n_layers * hq * B * T * T)


def bench_model(name: str, spec: dict[str, Any], steps: int, seq_len: int, batch_size: int) -> dict[str, Any]:
    from unimask import load_model
    from unimask.data.pipeline import build_batches
    from unimask.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig.from_dict({
            **spec, "data": {"seq_len": seq_len, "batch_size": batch_size}, "steps": steps, "eval_every": 0,
            "eval_batches": 1, "optimizer": {"lr": 1e-3, "warmup_steps": 2}, "out_dir": out, "progress": False,
            "tensorboard": False})
        result = train(config)
        model = load_model(result.checkpoint)
        batch = next(iter(build_batches(config.data_config(), config.objective, model.config.arch)))
    history = result.history[2:]  # skip warm-up steps
    tok_s = statistics.median(h["tokens_per_s"] for h in history)
    loss_tok_s = statistics.median(h["loss_tokens_per_s"] for h in history)
    step_s = statistics.median(h["tokens"] / h["tokens_per_s"] for h in history)
    flops = step_flops(model, batch)
    return {"name": name, "params": model.num_parameters(), "tok_s": tok_s, "loss_tok_s": loss_tok_s,
            "step_s": step_s, "flops_per_step": flops, "flops_per_s": flops / step_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # the peak is measured before and after the runs and the best kept: on a shared machine a single
    # measurement can be low, which would inflate MFU
    peak = matmul_peak()
    results = [bench_model(name, MODELS[name], args.steps, args.seq_len, args.batch_size)
               for name in args.models.split(",")]
    peak = max(peak, matmul_peak())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; measured fp32 matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s; seq_len {args.seq_len}, batch {args.batch_size}")
    print(f"{'model':<12} {'params':>9} {'tokens/s':>10} {'loss-tok/s':>10} {'step s':>8} {'GFLOP/step':>10} "
          f"{'MFU':>6}")
    for r in results:
        print(f"{r['name']:<12} {r['params'] / 1e6:>8.2f}M {r['tok_s']:>10,.0f} {r['loss_tok_s']:>10,.0f} "
              f"{r['step_s']:>8.3f} {r['flops_per_step'] / 1e9:>10.2f} {100 * r['flops_per_s'] / peak:>5.1f}%")


if __name__ == "__main__":
    main()
