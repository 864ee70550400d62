"""unimask against transformers on identical weights: training and greedy-generation speed, MFU, memory.

    .venv/bin/python benchmarks/bench_vs_hf.py                # the full table (CPU fp32: tens of minutes)
    .venv/bin/python benchmarks/bench_vs_hf.py --quick        # smoke run at d_model 64, a minute or two
    .venv/bin/python benchmarks/bench_vs_hf.py --device cuda  # the same on a GPU
    .venv/bin/python benchmarks/bench_vs_hf.py --sizes 512 --models llama,prefix --no-generate

Prints a Markdown table and writes it with the raw numbers (every run's time, the machine, threads,
torch / transformers / unimask versions and commit, the date) to ``benchmarks/results/bench_vs_hf-<UTC
time>.md`` and ``.json``; earlier results are never overwritten. Exit status 1 when a check failed.

What is measured, and how
-------------------------
* The same weights on both sides. Each unimask model is built from a typed config (seeded), written as a
  Hugging Face checkpoint with ``unimask.interop.to_hf`` (the production converter), and loaded with the
  transformers class (``LlamaForCausalLM``, ``T5ForConditionalGeneration``, ``BartForConditionalGeneration``,
  ``GPT2LMHeadModel``) with no missing or unexpected keys. Before anything is timed the logits and the loss
  of the benchmark batch must agree in fp32 within 1e-4 (eval mode; every dropout is 0); a configuration
  that disagrees is reported and not timed.
* Models (``hf_twins.model_config``): LLaMA-like (RMSNorm, SwiGLU with d_ff = 8/3 d rounded up to 256 as LLaMA does,
  RoPE, GQA with half the query heads, untied head); the same stack as a prefix decoder (``arch="prefix"``
  with per-row ``prefix_lengths`` drawn from [T/4, 3T/4], loss on the target only; transformers' Llama gets
  the equivalent 4-D float mask ``(B, 1, T, T)`` of 0 / finfo.min, which its mask code passes through
  unchanged); T5.1.1-like (gated-GELU, RMSNorm, relative position buckets, no attention scaling, untied);
  BART-like (post-norm, learned positions with offset 2, GELU, biases, tied, final logits bias); GPT-2-like
  (pre-LayerNorm, learned positions, tanh-GELU, d_ff = 4 d, biases, tied). Head size 64 (at least 4 heads),
  layers 4 / 6 / 8 at d_model 256 / 512 / 1024 (2 below 256; ``--layers`` overrides); encoder-decoders have
  half the layers in each stack, so every family has the same total depth. Vocabulary ``--vocab``.
* Batch: ``--batch`` rows of ``--seq-len`` random tokens, the same tensors for both libraries. Decoders
  see all T tokens; encoder-decoders get a source of 3/4 and a target of 1/4 of them (T5's ratio of span
  corruption), so tokens per step are the same for every family.
* Training step = forward with labels (loss), backward, AdamW step, zero_grad; no gradient clipping.
  unimask uses its trainer's own optimizer (``unimask.train.optim.build_optimizer``), transformers a
  ``torch.optim.AdamW`` as its ``Trainer`` builds it by default (``fused=True`` when the default optim is
  ``adamw_torch_fused``). ``--warmup`` untimed steps of each, then ``--repeats`` timed steps of each,
  INTERLEAVED in one process (unimask, transformers, ..., then in reverse order), and the median is reported.
  tokens/s = tokens per step / median step time. The LLaMA-like causal and prefix models are interleaved
  together, so the prefix/causal cost ratio (unimask prefix step time / causal step time) compares runs
  of the same minutes.
* MFU = model FLOPs per step / median step time / the machine's fp32 matmul peak, measured here before and
  after the runs (the best kept: on a shared machine one measurement can be low). Model FLOPs as PaLM's
  appendix B (6 N + 12 L H Q T per token, N the matmul weights without the input embedding) through
  ``unimask.analysis.compute.forward_flops_per_sequence``, which counts each family's shapes (encoder on the
  source, decoder and cross-attention on the target); training = 3 x forward.
* Peak memory: each configuration trains ``--memory-steps`` steps again in a fresh process; the number is
  the growth of its peak RSS over the process after its imports (Linux: peak reset after the model is
  built, so loading transients do not count), or ``torch.cuda.max_memory_allocated`` growth on a GPU.
* bf16 column: the same unimask step under ``torch.autocast(bfloat16)`` (fp32 weights), timed in the same
  interleaving, when ``unimask.train.precision.probe_cpu`` says bf16 matmuls are clearly faster (AVX-512-BF16
  or AMX; on CUDA whenever the GPU supports bf16); ``--bf16 on|off`` forces it.
* Greedy generation (LLaMA-like model at ``--gen-sizes``, ``--gen-init-std`` so that logits spread and no
  near-tie can flip a token): new tokens/s = batch x new tokens / wall time of one call (prefill included),
  for unimask ``model.generate``, transformers ``generate`` with its default (dynamic) cache and with
  ``cache_implementation="static"``, interleaved, median; the tokens must be identical (a mismatch is
  printed loudly and makes the exit status 1). "Linear layers alone" (``linear_floor``) times just the
  matrix products of as many decoding steps, in the same interleaving: no attention, norms, sampling or
  Python around them. At batch 1 that reads every weight once per token, a bound no decode loop can beat,
  and its ratio to transformers is the largest speed-up any implementation could show in that precision.

Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from benchlib import (
    RESULTS,
    fmt_rate,
    interleaved,
    machine_info,
    machine_line,
    matmul_peak,
    median,
    run_probe,
    tune_malloc,
    write_results,
)
from hf_twins import (
    LABELS,
    MODELS,
    TOL,
    Batch,
    agreement,
    export_and_load,
    hf_default_fused,
    hf_generate,
    make_batch,
    memory_probe,
    model_config,
    optimizer,
    step_flops,
    train_step,
)

GROUPS = (("llama", "prefix"), ("t5",), ("bart",), ("gpt2",))  # interleaved together
FULL = dict(sizes="256,512,1024", batch=8, seq_len=256, repeats=5, warmup=2, gen_sizes="256", prompt_len=64,
            new_tokens=128, memory_steps=3, peak_seconds=1.0)
QUICK = dict(sizes="64", batch=2, seq_len=64, repeats=2, warmup=1, gen_sizes="64", prompt_len=16, new_tokens=16,
             memory_steps=2, peak_seconds=0.3)


# Training -----------------------------------------------------------------------------------------------

def bench_group(group: tuple[str, ...], d: int, args: argparse.Namespace, bf16: bool) -> list[dict[str, Any]]:
    """Train every model of ``group`` at ``d_model`` in both libraries, interleaved; one entry per model."""
    from unimask import build_model

    entries, fns = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in group:
            config = model_config(family, d, args.vocab, args.seq_len, args.layers)
            torch.manual_seed(args.seed)
            um = build_model(config)
            hf = export_and_load(um, family, Path(tmp) / family)
            um, hf = um.to(args.device), hf.to(args.device)
            batch = make_batch(family, config, args.batch, args.seq_len, args.seed, args.device)
            entry = describe(family, d, config, um, hf, batch, args)
            entry.update(agreement(um, hf, batch))
            entries.append(entry)
            if entry.get("causal_instead_diff", math.inf) <= 10 * TOL:
                print(f"note: {LABELS[family]} d_model {d}: the logit check barely tells the prefix mask from a "
                      f"causal one ({entry['causal_instead_diff']:.1e}); raise --vocab or d_model", file=sys.stderr)
            if not (entry["logits_max_abs_diff"] <= TOL and entry["loss_abs_diff"] <= TOL):
                entry["error"] = (f"logits differ from transformers by {entry['logits_max_abs_diff']:.2e} "
                                  f"(loss by {entry['loss_abs_diff']:.2e}); not timed")
                print(f"!!! {LABELS[family]} d_model {d}: {entry['error']}", file=sys.stderr)
                continue
            um_opt = optimizer(um, "unimask")
            fns[f"{family}/unimask"] = train_step(um, batch.um, um_opt, args.device)
            fns[f"{family}/transformers"] = train_step(hf, batch.hf, optimizer(hf, "transformers"), args.device)
            if bf16:
                fns[f"{family}/unimask_bf16"] = train_step(um, batch.um, um_opt, args.device, torch.bfloat16)
        times, _ = interleaved(fns, args.repeats, args.warmup, args.device)
        del fns
        gc.collect()
        for entry in entries:
            if "error" not in entry:
                finish_entry(entry, times, args, Path(tmp) / entry["family"])
    return entries


def describe(family: str, d: int, config: Any, um: Any, hf: Any, batch: Batch, args: argparse.Namespace,
             ) -> dict[str, Any]:
    return {"family": family, "model": LABELS[family], "d_model": d, "config": config.to_dict(),
            "params": um.num_parameters(), "hf_class": type(hf).__name__,
            "hf_attn_implementation": getattr(hf.config, "_attn_implementation", None),
            "batch": args.batch, "source_len": batch.source_len, "target_len": batch.target_len,
            "tokens_per_step": batch.tokens, "flops_per_step": step_flops(config, batch, args.batch)}


def finish_entry(entry: dict[str, Any], times: dict[str, list[float]], args: argparse.Namespace,
                 hf_dir: Path) -> None:
    """Medians, tokens/s, ratio and peak memory of one timed model."""
    fam = entry["family"]
    entry["step_s"] = {impl: times[f"{fam}/{impl}"] for impl in ("unimask", "transformers", "unimask_bf16")
                       if f"{fam}/{impl}" in times}
    med = {impl: median(v) for impl, v in entry["step_s"].items()}
    entry["median_step_s"] = med
    entry["tok_s"] = {impl: entry["tokens_per_step"] / s for impl, s in med.items()}
    entry["ratio"] = entry["tok_s"]["unimask"] / entry["tok_s"]["transformers"]
    if "unimask_bf16" in med:
        entry["bf16_speedup"] = med["unimask"] / med["unimask_bf16"]
    entry["model_flops_per_s"] = {impl: entry["flops_per_step"] / s for impl, s in med.items()}
    if args.memory_steps > 0:
        entry["peak_mib"] = {impl: memory(entry, impl, args, hf_dir) for impl in ("unimask", "transformers")}


# Peak memory (in a fresh process) ------------------------------------------------------------------------

def memory(entry: dict[str, Any], impl: str, args: argparse.Namespace, hf_dir: Path) -> float | None:
    spec = {"impl": impl, "family": entry["family"], "config": entry["config"], "hf_dir": str(hf_dir),
            "batch": args.batch, "seq_len": args.seq_len, "seed": args.seed, "device": args.device,
            "threads": torch.get_num_threads(), "steps": args.memory_steps}
    out = run_probe(__file__, "--memory-probe", spec)
    if "error" in out:
        print(f"note: memory probe of {entry['model']} d_model {entry['d_model']} ({impl}) failed: {out['error']}",
              file=sys.stderr)
        return None
    return out["peak_mib"]


# Generation ---------------------------------------------------------------------------------------------

def bench_generation(d: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Greedy tokens/s of the LLaMA-like model at ``d_model`` for each batch size, and token identity."""
    from unimask import build_model

    P, N = args.prompt_len, args.new_tokens
    config = model_config("llama", d, args.vocab, P + N + 8, args.layers, init_std=args.gen_init_std)
    torch.manual_seed(args.seed)
    um = build_model(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        hf = export_and_load(um, "llama", Path(tmp) / "llama")
    um, hf = um.to(args.device), hf.to(args.device).eval()
    rows = []
    for b in (int(x) for x in args.gen_batches.split(",")):
        g = torch.Generator().manual_seed(args.seed + b)
        prompts = torch.randint(4, config.vocab_size, (b, P), generator=g).to(args.device)
        fns: dict[str, Callable[[], torch.Tensor]] = {
            "unimask": lambda p=prompts: um.generate(p, max_new_tokens=N),
            "transformers": lambda p=prompts: hf_generate(hf, p, N, None),
            "transformers_static": lambda p=prompts: hf_generate(hf, p, N, "static")}
        row: dict[str, Any] = {"d_model": d, "batch": b, "prompt_len": P, "new_tokens": N, "errors": {}}
        for name in ("transformers", "transformers_static"):
            try:
                fns[name]()
            except Exception as exc:  # a transformers cache that fails here is reported, not fatal
                row["errors"][name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
                del fns[name]
        fns["linear_floor"] = linear_floor(um, b, N, args.device)
        times, outs = interleaved(fns, args.repeats, 1, args.device)
        row["seconds"] = times
        row["tok_s"] = {k: b * N / median(v) for k, v in times.items()}
        row["same_tokens"] = {k: bool(torch.equal(outs["unimask"].cpu(), outs[k].cpu())) for k in outs
                              if k.startswith("transformers")}
        for k, same in row["same_tokens"].items():
            if not same:
                diff = (outs["unimask"].cpu() != outs[k].cpu()).nonzero()[0].tolist()
                print(f"!!! TOKEN MISMATCH: unimask vs {k} at d_model {d}, batch {b}: first difference at "
                      f"(row, step) {diff}", file=sys.stderr)
        rows.append(row)
    return rows


def linear_floor(model: Any, batch: int, steps: int, device: str) -> Callable[[], None]:
    """The linear layers of ``steps`` decoding steps and nothing else: every weight matrix of the model
    (output layer included, each once) times a ``(batch, 1, in)`` input, as one decoded token needs. At batch 1
    this reads every weight once per token, so its tokens/s bounds any decode loop, whatever the overhead."""
    seen: dict[int, torch.Tensor] = {}
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            seen.setdefault(id(m.weight), m.weight.detach())
    weights = list(seen.values())
    xs = [torch.randn(batch, 1, w.shape[1], device=device) for w in weights]

    def run() -> None:
        with torch.no_grad():
            for _ in range(steps):
                for w, x in zip(weights, xs):
                    torch.nn.functional.linear(x, w)

    return run


# Report --------------------------------------------------------------------------------------------------

def bf16_choice(args: argparse.Namespace) -> tuple[bool, str]:
    """Whether to time the bf16 column, and why (from the probe unless ``--bf16`` forces it)."""
    if args.bf16 != "auto":
        return args.bf16 == "on", f"bf16 forced {args.bf16}"
    if args.device.startswith("cuda"):
        ok = torch.cuda.is_bf16_supported()
        return ok, "bf16 supported by the GPU" if ok else "the GPU has no bf16"
    from unimask.train.precision import probe_cpu

    probe = probe_cpu()
    why = (f"probe: {probe.capability}, fp32 {probe.fp32_gflops:.0f} GFLOP/s, bf16 {probe.bf16_gflops:.0f} GFLOP/s"
           f" -> {probe.choice}")
    return probe.choice == "bf16", why


def train_table(entries: list[dict[str, Any]], peak: float, bf16_note: str) -> list[str]:
    lines = ["| model | d_model | unimask tok/s | transformers tok/s | ratio | MFU | peak MiB (unimask / transformers) "
             "| bf16 tok/s | max abs logit diff |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in entries:
        diff = f"{e['logits_max_abs_diff']:.1e}"
        if "error" in e:
            lines.append(f"| {e['model']} | {e['d_model']} | FAILED: {e['error']} | | | | | | {diff} |")
            continue
        tok = e["tok_s"]
        mem = e.get("peak_mib") or {}
        mem_s = " / ".join("n/a" if mem.get(k) is None else f"{mem[k]:,.0f}" for k in ("unimask", "transformers"))
        bf16 = (f"{fmt_rate(tok['unimask_bf16'])} ({e['bf16_speedup']:.2f}x)" if "unimask_bf16" in tok
                else bf16_note)
        mfu = 100 * e["model_flops_per_s"]["unimask"] / peak
        lines.append(f"| {e['model']} | {e['d_model']} | {fmt_rate(tok['unimask'])} | {fmt_rate(tok['transformers'])} "
                     f"| {e['ratio']:.2f}x | {mfu:.1f}% | {mem_s if mem else 'not measured'} | {bf16} | {diff} |")
    return lines


def prefix_ratios(entries: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """unimask (and transformers) prefix step time / causal step time at each d_model."""
    by = {(e["family"], e["d_model"]): e for e in entries if "error" not in e}
    out = {}
    for (family, d), e in by.items():
        causal = by.get(("llama", d))
        if family == "prefix" and causal:
            out[d] = {impl: e["median_step_s"][impl] / causal["median_step_s"][impl]
                      for impl in ("unimask", "transformers")}
    return out


def gen_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| d_model | batch | unimask tok/s | transformers tok/s | ratio | transformers static tok/s | ratio "
             "| linear layers alone tok/s | their ratio to transformers | identical tokens |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        tok, um = r["tok_s"], r["tok_s"]["unimask"]
        cells = []
        for k in ("transformers", "transformers_static"):
            if k in tok:
                cells += [fmt_rate(tok[k]), f"{um / tok[k]:.2f}x"]
            else:
                cells += [f"failed: {r['errors'].get(k, '?')}", ""]
        floor = tok.get("linear_floor")
        cells += ([fmt_rate(floor), f"{floor / tok['transformers']:.2f}x" if "transformers" in tok else ""]
                  if floor else ["not measured", ""])
        same = ", ".join(f"{k.replace('transformers', 'hf')}: {'yes' if v else 'NO (MISMATCH)'}"
                         for k, v in r["same_tokens"].items())
        lines.append(f"| {r['d_model']} | {r['batch']} | {fmt_rate(um)} | " + " | ".join(cells) + f" | {same} |")
    return lines


def render(data: dict[str, Any]) -> str:
    a, peak = data["settings"], data["fp32_matmul_peak_flops"]
    out = ["# unimask vs transformers on identical weights", "", machine_line(data["machine"]), "",
           f"Measured fp32 matmul peak {peak / 1e9:,.1f} GFLOP/s; {data['bf16_reason']}. Medians of "
           f"{a['repeats']} interleaved runs after {a['warmup']} warm-up runs each."]
    if a["repeats"] < 5:
        out.append(f"**Only {a['repeats']} runs per median (fewer than 5): a smoke run, not a result.**")
    if a.get("tune_malloc"):
        out.append("glibc's mmap and trim thresholds raised to 1 GiB for this process (`--tune-malloc`, both "
                   "libraries): freed buffers are reused instead of unmapped and faulted in again.")
    if data["train"]:
        out += ["", f"## Training step (forward, backward, AdamW), fp32, batch {a['batch']} x {a['seq_len']} tokens "
                "(encoder-decoders: 3/4 source, 1/4 target)", ""]
        out += train_table(data["train"], peak, data["bf16_note"])
        sens = [f"d_model {e['d_model']}: {e['causal_instead_diff']:.1e}" for e in data["train"]
                if "causal_instead_diff" in e]
        if sens:
            out += ["", "Check sensitivity: max abs logit diff between the unimask prefix decoder and transformers "
                    "run without the prefix mask (must be far above 1e-4): " + "; ".join(sens)]
        ratios = data["prefix_causal_ratio"]
        if ratios:
            out += ["", "Prefix / causal step time (same shapes): " + "; ".join(
                f"d_model {d}: unimask {r['unimask']:.3f}, transformers (4-D mask) {r['transformers']:.3f}"
                for d, r in ratios.items())]
        out += ["", "MFU: PaLM model FLOPs (6N + 12LHQT per token, training = 3 x forward) per second of the "
                "unimask fp32 step / measured fp32 matmul peak. Peak MiB: growth of peak RSS in a fresh process "
                "(CUDA: max_memory_allocated)."]
    if data["generation"]:
        out += ["", f"## Greedy generation, new tokens/s ({a['prompt_len']}-token prompt, {a['new_tokens']} new "
                "tokens, prefill included), LLaMA-like, fp32", ""]
        out += gen_table(data["generation"])
    return "\n".join(out) + "\n"


# Command line ---------------------------------------------------------------------------------------------

def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: d_model 64, batch 2 x 64, 2 repeats")
    p.add_argument("--sizes", help=f"d_model values (default {FULL['sizes']})")
    p.add_argument("--models", default=",".join(MODELS), help="subset of " + ",".join(MODELS))
    p.add_argument("--layers", type=int, help="layers of every model (default: by d_model, see shape())")
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--batch", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--repeats", type=int, help="timed interleaved runs per configuration (default 5)")
    p.add_argument("--warmup", type=int)
    p.add_argument("--gen-sizes", help="d_model values of the generation benchmark (default 256)")
    p.add_argument("--gen-batches", default="1,8")
    p.add_argument("--prompt-len", type=int)
    p.add_argument("--new-tokens", type=int)
    p.add_argument("--gen-init-std", type=float, default=0.5, help="weight std of the generation model")
    p.add_argument("--memory-steps", type=int, help="training steps of each memory probe (0 = skip)")
    p.add_argument("--peak-seconds", type=float, help="time spent measuring the matmul peak (each time)")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--tune-malloc", action="store_true",
                   help="raise glibc's mmap/trim thresholds first (both libraries, one process): how much of a "
                        "ratio is the allocator's page faults")
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--no-generate", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS, help="folder of the .md and .json results")
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        p.error(f"--models: unknown {', '.join(sorted(unknown))}; known: {', '.join(MODELS)}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    peak = matmul_peak(args.device, seconds=args.peak_seconds)
    bf16, reason = bf16_choice(args)
    note = "n/a (no AVX-512-BF16/AMX)" if not bf16 and args.device == "cpu" else ("n/a" if not bf16 else "")
    wanted = args.models.split(",")
    train: list[dict[str, Any]] = []
    if not args.no_train:
        for d in (int(x) for x in args.sizes.split(",")):
            for group in GROUPS:
                group = tuple(f for f in group if f in wanted)
                if group:
                    train += bench_group(group, d, args, bf16)
                    gc.collect()
    generation: list[dict[str, Any]] = []
    if not args.no_generate:
        for d in (int(x) for x in args.gen_sizes.split(",")):
            generation += bench_generation(d, args)
    peak = max(peak, matmul_peak(args.device, seconds=args.peak_seconds))
    settings = {k: v for k, v in vars(args).items() if k != "memory_probe"}
    return {"machine": machine_info(args.device), "settings": settings, "fp32_matmul_peak_flops": peak,
            "bf16": bf16, "bf16_reason": reason, "bf16_note": note, "hf_optimizer_fused": hf_default_fused(),
            "train": train, "prefix_causal_ratio": prefix_ratios(train), "generation": generation}


def failures(data: dict[str, Any]) -> list[str]:
    out = [f"{e['model']} d_model {e['d_model']}: {e['error']}" for e in data["train"] if "error" in e]
    for r in data["generation"]:
        out += [f"generation d_model {r['d_model']} batch {r['batch']}: tokens differ from {k}"
                for k, same in r["same_tokens"].items() if not same]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tune_malloc and not tune_malloc():
        print("bench_vs_hf: --tune-malloc needs glibc (Linux)", file=sys.stderr)
        return 2
    if args.memory_probe:
        print(json.dumps(memory_probe(json.loads(args.memory_probe))))
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"bench_vs_hf: --device {args.device} but torch sees no CUDA device; use --device cpu",
              file=sys.stderr)
        return 2
    data = run(args)
    text = render(data)
    md, js = write_results("bench_vs_hf" + ("-quick" if args.quick else ""), text, data, args.out)
    print(text)
    print(f"wrote {md} and {js}")
    bad = failures(data)
    for line in bad:
        print(f"!!! FAILED CHECK: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
