"""Training checkpoints: everything needed to continue a run exactly, and nothing pickled.

``<out_dir>/checkpoint-<step>/`` holds

- ``model/``: ``config.json``, ``model.safetensors``, ``tokenizer.json`` (loadable by ``unimask.load_model``);
- ``optimizer.safetensors`` (AdamW moments and step counts, keyed ``<parameter name>::<key>``) and
  ``optimizer.json`` (parameter groups);
- ``rng.safetensors`` (torch CPU/CUDA generator states per rank);
- ``trainer_state.json``: step, schedule, data positions per rank, Python/NumPy RNG states, counters.

A checkpoint is written under a temporary name and renamed into place, so a crash never leaves a
half-written ``checkpoint-<step>``; only the last ``keep_last`` are kept.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from unimask.checkpoint import CONFIG, find_model_dir, save_tensors
from unimask.config import ModelConfig
from unimask.errors import CheckpointError

FORMAT = 1
STATE = "trainer_state.json"
OPTIM_TENSORS = "optimizer.safetensors"
OPTIM_JSON = "optimizer.json"
RNG = "rng.safetensors"
MODEL_DIR = "model"
_NAME = re.compile(r"^checkpoint-(\d+)$")


# Locating checkpoints ----------------------------------------------------------------------------------

def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete ``checkpoint-<step>`` directories of a run, oldest first."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = []
    for child in out.iterdir():
        match = _NAME.match(child.name)
        if match and (child / STATE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def resolve_resume(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its latest checkpoint)."""
    path = Path(path)
    if (path / STATE).is_file():
        return path
    found = list_checkpoints(path)
    if found:
        return found[-1][1]
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory to resume from")
    raise CheckpointError(f"{path}: holds no training checkpoint (checkpoint-<step>/{STATE}); start without --resume")


def resolve_model_dir(path: str | Path) -> Path:
    """For ``init_from``: a model directory, a training checkpoint or a run directory (latest checkpoint)."""
    found = find_model_dir(path)
    if (found / CONFIG).is_file():
        return found
    if not Path(path).exists():
        raise CheckpointError(f"init_from {path}: no such directory")
    raise CheckpointError(f"init_from {path}: no {CONFIG} here, in {MODEL_DIR}/ or in a checkpoint-<step>/")


