"""Pick the training precision from what the machine does with this model, not from what it is called.

On a GPU bf16 autocast is the default. On a CPU it depends on the CPU and on the model: with AMX or
AVX-512-BF16 a bf16 matmul can be several times faster than fp32 (an AVX-512-BF16 EPYC: about 4x at the
shapes of a d_model-128 model), while a CPU with only AVX2 emulates bf16 and is many times slower; and a
step is more than its matmuls: autocast adds casts, and norms and softmax stay in fp32, so the matmul
speed-up is an upper bound that a small model's step can fall far short of.

So ``auto`` decides in two stages: a short matmul probe (``probe_cpu``) rules bf16 out where the CPU has no
fast bf16 at all (without timing a single emulated bf16 step, which could take minutes), then
``probe_step`` times forward and backward of the model itself on a real batch in both precisions,
interleaved, and picks bf16 only when the step is clearly faster. The probe changes nothing: weights,
gradients, the training flag and every random stream are as they were.

A step timing is noisy, and a choice that flipped between two runs of one config would change their numbers,
so ``remembered`` keeps each decision in the cache (``<cache>/precision/<key>.json``, keyed by the machine,
the torch threads, the model config and the batch shapes): the same run config on the same machine always
trains in the same precision. Deleting that folder measures again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

STEP_SPEEDUP = 1.15  # bf16 only when a step is at least this much faster: a near tie keeps fp32's numerics


@dataclass(frozen=True)
class PrecisionProbe:
    """What the probe saw: the CPU's capability string, fp32 and bf16 matmul GFLOP/s, the model's step
    seconds in each precision (None when the matmul probe already ruled bf16 out), and the choice."""

    capability: str
    fp32_gflops: float
    bf16_gflops: float
    choice: str
    fp32_step_s: float | None = None
    bf16_step_s: float | None = None
    remembered: str | None = None  # the cache file the decision was read from (None: measured just now)

    def summary(self) -> str:
        """One line: what was measured and what it chose."""
        head = f"{self.capability}, matmul fp32 {self.fp32_gflops:.0f} / bf16 {self.bf16_gflops:.0f} GFLOP/s"
        if self.fp32_step_s is None or self.bf16_step_s is None:
            line = f"{self.choice} ({head}: no fast bf16 on this CPU)"
        else:
            speed = self.fp32_step_s / max(self.bf16_step_s, 1e-12)
            line = (f"{self.choice} ({head}; this model's step: bf16 {speed:.2f}x fp32's speed, bf16 needs "
                    f"{STEP_SPEEDUP:.2f}x)")
        if self.remembered:
            line += f"; measured on this machine before, kept in {self.remembered} (delete it to measure again)"
        return line

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def choose(fp32_s: float, bf16_s: float, speedup: float = STEP_SPEEDUP) -> str:
    """``bf16`` when a bf16 step takes at most ``1 / speedup`` of an fp32 one, else ``fp32``."""
    return "bf16" if fp32_s >= speedup * bf16_s else "fp32"


@contextlib.contextmanager
def _untouched(model: nn.Module) -> Iterator[None]:
    """Run a probe on ``model`` and leave no trace: random streams, gradients and the training flag."""
    was_training = model.training
    grads = {name: p.grad for name, p in model.named_parameters()}
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            for name, p in model.named_parameters():
                p.grad = grads[name]
            model.train(was_training)


def _step_seconds(model: nn.Module, batch: dict[str, Tensor], precision: str) -> float:
    ctx = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
           else contextlib.nullcontext())
    start = time.perf_counter()
    with ctx:
        out = model(**batch)
    out.loss.backward()
    for p in model.parameters():
        p.grad = None
    return time.perf_counter() - start


def probe_step(model: nn.Module, batch: dict[str, Tensor], *, repeats: int = 2,
               speedup: float = STEP_SPEEDUP, cpu: PrecisionProbe | None = None,
               timer: Callable[[nn.Module, dict[str, Tensor], str], float] | None = None) -> PrecisionProbe:
    """Choose fp32 or bf16 autocast for training ``model`` on this CPU.

    ``batch``: the keyword arguments of one training forward (its ``loss`` is backpropagated). After the
    matmul probe (``cpu``, measured here when not given) rules bf16 in, one warm-up step in each precision,
    then ``repeats`` interleaved timed steps of each; the fastest of each decides (``choose``). ``timer`` is
    the step timer (tests inject one).
    """
    cpu = cpu or probe_cpu()
    if cpu.choice != "bf16":
        return cpu
    time_step = timer or _step_seconds
    best = {"fp32": float("inf"), "bf16": float("inf")}
    with _untouched(model):
        model.train()
        for p in ("fp32", "bf16"):
            time_step(model, batch, p)  # warm-up: first-call allocations and kernel selection
        for _ in range(max(1, repeats)):
            for p in ("fp32", "bf16"):
                best[p] = min(best[p], time_step(model, batch, p))
    return PrecisionProbe(cpu.capability, cpu.fp32_gflops, cpu.bf16_gflops, choose(best["fp32"], best["bf16"], speedup),
                          fp32_step_s=best["fp32"], bf16_step_s=best["bf16"])


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (None or 0: as they are), then restore the previous count."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def probe_model(config: Any, batch_size: int, seq_len: int, *, threads: int | None = None,
                seed: int = 0) -> PrecisionProbe:
    """``probe_step`` on a fresh decoder-only model of ``config`` (a ``ModelConfig``) and random tokens
    ``(batch_size, seq_len)``, with ``threads`` torch threads (as the runs will have). For choosing one
    precision for several runs of the same size (the comparison study)."""
    from unimask.models import build_model

    def measure() -> PrecisionProbe:
        cpu = probe_cpu()
        if cpu.choice != "bf16":
            return cpu
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(config)
            ids = torch.randint(4, config.vocab_size, (batch_size, seq_len))
            return probe_step(model, {"input_ids": ids, "labels": ids}, cpu=cpu)

    with torch_threads(threads):
        return remembered({"model": config.to_dict(), "batch": [batch_size, seq_len], "kind": "decoder-lm"}, measure)


def _machine() -> dict[str, Any]:
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "capability": str(torch.backends.cpu.get_cpu_capability()), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "version": 1}


def remembered(what: dict[str, Any], measure: Callable[[], PrecisionProbe]) -> PrecisionProbe:
    """The decision of an earlier probe of ``what`` (JSON-able: a model config, batch shapes) on this
    machine, or ``measure()`` now, kept for next time. An unreadable entry is measured again."""
    from unimask.data.cache import atomic_write_text, cache_dir

    blob = json.dumps({"what": what, "machine": _machine()}, sort_keys=True, default=str)
    path = cache_dir() / "precision" / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"
    with contextlib.suppress(OSError, ValueError, TypeError):
        found = json.loads(path.read_text())
        if found.get("key") == blob and found["probe"]["choice"] in ("fp32", "bf16"):
            return PrecisionProbe(**{**found["probe"], "remembered": str(path)})
    probe = measure()
    with contextlib.suppress(OSError):  # a read-only cache only costs a new probe next time
        atomic_write_text(path, json.dumps({"key": blob, "probe": probe.to_dict()}, indent=1))
    return probe


def pick_precision(requested: str, device: str, probe: Callable[[], PrecisionProbe] | None = None
                   ) -> tuple[str, PrecisionProbe | None]:
    """``auto`` -> bf16 on CUDA, on CPU the choice of ``probe`` (a model's ``probe_step``; the matmul probe
    alone when none is given); ``fp32``/``bf16`` are kept as asked."""
    if requested != "auto":
        return requested, None
    if device.startswith("cuda"):
        return "bf16", None
    found = (probe or probe_cpu)()
    return found.choice, found


__all__ = ["PrecisionProbe", "choose", "pick_precision", "probe_cpu", "probe_model", "probe_step", "remembered",
           "torch_threads"]
