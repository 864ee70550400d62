"""Pick the training precision from what the machine does, not from what it is called.

On a GPU bf16 autocast is the default. On a CPU it depends: with AMX or AVX-512-BF16 a bf16 matmul can be
several times faster than fp32, while a CPU with only AVX2 emulates bf16 and is many times slower. So a
short probe times both on the model's own width and picks bf16 only when it is clearly faster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PrecisionProbe:
    """What the probe saw: the CPU's capability string, fp32 and bf16 GFLOP/s, and the choice."""

    capability: str
    fp32_gflops: float
    bf16_gflops: float
    choice: str


def _gflops(dtype: torch.dtype, n: int, repeats: int) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2.0 * n ** 3 * repeats / max(time.perf_counter() - start, 1e-9) / 1e9


def probe_cpu(n: int = 512, repeats: int = 4, speedup: float = 1.3) -> PrecisionProbe:
    """Time fp32 and bf16 matmuls of ``n x n``; bf16 when it is at least ``speedup`` times faster.
    The bf16 timing is skipped (0) when the CPU reports no AVX-512 (bf16 is then emulated and slow)."""
    capability = str(torch.backends.cpu.get_cpu_capability())
    fp32 = _gflops(torch.float32, n, repeats)
    bf16 = _gflops(torch.bfloat16, n, repeats) if "AVX512" in capability.upper() else 0.0
    return PrecisionProbe(capability, fp32, bf16, "bf16" if bf16 >= speedup * fp32 else "fp32")


def pick_precision(requested: str, device: str) -> tuple[str, PrecisionProbe | None]:
    """``auto`` -> bf16 on CUDA, the probe's choice on CPU; ``fp32``/``bf16`` are kept as asked."""
    if requested != "auto":
        return requested, None
    if device.startswith("cuda"):
        return "bf16", None
    probe = probe_cpu()
    return probe.choice, probe


__all__ = ["PrecisionProbe", "pick_precision", "probe_cpu"]