def prune_checkpoints(out_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints; returns the deleted paths."""
    found = list_checkpoints(out_dir)
    doomed = [path for _, path in found[:-keep_last]] if keep_last > 0 else []
    for path in doomed:
        shutil.rmtree(path)
    return doomed


# RNG states ----------------------------------------------------------------------------------------------

def capture_rng() -> dict[str, Any]:
    """This process's generators: torch (CPU, CUDA) as byte lists, Python and NumPy as JSON."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _rng_to_files(per_rank: list[dict[str, Any]]) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    tensors: dict[str, Tensor] = {}
    rest = []
    for rank, state in enumerate(per_rank):
        tensors[f"rank{rank}.torch"] = torch.tensor(state["torch"], dtype=torch.uint8)
        for i, cuda in enumerate(state.get("cuda", [])):
            tensors[f"rank{rank}.cuda{i}"] = torch.tensor(cuda, dtype=torch.uint8)
        rest.append({"python": state["python"], "numpy": state["numpy"], "n_cuda": len(state.get("cuda", []))})
    return tensors, rest


def _rng_from_files(tensors: dict[str, Tensor], rest: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for rank, state in enumerate(rest):
        item = {"torch": tensors[f"rank{rank}.torch"].tolist(), "python": state["python"], "numpy": state["numpy"]}
        if state.get("n_cuda"):
            item["cuda"] = [tensors[f"rank{rank}.cuda{i}"].tolist() for i in range(state["n_cuda"])]
        out.append(item)
    return out


# Optimizer state <-> safetensors + JSON ------------------------------------------------------------------

def optimizer_to_files(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split a name-keyed optimizer state dict into tensors and a JSON document."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{name}::{key}"] = value.detach().cpu()
            else:
                scalars.setdefault(name, {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_files(tensors: dict[str, Tensor], doc: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        name, _, entry = key.rpartition("::")
        state.setdefault(name, {})[entry] = value
    for name, entries in doc.get("scalars", {}).items():
        state.setdefault(name, {}).update(entries)
    groups = []
    for group in doc["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# Save / load ---------------------------------------------------------------------------------------------

def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def save_checkpoint(out_dir: str | Path, step: int, *, model_state: dict[str, Tensor], model_config: ModelConfig,
                    tokenizer: Any, optimizer_state: dict[str, Any], rng: list[dict[str, Any]],
                    trainer_state: dict[str, Any], extra: Callable[[Path], Any] | None = None) -> Path:
    """Write ``checkpoint-<step>`` atomically (temporary directory, then rename). Rank 0 only.
    ``extra(folder)`` writes more files into the checkpoint before it is renamed into place (a LoRA
    adapter in peft's format goes to ``adapter/``)."""
    out = Path(out_dir)
    final = out / f"checkpoint-{step}"
    if final.exists():
        raise CheckpointError(f"{final} already exists; it is never overwritten (use another out_dir)")
    tmp = out / f".tmp-checkpoint-{step}-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        model_dir = tmp / MODEL_DIR
        model_dir.mkdir(parents=True)
        weights = dict(model_state)
        if model_config.tie_embeddings:
            weights.pop("lm_head.weight", None)
        save_tensors(weights, model_dir / "model.safetensors", metadata={"format": "pt", "library": "unimask"})
        (model_dir / CONFIG).write_text(model_config.to_json() + "\n", encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save(model_dir)
        tensors, doc = optimizer_to_files(optimizer_state)
        save_tensors(tensors, tmp / OPTIM_TENSORS)
        _write_json(tmp / OPTIM_JSON, doc)
        rng_tensors, rng_rest = _rng_to_files(rng)
        save_tensors(rng_tensors, tmp / RNG)
        _write_json(tmp / STATE, {**trainer_state, "format": FORMAT, "step": step, "rng": rng_rest})
        if extra is not None:
            extra(tmp)
        os.replace(tmp, final)
    except OSError as exc:  # a full disk, a lost mount: no half checkpoint stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"{final}: could not be written ({exc.strerror or exc}); earlier checkpoints are "
                              "intact") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@dataclass
class TrainCheckpoint:
    """A loaded training checkpoint (tensors on CPU)."""

    path: Path
    step: int
    model_dir: Path
    model_config: ModelConfig
    optimizer_state: dict[str, Any]
    rng: list[dict[str, Any]]
    state: dict[str, Any]


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open is no dict
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: truncated or not a safetensors file ({exc})") from None


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def load_checkpoint(path: str | Path) -> TrainCheckpoint:
    """Read a training checkpoint written by ``save_checkpoint`` (weights are loaded by the caller)."""
    from unimask.checkpoint import load_config

    path = resolve_resume(path)
    state = _read_json(path / STATE)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path / STATE}: checkpoint format {state.get('format')!r}, expected {FORMAT}")
    optimizer = optimizer_from_files(_read_safetensors(path / OPTIM_TENSORS), _read_json(path / OPTIM_JSON))
    rng = _rng_from_files(_read_safetensors(path / RNG), state.pop("rng"))
    model_dir = path / MODEL_DIR
    return TrainCheckpoint(path=path, step=int(state["step"]), model_dir=model_dir,
                           model_config=load_config(model_dir), optimizer_state=optimizer, rng=rng, state=state)


def config_difference(saved: ModelConfig, wanted: ModelConfig) -> str | None:
    """The first field in which two model configs differ, as ``name: saved -> wanted``, or None."""
    a, b = saved.to_dict(), wanted.to_dict()
    for key in a:
        if a[key] != b.get(key):
            return f"{key}: {a[key]!r} in the checkpoint, {b.get(key)!r} in the run config"
    return None
