"""Will it fit? Memory a model needs, estimated from its config alone, against what the machine has.

A run whose sizes cannot fit (``data.batch_size`` 1e9, ``model.n_layers`` 1e6, a 175B model on a laptop) is
refused from the config, with one line saying how much it needs and how much there is, before anything is
allocated; without the check the process is killed by the kernel or fails deep inside torch.

The estimate is a deliberate *lower bound*, so that only runs that certainly cannot fit are refused:

* weights: 4 bytes per parameter (the model is built in fp32; autocast keeps fp32 master weights);
* training adds gradients (4 bytes) and AdamW's two moments (8 bytes) per trainable parameter (Rajbhandari
  et al. 2020, ZeRO, section 3: 16 bytes per parameter in mixed precision), split over the ranks by FSDP2;
* activations kept for the backward pass: per token and layer the block's inputs, q/k/v, the attention
  output and the feed-forward hidden states (Korthikanti et al. 2022, "Reducing Activation Recomputation",
  count more: attention scores, dropout masks), in fp32 on a CPU and bf16 under CUDA autocast;
* the batch itself (int64 ids, labels and positions).

``UNIMASK_SKIP_MEMORY_CHECK=1`` turns the refusal off (an estimate is an estimate).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from unimask.config import ModelConfig
from unimask.errors import ConfigError

GIB = 1 << 30


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes one process needs, by kind."""

    weights: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def describe(self) -> str:
        parts = [("weights", self.weights), ("gradients", self.gradients), ("optimizer state", self.optimizer),
                 ("activations", self.activations)]
        return ", ".join(f"{name} {format_bytes(n)}" for name, n in parts if n)


@dataclass(frozen=True)
class MemoryBudget:
    """What the machine (or one GPU) has: ``total`` bytes, of which ``available`` are free now."""

    total: int
    available: int | None
    where: str  # "RAM" or "cuda:0"


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; 3e15 -> '2.7 PiB'."""
    for unit, scale in (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", GIB), ("MiB", 1 << 20),
                        ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def _cgroup_limit() -> int | None:
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def _ram() -> MemoryBudget | None:
    total = available = None
    try:
        import psutil

        vm = psutil.virtual_memory()
        total, available = int(vm.total), int(vm.available)
    except ImportError:
        try:
            fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
            total = int(fields["MemTotal"].split()[0]) * 1024
            available = int(fields.get("MemAvailable", fields["MemTotal"]).split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            return None
    limit = _cgroup_limit()
    if limit is not None and limit < total:
        total, available = limit, min(available, limit) if available is not None else None
    return MemoryBudget(total=total, available=available, where="RAM")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda:<LOCAL_RANK>`` when a GPU is there, else ``cpu``; ``cuda`` -> ``cuda:<LOCAL_RANK>``."""
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0)}"
    return device


def machine_memory(device: str = "cpu") -> MemoryBudget | None:
    """RAM (the cgroup limit when lower), or the memory of the GPU ``device`` names; None when unknown."""
    device = resolve_device(device)
    if not device.startswith("cuda"):
        return _ram()
    import torch

    if not torch.cuda.is_available():
        return None  # the trainer says that there is no GPU
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return None
    free, total = torch.cuda.mem_get_info(index)
    return MemoryBudget(total=int(total), available=int(free), where=device)


def _per_token_layer(config: ModelConfig, cross: bool) -> int:
    """Activation elements one token keeps in one layer for the backward pass (a lower bound)."""
    d, hd = config.d_model, config.head_dim_
    q = config.n_heads * hd
    kv = config.kv_heads * hd
    attention = 2 * q + 2 * kv + (2 * q if cross else 0)  # q, k, v, output (+ cross q, output)
    mlp = (3 if config.gated else 2) * config.d_ff  # up (+ gate), activation
    return 4 * d + attention + mlp  # norms' inputs/outputs, residuals


def weights_bytes(config: ModelConfig, bytes_per_param: int = 4) -> int:
    from unimask.analysis.params import count_parameters

    return count_parameters(config).total * bytes_per_param


def training_need(config: ModelConfig, *, batch_size: int, seq_len: int, target_len: int | None = None,
                  grad_accum: int = 1, activation_bytes: int = 4, shards: int = 1,
                  trainable_fraction: float = 1.0) -> MemoryNeed:
    """Lower bound of the memory one rank needs to train ``config`` on micro-batches of ``batch_size`` rows.

    ``seq_len`` is the row (encoder) length, ``target_len`` the decoder length of an encoder-decoder;
    ``shards`` splits weights, gradients and optimizer state (FSDP2); ``trainable_fraction`` < 1 for LoRA.
    """
    weights = weights_bytes(config) // shards
    trainable = int(weights * trainable_fraction)
    if config.arch == "encoder_decoder":
        t = target_len or seq_len
        elements = (seq_len * config.encoder_layers * _per_token_layer(config, cross=False)
                    + t * config.n_layers * _per_token_layer(config, cross=True) + seq_len * config.n_layers * 2
                    * config.kv_heads * config.head_dim_)
        tokens = seq_len + t
    else:
        elements = seq_len * config.n_layers * _per_token_layer(config, cross=False)
        tokens = seq_len
    activations = batch_size * elements * activation_bytes + grad_accum * batch_size * tokens * 3 * 8
    return MemoryNeed(weights=weights, gradients=trainable, optimizer=2 * trainable, activations=activations)


def check_fits(need: MemoryNeed, budget: MemoryBudget | None, what: str, hint: str) -> None:
    """``ConfigError`` (one line: what needs how much, what there is, ``hint``) when ``need`` exceeds the
    budget's total memory. Nothing happens when the budget is unknown or ``UNIMASK_SKIP_MEMORY_CHECK`` is set."""
    if budget is None or os.environ.get("UNIMASK_SKIP_MEMORY_CHECK", "") not in ("", "0"):
        return
    if need.total <= budget.total:
        return
    free = f", {format_bytes(budget.available)} free" if budget.available is not None else ""
    raise ConfigError(f"{what} needs at least {format_bytes(need.total)} of memory ({need.describe()}), but "
                      f"{budget.where} is {format_bytes(budget.total)}{free}; {hint} "
                      "(UNIMASK_SKIP_MEMORY_CHECK=1 skips this check)")


def check_model_fits(config: ModelConfig, what: str, device: str = "cpu", extra_bytes: int = 0) -> None:
    """Refuse to build ``config`` (fp32 weights in RAM, then on ``device``) where its weights cannot fit."""
    need = MemoryNeed(weights=weights_bytes(config), activations=extra_bytes)
    hint = "use a smaller model (d_model, n_layers, d_ff, vocab_size) or a machine with more memory"
    check_fits(need, machine_memory("cpu"), what, hint)
    if resolve_device(device).startswith("cuda"):
        check_fits(MemoryNeed(weights=weights_bytes(config, 2)), machine_memory(device), what, hint)  # bf16 at least


__all__ = ["MemoryBudget", "MemoryNeed", "check_fits", "check_model_fits", "format_bytes", "machine_memory",
           "resolve_device", "training_need", "weights_bytes"]
