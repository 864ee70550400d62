"""Full fine-tuning against LoRA: trainable parameters, training-state memory and peak process memory.

    python benchmarks/bench_finetune.py [--d-model 512] [--layers 8] [--r 8]

Each mode runs in its own process: one forward/backward/AdamW step on a LLaMA-style causal decoder, then
the bytes of every tensor the step holds (weights, gradients, AdamW moments) and the growth of the
process' peak resident memory over its state after the imports (the same libraries in both modes). Not
part of the test run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def measure(mode: str, d: int, layers: int, r: int) -> dict[str, float]:
    import peft  # noqa: F401 - imported in both modes, so the baseline below holds the same libraries
    import torch

    from unimask import build_model
    from unimask.config import ModelConfig
    from unimask.finetune.lora import LoraSpec, apply_lora, trainable_parameters

    baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.manual_seed(0)
    config = ModelConfig(arch="causal", vocab_size=4096, d_model=d, n_layers=layers, n_heads=max(1, d // 64),
                         d_ff=int(8 * d / 3) // 8 * 8, activation="swiglu", norm="rmsnorm", position="rope")
    model = build_model(config)
    if mode == "lora":
        model = apply_lora(model, LoraSpec(r=r, alpha=2 * r, target_modules=("q_proj", "k_proj", "v_proj", "o_proj")))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(3, 4096, (8, 256))
    out = model(ids, labels=ids)
    out.loss.backward()
    opt.step()
    trainable, total = trainable_parameters(model)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    states = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline_mib
    return {"mode": mode, "trainable": trainable, "total": total, "weights_mib": weights / 2**20,
            "grads_mib": grads / 2**20, "adam_mib": states / 2**20, "peak_rss_mib": peak_mib}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.d_model, args.layers, args.r)))
        return
    rows = []
    for mode in ("full", "lora"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--d-model", str(args.d_model), "--layers",
                              str(args.layers), "--r", str(args.r)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"causal decoder d_model {args.d_model}, {args.layers} layers, LoRA r={args.r} on q/k/v/o; one step of "
          "8 x 256 tokens, fp32")
    print(f"{'mode':<6}{'trainable':>14}{'of':>14}{'weights MiB':>13}{'grads MiB':>11}{'AdamW MiB':>11}"
          f"{'peak RSS +MiB':>15}")
    for r in rows:
        print(f"{r['mode']:<6}{r['trainable']:>14,}{r['total']:>14,}{r['weights_mib']:>13.1f}{r['grads_mib']:>11.1f}"
              f"{r['adam_mib']:>11.1f}{r['peak_rss_mib']:>15.0f}")


if __name__ == "__main__":
    main()
