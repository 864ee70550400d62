"""Training checkpoints: everything needed to continue a run exactly, and nothing pickled.

``<out_dir>/checkpoint-<step>/`` holds

- ``model/``: ``config.json``, ``model.safetensors``, ``tokenizer.json`` (loadable by ``unimask.load_model``);
- ``optimizer.safetensors`` (AdamW moments and step counts, keyed ``<parameter name>::<key>``) and
  ``optimizer.json`` (parameter groups);
- ``rng.safetensors`` (torch CPU/CUDA generator states per rank);
- ``trainer_state.json``: step, schedule, data positions per rank, Python/NumPy RNG states, counters, the
  numerics guard's verdict (``numerics.healthy``) and the sha256 of every other file (``checksums``).

A checkpoint is written under a temporary name (``.tmp-checkpoint-<step>-<pid>``), synced and renamed into
place, so a crash never leaves a half-written ``checkpoint-<step>``; temporaries left by a killed process are
removed at the next start and after the next successful save. Loading verifies the checksums; resuming a
run directory falls back to the newest checkpoint that verifies, and the ones it skipped are renamed
``checkpoint-<step>.corrupt-<time>`` (never deleted). Only the last ``keep_last`` are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import time
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
_TMP = re.compile(r"^\.tmp-checkpoint-\d+-(\d+)$")
CHECKSUMS = "checksums"
# Test hook: seconds to sleep in the middle of a checkpoint write (after the weights, before the rename),
# so that a test's SIGKILL lands inside the write. Unset (the normal case) it does nothing.
SLOW_WRITE_ENV = "UNIMASK_TEST_CHECKPOINT_SLEEP"


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


def checkpoint_dirs(out_dir: str | Path) -> list[tuple[int, Path]]:
    """Every ``checkpoint-<step>`` directory of a run, complete or not, oldest first."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), child) for child in out.iterdir() if (m := _NAME.match(child.name)) and child.is_dir()]
    return sorted(found)


def move_aside(path: Path, why: str) -> Path:
    """Rename a checkpoint out of the way (``checkpoint-7`` -> ``checkpoint-7.<why>-<time>``); never deletes."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, k = path.with_name(f"{path.name}.{why}-{stamp}"), 1
    while target.exists():
        target, k = path.with_name(f"{path.name}.{why}-{stamp}.{k}"), k + 1
    os.replace(path, target)
    return target


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def clean_temporaries(out_dir: str | Path) -> list[Path]:
    """Remove ``.tmp-checkpoint-*`` directories left by a killed process (not those of a live one)."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    stale = [c for c in out.iterdir() if (m := _TMP.match(c.name)) and c.is_dir() and not _alive(int(m.group(1)))]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


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
        verify_model_files(found)
        return found
    if not Path(path).exists():
        raise CheckpointError(f"init_from {path}: no such directory")
    raise CheckpointError(f"init_from {path}: no {CONFIG} here, in {MODEL_DIR}/ or in a checkpoint-<step>/")


