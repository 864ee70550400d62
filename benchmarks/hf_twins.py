"""The benchmark models of ``bench_vs_hf.py`` and their transformers twins holding the identical weights.

Configs of the five models, the batch laid out for each library, export through ``unimask.interop.to_hf``
and loading into the transformers class, the logit/loss agreement check, the training step and optimizers
of both sides, model FLOPs, the peak-memory probe run in a child process, and transformers' greedy decoding.
See ``bench_vs_hf.py`` for what is measured and how.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from benchlib import rss_peak_bytes

TOL = 1e-4
MODELS = ("llama", "prefix", "t5", "bart", "gpt2")
LABELS = {"llama": "LLaMA-like causal", "prefix": "LLaMA-like prefix", "t5": "T5.1.1-like enc-dec",
          "bart": "BART-like enc-dec", "gpt2": "GPT-2-like causal"}
HF_TYPE = {"llama": "llama", "prefix": "llama", "t5": "t5", "bart": "bart", "gpt2": "gpt2"}


# Models and batches ----------------------------------------------------------------------------------------

def shape(d_model: int, layers: int | None = None) -> tuple[int, int]:
    """``(layers, heads)`` at ``d_model``: head size 64 (at least 4 heads); 2/4/6/8 layers below 256 / at
    256 / 512 / 1024 and above, unless ``layers`` is given."""
    heads = max(4, d_model // 64)
    if layers is None:
        layers = 2 if d_model < 256 else 4 if d_model < 512 else 6 if d_model < 1024 else 8
    return layers, heads


def model_config(family: str, d: int, vocab: int, max_len: int, layers: int | None = None,
                 init_std: float = 0.02) -> Any:
    """The unimask ``ModelConfig`` of one benchmark model (see the module docstring)."""
    from unimask import ModelConfig

    n_layers, heads = shape(d, layers)
    mult = 256 if d >= 256 else 16
    gated_ff = mult * math.ceil(8 * d / 3 / mult)  # LLaMA: 2/3 of 4d, rounded up to a multiple of 256
    half = max(1, n_layers // 2)
    base = dict(vocab_size=vocab, d_model=d, n_layers=n_layers, n_heads=heads, max_seq_len=max_len,
                init_std=init_std, pad_token_id=0, eos_token_id=None, bos_token_id=None)
    if family in ("llama", "prefix"):
        spec = dict(arch="causal" if family == "llama" else "prefix", n_kv_heads=max(1, heads // 2),
                    d_ff=gated_ff, activation="swiglu", norm="rmsnorm", norm_eps=1e-6, position="rope", bias=False,
                    tie_embeddings=False)
    elif family == "gpt2":
        spec = dict(arch="causal", d_ff=4 * d, activation="gelu", gelu_approximate="tanh", norm="layernorm",
                    norm_eps=1e-5, position="learned", bias=True, tie_embeddings=True)
    elif family == "t5":
        spec = dict(arch="encoder_decoder", n_layers=half, n_encoder_layers=half, d_ff=gated_ff,
                    activation="gated-gelu", gelu_approximate="tanh", norm="rmsnorm", norm_eps=1e-6,
                    position="t5_relative", rel_buckets=32, rel_max_distance=128, bias=False, tie_embeddings=False,
                    scale_tied_output=False, scale_attention=False, eos_token_id=1, decoder_start_token_id=0)
    elif family == "bart":
        spec = dict(arch="encoder_decoder", n_layers=half, n_encoder_layers=half, d_ff=4 * d, activation="gelu",
                    norm="layernorm", norm_position="post", embedding_norm=True, position="learned",
                    learned_pos_offset=2, bias=True, tie_embeddings=True, final_logits_bias=True, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    else:
        raise ValueError(f"unknown model '{family}' (known: {', '.join(MODELS)})")
    return ModelConfig.from_dict({**base, **spec})


@dataclass
class Batch:
    """Keyword arguments of one training batch for unimask (``um``) and transformers (``hf``)."""

    um: dict[str, torch.Tensor]
    hf: dict[str, torch.Tensor]
    tokens: int
    source_len: int
    target_len: int


def make_batch(family: str, config: Any, batch: int, seq_len: int, seed: int, device: str) -> Batch:
    """Random tokens (ids >= 4, clear of special tokens) and labels, laid out for each library.

    unimask's labels are aligned (``labels[t]`` is the token position t predicts); transformers' decoders
    shift their labels inside, so they get the token ids themselves. A prefix row's prefix carries no loss.
    """
    g = torch.Generator().manual_seed(seed)
    V = config.vocab_size
    if config.arch == "encoder_decoder":
        T = max(1, seq_len // 4)
        S = seq_len - T
        kw = {"input_ids": torch.randint(4, V, (batch, S), generator=g),
              "labels": torch.randint(4, V, (batch, T), generator=g)}
        kw = {k: v.to(device) for k, v in kw.items()}
        return Batch(um=kw, hf=dict(kw), tokens=batch * seq_len, source_len=S, target_len=T)
    ids = torch.randint(4, V, (batch, seq_len), generator=g)
    hf_labels = ids.clone()
    um_extra: dict[str, torch.Tensor] = {}
    hf_extra: dict[str, torch.Tensor] = {}
    if family == "prefix":
        p = torch.randint(seq_len // 4, 3 * seq_len // 4 + 1, (batch,), generator=g).clamp(min=1)  # (B,)
        pos = torch.arange(seq_len)
        hf_labels[pos[None, :] < p[:, None]] = -100  # the prefix is input, not target
        q, k = pos[None, :, None], pos[None, None, :]
        inside = (q < p[:, None, None]) & (k < p[:, None, None])
        allowed = (k <= q) | inside  # (B, T, T): causal, or both in the prefix
        mask = torch.zeros(batch, 1, seq_len, seq_len).masked_fill(~allowed[:, None], torch.finfo(torch.float32).min)
        um_extra, hf_extra = {"prefix_lengths": p}, {"attention_mask": mask}
    um_labels = torch.full_like(ids, -100)
    um_labels[:, :-1] = hf_labels[:, 1:]
    um = {"input_ids": ids, "labels": um_labels, **um_extra}
    hf = {"input_ids": ids, "labels": hf_labels, **hf_extra}
    return Batch(um={k: v.to(device) for k, v in um.items()}, hf={k: v.to(device) for k, v in hf.items()},
                 tokens=batch * seq_len, source_len=seq_len, target_len=seq_len)


def hf_class(family: str) -> Any:
    import transformers

    from unimask.interop import FAMILIES

    model_type = HF_TYPE[family]
    return getattr(transformers, FAMILIES[model_type].MODEL_TYPES[model_type])


def export_and_load(model: Any, family: str, directory: Path) -> Any:
    """Write ``model`` (on CPU) with ``unimask.interop.to_hf`` and load it into the transformers class;
    fails when transformers reports missing, unexpected or mismatched keys."""
    import transformers

    from unimask.interop import to_hf

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    path = to_hf(model, directory, model_type=HF_TYPE[family], as_causal=model.config.arch == "prefix")
    hf, info = hf_class(family).from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise RuntimeError(f"transformers did not load the export of {family} cleanly: {bad}")
    return hf


def agreement(um: Any, hf: Any, batch: Batch) -> dict[str, float]:
    """Max |logit difference| and |loss difference| on the benchmark batch (eval mode, fp32).

    For the prefix decoder also the difference to transformers run WITHOUT the prefix mask
    (``causal_instead_diff``): it must be far above the tolerance, or the check could not tell the masks apart.
    """
    um.eval()
    hf.eval()
    with torch.no_grad():
        a, b = um(**batch.um), hf(**batch.hf)
        out = {"logits_max_abs_diff": float((a.logits.float() - b.logits.float()).abs().max()),
               "loss_abs_diff": float((a.loss - b.loss).abs()), "logits_std": float(b.logits.float().std())}
        if "prefix_lengths" in batch.um:
            plain = hf(**{k: v for k, v in batch.hf.items() if k != "attention_mask"})
            out["causal_instead_diff"] = float((a.logits.float() - plain.logits.float()).abs().max())
    um.train()
    hf.train()
    return out


# Training ------------------------------------------------------------------------------------------------

def hf_default_fused() -> bool:
    """Whether transformers' ``Trainer`` would build a fused AdamW (its default ``optim``)."""
    try:
        from transformers import TrainingArguments

        optim = next(f.default for f in dataclasses.fields(TrainingArguments) if f.name == "optim")
        return str(getattr(optim, "value", optim)) == "adamw_torch_fused"
    except (ImportError, StopIteration):
        return False


