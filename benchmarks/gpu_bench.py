"""GPU numbers in one command: bf16 training MFU of a ~350M-parameter model of each family, FlexAttention
vs SDPA for prefix and packed masks, and greedy generation tokens/s.

    .venv/bin/python benchmarks/gpu_bench.py                     # one GPU, well under 10 minutes
    .venv/bin/python benchmarks/gpu_bench.py --peak-tflops 756   # a GPU whose peak is not in the table
    .venv/bin/python benchmarks/gpu_bench.py --device cpu --tiny # dry run of every code path, tiny models

Prints a Markdown table and writes it with the raw numbers to ``benchmarks/results/gpu_bench-<UTC
time>.md`` and ``.json`` (never overwriting earlier results). Without a CUDA device it stops with one line.

What is measured, and how
-------------------------
* Models (``configs``): a LLaMA-like causal decoder (d_model 1024, 24 layers, 16 heads, 8 KV heads, SwiGLU
  d_ff 2816, RoPE, vocabulary 32000, untied: about 350M parameters), the same stack as a prefix decoder,
  and a T5.1.1-like encoder-decoder (12 + 12 layers, gated-GELU d_ff 2048, relative positions: about 370M).
  ``--tiny``: the same families at d_model 64 for the dry run.
* Training step = forward with labels under ``torch.autocast(bfloat16)`` (fp32 master weights, as unimask's
  trainer does), backward, AdamW from ``unimask.train.optim.build_optimizer``, zero_grad; ``--batch`` rows of
  ``--seq-len`` tokens (encoder-decoder: 3/4 source, 1/4 target; prefix rows: prefix length from [T/4, 3T/4]).
  ``--warmup`` untimed steps, then the median of ``--steps`` timed steps (CUDA synchronised around each).
* MFU = PaLM model FLOPs per step (appendix B: 6 N + 12 L H Q T per token, N without the input embedding;
  ``unimask.analysis.compute.forward_flops_per_sequence`` x 3, each family's real shapes) / step time / the
  GPU's dense bf16 peak: ``--peak-tflops``, else the data-sheet number of the matching entry of
  ``unimask.analysis.compute.ACCELERATORS`` (SXM parts), else the bf16 matmul peak measured here (which is
  always reported too).
* FlexAttention vs SDPA: the same model and batch, ``model.set_attention_backend('flex' | 'sdpa')``,
  alternating step by step (flex compiles on its first steps, which the warm-up absorbs); the prefix mask
  on the prefix decoder, the packed mask (documents of random lengths packed into each row,
  ``segment_ids``) on the causal decoder. The forward losses of both backends are compared first. Where
  flex is unavailable (``set_attention_backend`` refuses, or the step fails) the reason is reported.
* Generation: the trained models cast to bf16, greedy ``model.generate`` of ``--new-tokens`` tokens after a
  ``--prompt-len`` prompt (the encoder-decoder's source) at batch 1 and 8; new tokens/s = batch x new
  tokens / wall time (prefill included), median of ``--gen-repeats``.
* Peak memory per family: ``torch.cuda.max_memory_allocated`` over its training steps.
* ``--budget-minutes``: sections that would start after the budget is spent are skipped and reported so.
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from benchlib import fmt_rate, interleaved, machine_info, machine_line, matmul_peak, median, write_results

FAMILIES = ("causal", "prefix", "encoder_decoder")


def configs(tiny: bool) -> dict[str, Any]:
    """The ModelConfig of each family (about 350M parameters; tiny: d_model 64, 2 layers)."""
    from unimask import ModelConfig

    if tiny:
        dec = dict(vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=176, max_seq_len=256)
        enc = dict(vocab_size=512, d_model=64, n_layers=1, n_encoder_layers=1, n_heads=4, d_ff=128, max_seq_len=256)
    else:
        dec = dict(vocab_size=32000, d_model=1024, n_layers=24, n_heads=16, n_kv_heads=8, d_ff=2816,
                   max_seq_len=4096)
        enc = dict(vocab_size=32000, d_model=1024, n_layers=12, n_encoder_layers=12, n_heads=16, d_ff=2048,
                   max_seq_len=4096)
    llama = dict(activation="swiglu", norm="rmsnorm", norm_eps=1e-6, position="rope", bias=False,
                 tie_embeddings=False, eos_token_id=None, bos_token_id=None)
    t5 = dict(arch="encoder_decoder", activation="gated-gelu", gelu_approximate="tanh", norm="rmsnorm",
              norm_eps=1e-6, position="t5_relative", bias=False, tie_embeddings=False, scale_attention=False,
              eos_token_id=None, decoder_start_token_id=0)
    return {"causal": ModelConfig.from_dict({**dec, **llama, "arch": "causal"}),
            "prefix": ModelConfig.from_dict({**dec, **llama, "arch": "prefix"}),
            "encoder_decoder": ModelConfig.from_dict({**enc, **t5})}


def make_batch(config: Any, batch: int, seq_len: int, device: str, g: torch.Generator, *,
               packed: bool = False) -> dict[str, torch.Tensor]:
    """Random training batch: ids, aligned labels (-100 = no loss) and the family's mask inputs."""
    V = config.vocab_size
    if config.arch == "encoder_decoder":
        T = max(1, seq_len // 4)
        out = {"input_ids": torch.randint(4, V, (batch, seq_len - T), generator=g),
               "labels": torch.randint(4, V, (batch, T), generator=g)}
        return {k: v.to(device) for k, v in out.items()}
    ids = torch.randint(4, V, (batch, seq_len), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    out = {"input_ids": ids}
    if config.arch == "prefix":
        p = torch.randint(seq_len // 4, 3 * seq_len // 4 + 1, (batch,), generator=g).clamp(min=1)
        labels[torch.arange(seq_len)[None, :] < (p[:, None] - 1)] = -100  # loss on the target only
        out["prefix_lengths"] = p
    if packed:
        seg = packed_segments(batch, seq_len, g)
        labels[:, :-1][seg[:, 1:] != seg[:, :-1]] = -100  # never predict across a document boundary
        out["segment_ids"] = seg
    out["labels"] = labels
    return {k: v.to(device) for k, v in out.items()}


def packed_segments(batch: int, seq_len: int, g: torch.Generator) -> torch.Tensor:
    """``segment_ids (B, T)``: documents of random lengths in [T/8, T/2] packed into each row (ids from 1)."""
    seg = torch.empty(batch, seq_len, dtype=torch.long)
    lo, hi = max(1, seq_len // 8), max(2, seq_len // 2)
    for b in range(batch):
        pos, doc = 0, 1
        while pos < seq_len:
            n = int(torch.randint(lo, hi + 1, (1,), generator=g))
            seg[b, pos:pos + n] = doc
            pos, doc = pos + n, doc + 1
    return seg


def step_fn(model: Any, batch: dict[str, torch.Tensor], opt: torch.optim.Optimizer, device: str,
            backend: str | None = None) -> Callable[[], None]:
    """One bf16-autocast training step (forward, backward, AdamW, zero_grad), optionally on ``backend``."""
    kind = "cuda" if device.startswith("cuda") else "cpu"

    def step() -> None:
        if backend is not None:
            model.set_attention_backend(backend)
        with torch.autocast(kind, dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def step_flops(config: Any, batch: dict[str, torch.Tensor]) -> float:
    """3 x PaLM forward FLOPs of the batch (full attention square, as PaLM counts it)."""
    from unimask.analysis.compute import forward_flops_per_sequence

    rows, width = batch["input_ids"].shape
    if config.arch == "encoder_decoder":
        fwd = forward_flops_per_sequence(config, width, batch["labels"].shape[1])
    else:
        fwd = forward_flops_per_sequence(config, width)
    return 3.0 * rows * (fwd["matmul"] + fwd["attention"])


def bf16_peak(device: str, flag: float | None, measured: float) -> tuple[float, str]:
    """The bf16 peak FLOP/s MFU is taken against, and where it came from."""
    from unimask.analysis.compute import ACCELERATORS

    if flag:
        return flag * 1e12, f"--peak-tflops {flag:g}"
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device).lower()
        for key, acc in ACCELERATORS.items():
            if re.search(rf"\b{re.escape(key)}\b", name):
                return acc.peak_flops, f"data sheet: {acc.name}, {acc.peak_flops / 1e12:.0f} TFLOP/s"
    return measured, f"measured bf16 matmul peak ({device}; no data-sheet entry matches)"


def train_mfu(family: str, model: Any, opt: torch.optim.Optimizer, args: argparse.Namespace,
              g: torch.Generator) -> dict[str, Any]:
    """Median bf16 training step of one family; tokens/s, model FLOP/s and peak memory."""
    batch = make_batch(model.config, args.batch, args.seq_len, args.device, g)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(args.device)
    times, _ = interleaved({family: step_fn(model, batch, opt, args.device)}, args.steps, args.warmup, args.device)
    step_s = median(times[family])
    flops = step_flops(model.config, batch)
    out = {"family": family, "params": model.num_parameters(), "step_s": times[family], "median_step_s": step_s,
           "tokens_per_step": batch["input_ids"].numel() + (batch["labels"].numel()
                                                            if model.config.arch == "encoder_decoder" else 0),
           "flops_per_step": flops, "model_flops_per_s": flops / step_s}
    out["tok_s"] = out["tokens_per_step"] / step_s
    if args.device.startswith("cuda"):
        out["peak_mib"] = torch.cuda.max_memory_allocated(args.device) / 2**20
    return out


def flex_vs_sdpa(mask: str, model: Any, opt: torch.optim.Optimizer, args: argparse.Namespace,
                 g: torch.Generator) -> dict[str, Any]:
    """Step time with SDPA and with FlexAttention on the same model and batch (``mask``: prefix or packed)."""
    batch = make_batch(model.config, args.batch, args.seq_len, args.device, g, packed=mask == "packed")
    out: dict[str, Any] = {"mask": mask, "family": model.config.arch}
    losses = {}
    for backend in ("sdpa", "flex"):
        try:
            model.set_attention_backend(backend)
            with torch.no_grad(), torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16):
                losses[backend] = float(model(**batch).loss)
        except Exception as exc:  # flex may be missing or refuse this device; report why
            out["flex_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    fns = {b: step_fn(model, batch, opt, args.device, b) for b in losses}
    if "flex" in losses:
        try:
            fns["flex"]()  # first compile, outside the timing
        except Exception as exc:
            out["flex_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            del fns["flex"]
    model.set_attention_backend("sdpa")
    times, _ = interleaved(fns, args.steps, args.warmup, args.device)
    model.set_attention_backend("sdpa")
    out.update(losses=dict(losses), step_s=times,
               median_step_s={k: median(v) for k, v in times.items()})
    if "flex" in out["median_step_s"]:
        out["flex_speedup"] = out["median_step_s"]["sdpa"] / out["median_step_s"]["flex"]
        out["loss_abs_diff"] = abs(losses["flex"] - losses["sdpa"])
    return out


def generation(family: str, model: Any, args: argparse.Namespace, g: torch.Generator) -> list[dict[str, Any]]:
    """Greedy new tokens/s of the model in bf16 at each batch size."""
    model = model.to(torch.bfloat16).eval()
    rows = []
    for b in (int(x) for x in args.gen_batches.split(",")):
        prompts = torch.randint(4, model.config.vocab_size, (b, args.prompt_len), generator=g).to(args.device)
        n = args.new_tokens
        times, outs = interleaved({"generate": lambda p=prompts, n=n: model.generate(p, max_new_tokens=n)},
                                  args.gen_repeats, 1, args.device)
        s = median(times["generate"])
        rows.append({"family": family, "batch": b, "seconds": times["generate"], "tok_s": b * n / s,
                     "new_tokens": int(outs["generate"].shape[1])})
    return rows


# Report and command line ------------------------------------------------------------------------------------

def render(data: dict[str, Any]) -> str:
    a = data["settings"]
    out = ["# unimask on one GPU: bf16 training MFU, FlexAttention vs SDPA, generation", "",
           machine_line(data["machine"]), "",
           f"MFU against {data['peak_source']}; measured bf16 matmul peak {data['measured_bf16_peak'] / 1e12:,.3g} "
           f"TFLOP/s. Batch {a['batch']} x {a['seq_len']} tokens; medians of {a['steps']} steps after {a['warmup']}.",
           "", "## bf16 training step (forward, backward, AdamW)", "",
           "| model | params | step s | tokens/s | model TFLOP/s | MFU | peak MiB |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for e in data["train"]:
        mem = f"{e['peak_mib']:,.0f}" if "peak_mib" in e else "n/a"
        out.append(f"| {e['family']} | {e['params'] / 1e6:,.1f}M | {e['median_step_s']:.4f} | {fmt_rate(e['tok_s'])} "
                   f"| {e['model_flops_per_s'] / 1e12:,.2f} | {100 * e['mfu']:.1f}% | {mem} |")
    out += ["", "## FlexAttention vs SDPA (same model, batch and step)", "",
            "| mask | model | SDPA step s | flex step s | flex speed-up | abs loss diff |",
            "|---|---|---:|---:|---:|---:|"]
    for f in data["flex"]:
        med = f["median_step_s"]
        if "flex" in med:
            cells = f"{med['flex']:.4f} | {f['flex_speedup']:.2f}x | {f['loss_abs_diff']:.1e}"
        else:
            cells = f"unavailable: {f.get('flex_error', '?')} | | "
        out.append(f"| {f['mask']} | {f['family']} | {med.get('sdpa', float('nan')):.4f} | {cells} |")
    out += ["", f"## Greedy generation, bf16 ({a['prompt_len']}-token prompt, {a['new_tokens']} new tokens, "
            "prefill included)", "", "| model | batch | new tokens/s |", "|---|---:|---:|"]
    out += [f"| {r['family']} | {r['batch']} | {fmt_rate(r['tok_s'])} |" for r in data["generation"]]
    if data["skipped"]:
        out += ["", "Skipped (time budget spent): " + "; ".join(data["skipped"])]
    return "\n".join(out) + "\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="d_model-64 models: a dry run of every code path")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: looked up by name)")
    p.add_argument("--batch", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--steps", type=int, help="timed training steps (median)")
    p.add_argument("--warmup", type=int)
    p.add_argument("--prompt-len", type=int)
    p.add_argument("--new-tokens", type=int)
    p.add_argument("--gen-batches", default="1,8")
    p.add_argument("--gen-repeats", type=int)
    p.add_argument("--peak-seconds", type=float)
    p.add_argument("--no-flex", action="store_true")
    p.add_argument("--no-generate", action="store_true")
    p.add_argument("--budget-minutes", type=float, default=9.0, help="skip sections that would start later")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="folder of the .md and .json results (default benchmarks/results)")
    args = p.parse_args(argv)
    defaults = (dict(batch=2, seq_len=64, steps=2, warmup=1, prompt_len=8, new_tokens=8, gen_repeats=1,
                     peak_seconds=0.3) if args.tiny else
                dict(batch=8, seq_len=2048, steps=10, warmup=3, prompt_len=64, new_tokens=128, gen_repeats=3,
                     peak_seconds=2.0))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = set(args.families.split(",")) - set(FAMILIES)
    if unknown:
        p.error(f"--families: unknown {', '.join(sorted(unknown))}; known: {', '.join(FAMILIES)}")
    return args


def bench_family(family: str, config: Any, args: argparse.Namespace, data: dict[str, Any],
                 over: Callable[[], bool]) -> None:
    """Every section for one family, on one model (built once), appended to ``data``."""
    from unimask import build_model
    from unimask.train.config import OptimizerConfig
    from unimask.train.optim import build_optimizer

    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    model = build_model(config).to(args.device).train()
    opt = build_optimizer(model, OptimizerConfig(lr=1e-4))
    entry = train_mfu(family, model, opt, args, g)
    entry["mfu"] = entry["model_flops_per_s"] / data["peak_flops"]
    data["train"].append(entry)
    mask = {"prefix": "prefix", "causal": "packed"}.get(family)
    if mask and not args.no_flex:
        if over():
            data["skipped"].append(f"flex vs sdpa ({mask})")
        else:
            data["flex"].append(flex_vs_sdpa(mask, model, opt, args, g))
    del opt
    if not args.no_generate:
        if over():
            data["skipped"].append(f"generation ({family})")
        else:
            data["generation"] += generation(family, model, args, g)
    del model
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    sizes = (256, 512) if args.tiny else None
    measured = matmul_peak(args.device, torch.bfloat16, sizes=sizes, seconds=args.peak_seconds)
    peak, source = bf16_peak(args.device, args.peak_tflops, measured)
    data: dict[str, Any] = {"machine": machine_info(args.device), "settings": vars(args), "peak_flops": peak,
                            "peak_source": source, "measured_bf16_peak": measured, "train": [], "flex": [],
                            "generation": [], "skipped": []}
    over = lambda: time.perf_counter() - start > 60 * args.budget_minutes
    cfgs = configs(args.tiny)
    for family in args.families.split(","):
        if over():
            data["skipped"].append(f"{family}: every section")
            continue
        bench_family(family, cfgs[family], args, data, over)
    data["elapsed_s"] = time.perf_counter() - start
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device (torch.cuda.is_available() is False); run it on a machine with a GPU, "
              "or pass --device cpu --tiny for a dry run", file=sys.stderr)
        return 2
    if not args.device.startswith("cuda") and not args.tiny:
        print(f"gpu_bench: --device {args.device} runs ~350M-parameter models for hours; add --tiny for a dry run",
              file=sys.stderr)
        return 2
    data = run(args)
    text = render(data)
    kwargs = {"out_dir": Path(args.out)} if args.out else {}
    md, js = write_results("gpu_bench" + ("-tiny" if args.tiny else ""), text, data, **kwargs)
    print(text)
    print(f"wrote {md} and {js} ({data['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
