"""Shared helpers of the benchmark scripts: machine and version facts, interleaved timing, the measured
matmul peak, peak-memory probes and writing results (Markdown + JSON) without overwriting earlier runs.

Imported by ``bench_vs_hf.py`` and ``gpu_bench.py`` from the same folder (run them as
``python benchmarks/<script>.py``); not part of the library and never part of the test run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: str) -> None:
    """Wait for queued GPU work, so that wall-clock time covers it (no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cpu_model_name() -> str:
    """The ``model name`` line of /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """``<sha>`` of the checkout this runs from, ``<sha>-dirty`` with uncommitted changes, or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def machine_info(device: str) -> dict[str, Any]:
    """Where and with what the numbers were measured: CPU, capability, threads, GPU, versions, date."""
    import unimask

    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model_name(), "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device,
        "python": platform.python_version(), "torch": torch.__version__, "unimask": unimask.__version__,
        "unimask_commit": git_commit(), "platform": platform.platform(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One Markdown line summarising ``machine_info``."""
    where = f"GPU {info['gpu']} (CUDA {info['cuda']}), " if "gpu" in info else ""
    return (f"{info['date']}; {where}CPU {info['cpu']} ({info['cpu_capability']}, {info['cpu_count']} cores), "
            f"{info['torch_threads']} torch threads; torch {info['torch']}, transformers {info['transformers']}, "
            f"unimask {info['unimask']} ({info['unimask_commit']}); Python {info['python']}")


def matmul_peak(device: str = "cpu", dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] | None = None,
                seconds: float = 1.0) -> float:
    """Best FLOP/s of square ``a @ b`` (2 n^3 FLOPs each) over a few sizes, measured here (as
    ``bench_train.matmul_peak``, on any device and dtype). On CUDA TF32 stays as torch sets it (off)."""
    if sizes is None:
        sizes = (2048, 4096, 8192) if device.startswith("cuda") else (512, 1024, 2048)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        for _ in range(3):
            a @ b  # warm up
        sync(device)
        reps, start = 0, time.perf_counter()
        while reps == 0 or time.perf_counter() - start < seconds / len(sizes):  # at least one
            a @ b
            reps += 1
            if device.startswith("cuda") and reps % 8 == 0:
                sync(device)
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: str,
                ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Wall-clock seconds of every function, ``repeats`` times each, alternating between them in one
    process (A B C, then C B A, ...) so that a slow spell of a shared machine hits all alike.

    ``warmup`` untimed calls of each come first (allocator, caches, lazy initialisation). Returns the
    times per name and each function's last return value.
    """
    names = list(fns)
    last: dict[str, Any] = {}
    for _ in range(warmup):
        for name in names:
            last[name] = fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            sync(device)
            start = time.perf_counter()
            last[name] = fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times, last


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_peak_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def run_probe(script: str, flag: str, spec: dict[str, Any], timeout: float = 1800.0) -> dict[str, Any]:
    """Run ``python script flag JSON`` in a fresh process and return the JSON its last stdout line holds,
    or ``{"error": ...}`` when it failed (a probe never stops the benchmark)."""
    try:
        done = subprocess.run([sys.executable, script, flag, json.dumps(spec)], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def write_results(stem: str, markdown: str, data: dict[str, Any], out_dir: Path = RESULTS) -> tuple[Path, Path]:
    """Write ``<stem>-<UTC time>.md`` and ``.json`` under ``out_dir``; an existing file is never replaced."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = out_dir / f"{stem}-{stamp}"
    n = 1
    while base.with_suffix(".md").exists() or base.with_suffix(".json").exists():
        base = out_dir / f"{stem}-{stamp}-{n}"
        n += 1
    md, js = base.with_suffix(".md"), base.with_suffix(".json")
    md.write_text(markdown, encoding="utf-8")
    js.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return md, js


def fmt_rate(x: float | None) -> str:
    """Tokens/s for a table cell."""
    if x is None or x != x:  # None or NaN
        return "n/a"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def tune_malloc(threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds (``mallopt``) for this process, so that freed large buffers
    stay in the heap instead of being unmapped and page-faulted in again by the next step (what jemalloc or
    tcmalloc do by design). Affects every library in the process alike. False where it is not glibc."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(-3, threshold)) and bool(libc.mallopt(-1, threshold))  # M_MMAP_, M_TRIM_THRESHOLD