def optimizer(model: Any, impl: str) -> torch.optim.Optimizer:
    """unimask: the trainer's optimizer; transformers: AdamW as its Trainer builds it by default."""
    if impl == "unimask":
        from unimask.train.config import OptimizerConfig
        from unimask.train.optim import build_optimizer

        return build_optimizer(model, OptimizerConfig(lr=1e-4))
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=hf_default_fused() or None)


def train_step(model: Any, kwargs: dict[str, torch.Tensor], opt: torch.optim.Optimizer, device: str,
               autocast: torch.dtype | None = None) -> Callable[[], None]:
    """One training step as a function: forward with labels, backward, optimizer step, zero_grad."""
    kind = "cuda" if device.startswith("cuda") else "cpu"

    def step() -> None:
        ctx = torch.autocast(kind, dtype=autocast) if autocast else contextlib.nullcontext()
        with ctx:
            loss = model(**kwargs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def step_flops(config: Any, batch: Batch, rows: int) -> float:
    """Training model FLOPs of one step: 3 x PaLM forward FLOPs of each row's real shapes."""
    from unimask.analysis.compute import forward_flops_per_sequence

    if config.arch == "encoder_decoder":
        fwd = forward_flops_per_sequence(config, batch.source_len, batch.target_len)
    else:
        fwd = forward_flops_per_sequence(config, batch.source_len)
    return 3.0 * rows * (fwd["matmul"] + fwd["attention"])


def _proc_status(key: str) -> int | None:
    """A ``/proc/self/status`` field in bytes (Linux), else None."""
    try:
        text = Path("/proc/self/status").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def memory_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Child process: build one configuration, train ``steps`` steps, report the peak memory growth (MiB)."""
    from unimask import ModelConfig, build_model
    from unimask.train.optim import build_optimizer  # noqa: F401  (imported before the baseline)

    torch.set_num_threads(spec["threads"])
    device, cuda = spec["device"], spec["device"].startswith("cuda")
    if spec["impl"] == "transformers":
        import transformers  # noqa: F401  (imported before the baseline, as unimask is)
    gc.collect()
    base = _proc_status("VmRSS") or rss_peak_bytes()
    base_cuda = torch.cuda.memory_allocated(device) if cuda else 0
    config = ModelConfig.from_dict(spec["config"])
    if spec["impl"] == "unimask":
        torch.manual_seed(spec["seed"])
        model = build_model(config).to(device)
    else:
        model = hf_class(spec["family"]).from_pretrained(spec["hf_dir"], dtype=torch.float32).to(device)
    model.train()
    gc.collect()
    reset = False
    with contextlib.suppress(OSError):  # Linux: forget the peak of loading, keep the current RSS
        Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")
        reset = True
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    batch = make_batch(spec["family"], config, spec["batch"], spec["seq_len"], spec["seed"], device)
    step = train_step(model, batch.um if spec["impl"] == "unimask" else batch.hf, optimizer(model, spec["impl"]),
                      device)
    for _ in range(spec["steps"]):
        step()
    if cuda:
        torch.cuda.synchronize(device)
        return {"peak_mib": (torch.cuda.max_memory_allocated(device) - base_cuda) / 2**20}
    peak = (_proc_status("VmHWM") if reset else None) or rss_peak_bytes()
    return {"peak_mib": (peak - base) / 2**20, "load_peak_excluded": reset}



def hf_generate(hf: Any, prompts: torch.Tensor, n: int, cache: str | None) -> torch.Tensor:
    """transformers' greedy decoding of exactly ``n`` new tokens (prompt stripped)."""
    extra = {"cache_implementation": cache} if cache else {}
    with torch.no_grad():
        out = hf.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=n,
                          min_new_tokens=n, do_sample=False, num_beams=1, pad_token_id=0, eos_token_id=None,
                          **extra)
    return out[:, prompts.shape[1]:]