def prune_checkpoints(out_dir: str | Path, keep_last: int, protect_before: int | None = None) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints; returns the deleted paths. With
    ``protect_before``, the newest checkpoint of an earlier step is kept too (the last one known good)."""
    found = list_checkpoints(out_dir)
    doomed = [path for _, path in found[:-keep_last]] if keep_last > 0 else []
    if protect_before is not None:
        earlier = [path for step, path in found if step < protect_before]
        if earlier and earlier[-1] in doomed:
            doomed.remove(earlier[-1])
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
        if extra is not None:
            extra(tmp)
        if os.environ.get(SLOW_WRITE_ENV):
            time.sleep(float(os.environ[SLOW_WRITE_ENV]))
        sums = {name: _sha256(tmp / name) for name in _files_of(tmp)}
        _write_json(tmp / STATE, {**trainer_state, "format": FORMAT, "step": step, "rng": rng_rest, CHECKSUMS: sums})
        _sync_tree(tmp)
        os.replace(tmp, final)
        _sync_dir(out)
    except OSError as exc:  # a full disk, a lost mount: no half checkpoint stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"{final}: could not be written ({exc.strerror or exc}); earlier checkpoints are "
                              "intact") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    clean_temporaries(out)  # what a killed earlier write left behind
    return final


def _files_of(root: Path) -> list[str]:
    """Every file below ``root`` except the trainer state, as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != STATE)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system syncs directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sync_tree(root: Path) -> None:
    """fsync every file and directory of a checkpoint, so a power cut after the rename cannot leave it empty."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
        else:
            _sync_dir(path)
    _sync_dir(root)


def verify_checkpoint(path: str | Path) -> str | None:
    """Why ``path`` cannot be resumed (missing trainer state, a missing file, a checksum that does not match,
    marked unhealthy by the numerics guard), or None when it verifies. Checkpoints written before checksums
    existed verify by their trainer state alone."""
    path = Path(path)
    if not (path / STATE).is_file():
        return f"no {STATE} (an incomplete checkpoint)"
    try:
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return f"{STATE} is not valid JSON"
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return f"{STATE}: not a format-{FORMAT} trainer state"
    for name, want in (state.get(CHECKSUMS) or {}).items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if _sha256(file) != want:
            return f"{name} does not match its sha256 checksum (corrupted or truncated)"
    numerics = state.get("numerics") or {}
    if numerics.get("healthy") is False:
        return f"marked unhealthy by the numerics check ({numerics.get('reason', 'no reason recorded')})"
    return None


def verify_model_files(model_dir: Path) -> None:
    """A training checkpoint's ``model/`` checked against the checksums in its trainer state (if any)."""
    state_path = model_dir.parent / STATE
    if model_dir.name != MODEL_DIR or not state_path.is_file():
        return
    try:
        sums = json.loads(state_path.read_text(encoding="utf-8")).get(CHECKSUMS) or {}
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, AttributeError):
        return  # load_checkpoint says what is wrong with the trainer state itself
    for name, want in sums.items():
        file = model_dir.parent / name
        if name.startswith(f"{MODEL_DIR}/") and file.is_file() and _sha256(file) != want:
            raise CheckpointError(f"{model_dir.parent / name}: does not match its sha256 checksum in {state_path} "
                                      "(corrupted or truncated); use an earlier checkpoint")


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
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise CheckpointError(f"{path / STATE}: checkpoint format {found!r}, expected {FORMAT}")
    problem = verify_checkpoint(path)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}; resume from an earlier checkpoint")
    optimizer = optimizer_from_files(_read_safetensors(path / OPTIM_TENSORS), _read_json(path / OPTIM_JSON))
    rng = _rng_from_files(_read_safetensors(path / RNG), state.pop("rng"))
    model_dir = path / MODEL_DIR
    return TrainCheckpoint(path=path, step=int(state["step"]), model_dir=model_dir,
                           model_config=load_config(model_dir), optimizer_state=optimizer, rng=rng, state=state)


def load_latest_good(out_dir: str | Path) -> tuple[TrainCheckpoint, list[tuple[Path, str]]]:
    """The newest checkpoint of a run that loads and verifies, and the newer ones skipped (path, why)."""
    skipped: list[tuple[Path, str]] = []
    for _, path in reversed(checkpoint_dirs(out_dir)):
        try:
            return load_checkpoint(path), skipped
        except CheckpointError as exc:
            reason = str(exc)
            skipped.append((path, reason.removeprefix(f"{path}: ").removesuffix("; resume from an earlier checkpoint")))
    if skipped:
        raise CheckpointError(f"{out_dir}: no checkpoint verifies ({skipped[0][0].name}: {skipped[0][1]}); start "
                              "again in another out_dir, or with --overwrite (the old files are moved aside)")
    raise CheckpointError(f"{out_dir}: holds no training checkpoint (checkpoint-<step>/{STATE}); start without "
                          "--resume")


def config_difference(saved: ModelConfig, wanted: ModelConfig) -> str | None:
    """The first field in which two model configs differ, as ``name: saved -> wanted``, or None."""
    a, b = saved.to_dict(), wanted.to_dict()
    for key in a:
        if a[key] != b.get(key):
            return f"{key}: {a[key]!r} in the checkpoint, {b.get(key)!r} in the run config"
    return None
