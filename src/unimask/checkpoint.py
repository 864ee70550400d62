"""Model checkpoints: a directory with ``config.json`` and ``model.safetensors``. Nothing is ever unpickled.

Large models may be sharded: ``model.safetensors.index.json`` maps tensor names to shard files.
Files are written under temporary names and renamed into place, so a failed save never leaves a half file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from unimask.config import ModelConfig
from unimask.errors import CheckpointError, ConfigError

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
CONFIG = "config.json"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_tensors(tensors: dict[str, Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors file written atomically; tensors are made contiguous and distinct."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    clean: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, value in tensors.items():
        value = value.detach().contiguous()
        if value.data_ptr() in seen:  # safetensors refuses shared storage
            value = value.clone()
        seen.add(value.data_ptr())
        clean[name] = value
    save_file(clean, str(tmp), metadata=metadata or {})
    os.replace(tmp, path)


def model_state(model: torch.nn.Module) -> dict[str, Tensor]:
    """The state dict to store: a tied output head is stored once (as the embedding)."""
    state = dict(model.state_dict())
    config = getattr(model, "config", None)
    if config is not None and config.tie_embeddings:
        state.pop("lm_head.weight", None)
    return state


def save_model(model: torch.nn.Module, directory: str | Path) -> Path:
    """Save ``config.json`` and ``model.safetensors`` in ``directory`` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(model_state(model), directory / WEIGHTS, metadata={"format": "pt", "library": "unimask"})
    _atomic_write_text(directory / CONFIG, model.config.to_json() + "\n")  # type: ignore[union-attr]
    return directory


def read_tensors(directory: str | Path) -> dict[str, Tensor]:
    """All tensors of ``model.safetensors`` or of the shards listed in ``model.safetensors.index.json``."""
    directory = Path(directory)
    if (directory / WEIGHTS).is_file():
        files = [directory / WEIGHTS]
    elif (directory / INDEX).is_file():
        try:
            index = json.loads((directory / INDEX).read_text(encoding="utf-8"))
            files = [directory / name for name in sorted(set(index["weight_map"].values()))]
        except (json.JSONDecodeError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{directory / INDEX}: not a valid safetensors index ({exc})") from None
    else:
        raise CheckpointError(f"{directory}: no {WEIGHTS} (or {INDEX}); is this a unimask checkpoint directory?")
    tensors: dict[str, Tensor] = {}
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"{file}: shard listed in the index is missing")
        try:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open is not iterable
                    tensors[key] = f.get_tensor(key)
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{file}: truncated or not a safetensors file ({exc})") from None
    return tensors


def load_state_into(model: torch.nn.Module, tensors: dict[str, Tensor], source: str = "checkpoint") -> None:
    """Copy tensors into the model, naming any missing, unexpected or mis-shaped tensor."""
    expected = model_state(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: missing tensor '{missing[0]}' ({len(missing)} missing in all)")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensor '{unexpected[0]}' ({len(unexpected)} unexpected in all)")
    for name, target in expected.items():
        if target.is_floating_point() and not tensors[name].is_floating_point():
            raise CheckpointError(f"{source}: tensor '{name}' is {tensors[name].dtype}, not floating point; "
                                  "this is not a unimask or Hugging Face weight file")
        if tuple(tensors[name].shape) != tuple(target.shape):
            raise CheckpointError(
                f"{source}: tensor '{name}' has shape {tuple(tensors[name].shape)}, "
                f"the config needs {tuple(target.shape)}"
            )
    model.load_state_dict(tensors, strict=False)
    if getattr(model, "config", None) is not None and model.config.tie_embeddings:  # type: ignore[union-attr]
        model.tie_weights()  # type: ignore[operator]


def find_model_dir(path: str | Path) -> Path:
    """The model directory behind ``path``: itself, a training checkpoint's ``model/``, or a run
    directory's latest ``checkpoint-<step>/model``. Returns ``path`` unchanged when none fits (the loader
    then says what is missing)."""
    path = Path(path)
    if (path / CONFIG).is_file():
        return path
    if (path / "model" / CONFIG).is_file():
        return path / "model"
    if path.is_dir():
        steps = []
        for child in path.iterdir():
            match = re.fullmatch(r"checkpoint-(\d+)", child.name)
            if match and (child / "model" / CONFIG).is_file():
                steps.append((int(match.group(1)), child / "model"))
        if steps:
            return max(steps)[1]
    return path


def load_config(directory: str | Path) -> ModelConfig:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    if not (directory / CONFIG).is_file():
        raise CheckpointError(f"{directory}: no {CONFIG}; a unimask checkpoint holds {CONFIG} and {WEIGHTS}")
    try:
        raw = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        raw = None  # ModelConfig.load below says what is wrong
    if isinstance(raw, dict) and ("model_type" in raw or "architectures" in raw):
        raise CheckpointError(f"{directory}: a Hugging Face checkpoint, not a unimask one; convert it first: "
                              f"unimask convert --from-hf {directory} --out DIR")
    try:
        return ModelConfig.load(directory / CONFIG)
    except ConfigError as exc:  # the message already names the file
        raise CheckpointError(str(exc)) from None


def load_model(directory: str | Path, *, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> torch.nn.Module:
    """Build the model described by ``directory/config.json`` and load its safetensors weights.

    A training checkpoint (``checkpoint-<step>/model``) or a run directory (its latest checkpoint) works too.
    """
    from unimask.memory import check_model_fits
    from unimask.models import build_model

    directory = find_model_dir(directory)
    config = load_config(directory)
    try:
        stored = (directory / WEIGHTS).stat().st_size if (directory / WEIGHTS).is_file() else 0
    except OSError:
        stored = 0
    try:  # before the weights are read or the model built: both allocate
        check_model_fits(config, f"{directory}: the model", device=str(device), extra_bytes=stored)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    if (directory.parent / "trainer_state.json").is_file():  # a training checkpoint: check its sha256 sums
        from unimask.train.checkpoint import verify_model_files

        verify_model_files(directory)
    tensors = read_tensors(directory)
    model = build_model(config)
    if not set(model_state(model)) & set(tensors):
        found = f"e.g. '{sorted(tensors)[0]}'" if tensors else "no tensors at all"
        raise CheckpointError(f"{directory}: none of the model's tensors are there ({found}); not a unimask "
                              "checkpoint (import a Hugging Face model with `unimask convert --from-hf DIR --out DIR`)")
    load_state_into(model, tensors, source=str(directory))
    model.to(device=device, dtype=dtype)
    return model.eval()
