"""Greedy decoding speed: unimask with the KV cache vs without it vs transformers' ``generate``.

A random LLaMA-style causal decoder (RMSNorm, SwiGLU, RoPE, GQA) is built from a config, decoded greedily
from random prompts at batch 1 and batch 8, and timed; the same weights are written with
``unimask.interop.to_hf`` and loaded into ``transformers.LlamaForCausalLM``, whose ``generate`` runs the
same prompts. New tokens per second = batch * new tokens / seconds (prefill included, best of --repeats).
The script also checks that the three produce the same tokens.

    .venv/bin/python benchmarks/bench_generate.py                 # CPU defaults, about a minute
    .venv/bin/python benchmarks/bench_generate.py --device cuda --d-model 1024 --layers 12

This is a script, not a test: speed depends on the machine and its load.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import torch

import unimask
from unimask.generation import generate


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--skip-uncached-above", type=int, default=8, help="skip use_cache=False for larger batches")
    return p.parse_args()


def timed(fn: Callable[[], torch.Tensor], repeats: int, device: str) -> tuple[float, torch.Tensor]:
    """Best wall time of ``repeats`` runs after one warm-up, and the last output."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def hf_model(model: torch.nn.Module, dtype: torch.dtype, device: str) -> torch.nn.Module | None:
    try:
        import transformers

        from unimask.interop import to_hf
    except ImportError as exc:
        print(f"note: transformers column skipped ({exc})")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = to_hf(model, f"{tmp}/hf")
        hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return hf.to(device).eval()


def main() -> None:
    args = parse()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    config = unimask.ModelConfig(arch="causal", vocab_size=args.vocab, d_model=args.d_model, n_layers=args.layers,
                                 n_heads=args.heads, n_kv_heads=args.kv_heads,
                                 d_ff=int(args.d_model * 8 / 3) // 16 * 16,
                                 activation="swiglu", norm="rmsnorm", norm_eps=1e-6, position="rope",
                                 tie_embeddings=False, max_seq_len=args.prompt_len + args.new_tokens + 8,
                                 init_std=0.5, eos_token_id=None, bos_token_id=None)
    model = unimask.build_model(config).to(device=args.device, dtype=dtype).eval()
    hf = hf_model(model, dtype, args.device)
    n = args.new_tokens
    print(f"model: {model.num_parameters() / 1e6:.1f}M parameters, d_model {args.d_model}, {args.layers} layers, "
          f"{args.heads} heads ({args.kv_heads} kv); prompt {args.prompt_len}, {n} new tokens; device {args.device}, "
          f"{args.dtype}, {torch.get_num_threads()} CPU threads; torch {torch.__version__}")
    header = f"{'batch':>5} | {'unimask cache':>14} | {'unimask no cache':>16} | {'transformers':>12} | same tokens"
    print(header + "\n" + "-" * len(header))
    for b in (int(x) for x in args.batches.split(",")):
        bench_row(model, hf, torch.randint(3, args.vocab, (b, args.prompt_len), device=args.device), args)


def bench_row(model: torch.nn.Module, hf: torch.nn.Module | None, prompts: torch.Tensor,
              args: argparse.Namespace) -> None:
    """One table row: the three decoders on ``prompts (B, P)``."""
    b, n = prompts.shape[0], args.new_tokens
    cached_s, cached = timed(lambda: generate(model, prompts, max_new_tokens=n), args.repeats, args.device)
    row = [f"{b * n / cached_s:>10.1f} t/s"]
    same = []
    if b <= args.skip_uncached_above:
        plain_s, plain = timed(lambda: generate(model, prompts, max_new_tokens=n, use_cache=False), 1, args.device)
        row.append(f"{b * n / plain_s:>12.1f} t/s")
        same.append(torch.equal(plain, cached))
    else:
        row.append(f"{'skipped':>16}")
    if hf is not None:
        def run_hf() -> torch.Tensor:
            with torch.no_grad():
                out = hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=n,
                                  min_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=None)
            return out[:, args.prompt_len:]

        hf_s, hf_out = timed(run_hf, args.repeats, args.device)
        row.append(f"{b * n / hf_s:>8.1f} t/s")
        same.append(torch.equal(hf_out, cached))
    else:
        row.append(f"{'n/a':>12}")
    print(f"{b:>5} | " + " | ".join(row) + f" | {all(same)}")


if __name__ == "__main__":
    main()
