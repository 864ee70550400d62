"""TrainConfig: one typed run description for every family and objective.

A run config is YAML (or a mapping) with the sections below; ``--set key=value`` overrides any field with
a dotted key (``optimizer.lr=3e-4``, ``data.seq_len=64``, ``model.n_layers=4``). Unknown keys are refused
with a message that names them (and suggests the closest known key).

```yaml
model: tiny-causal            # a preset, or fields ({preset: tiny-causal, n_layers: 4} or {arch: ..., ...})
init_from: null               # or a checkpoint dir; then ``model`` holds overrides such as {arch: prefix}
objective: causal_lm          # or a mixture: {mixture: {causal_lm: 1, span_corruption: 1}}
data: {seq_len: 128, batch_size: 8}
optimizer: {lr: 1.0e-3, warmup_steps: 10, schedule: cosine, grad_accum: 1, clip_grad_norm: 1.0}
steps: 200
```
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from unimask.config import _Validated, unknown_key_error
from unimask.errors import ConfigError

Schedule = Literal["cosine", "wsd", "constant"]
Precision = Literal["auto", "fp32", "bf16"]
Parallel = Literal["none", "ddp", "fsdp2"]

# Sections whose sub-keys are checked by their own class later (ModelConfig, DataConfig, the objective).
FREE_SECTIONS = ("model", "data", "objective")
MAX_SEED = 2**32 - 1  # numpy's SeedSequence takes 0 .. 2**32 - 1 per word; torch a signed 64-bit number


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass
class OptimizerConfig(_Validated):
    """AdamW (Loshchilov & Hutter 2019) with linear warmup, then cosine decay (Loshchilov & Hutter 2017) or
    warmup-stable-decay (WSD; Hu et al. 2024, MiniCPM): constant, then a linear decay over the last
    ``decay_steps`` (default: 20% of the run). ``lr`` is the peak; the schedule ends at
    ``lr * min_lr_ratio``. ``grad_accum`` micro-batches make one optimizer step; ``clip_grad_norm``
    clips the global gradient norm (null = no clipping)."""

    _where = "optimizer"
    _field_prefix = "optimizer."

    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    schedule: Schedule = "cosine"
    warmup_steps: int = 0
    decay_steps: int | None = None
    grad_accum: int = 1
    clip_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        self._check_types()
        if self.lr <= 0:
            raise ConfigError(f"config field 'optimizer.lr' must be positive, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"config field 'optimizer.min_lr_ratio' must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"config field 'optimizer.{name}' must be in [0, 1), got {getattr(self, name)}")
        if self.eps <= 0 or self.weight_decay < 0:
            raise ConfigError("config fields 'optimizer.eps' (> 0) and 'optimizer.weight_decay' (>= 0) are "
                              "out of range")
        if self.warmup_steps < 0:
            raise ConfigError(f"config field 'optimizer.warmup_steps' must be >= 0, got {self.warmup_steps}")
        if self.decay_steps is not None and self.decay_steps < 0:
            raise ConfigError(f"config field 'optimizer.decay_steps' must be >= 0, got {self.decay_steps}")
        if self.grad_accum < 1:
            raise ConfigError(f"config field 'optimizer.grad_accum' must be >= 1, got {self.grad_accum}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ConfigError(f"config field 'optimizer.clip_grad_norm' must be positive or null, got "
                              f"{self.clip_grad_norm}")



@dataclass
class TrainConfig(_Validated):
    """One training run. See the module docstring for the YAML layout.

    ``model``: a preset name, or a mapping of ModelConfig fields (``preset`` picks a base). Without
    ``init_from`` the vocabulary size and special token ids come from the tokenizer unless set here.
    ``init_from``: a model or training checkpoint directory (or a run directory: its latest checkpoint);
    ``model`` then holds overrides, e.g. ``{arch: prefix}`` to continue a causal model as a prefix decoder
    with the UL2R mixture (Tay et al. 2022, "Transcending Scaling Laws with 0.1% Extra Compute").
    ``data``: a ``unimask.data.pipeline.DataConfig`` mapping; ``data.loss_on_targets_only: false`` puts loss on
    every token of a causal decoder's rows (T5's switch; ``unimask train --loss-on-all-tokens``).
    ``precision``: auto = bf16 autocast on CUDA; on a CPU bf16 only where a probe of this model's training
    step finds it clearly faster (``unimask.train.precision``), else fp32; a resumed run keeps its own.
    ``parallel``: ddp or fsdp2 under torchrun.
    ``eval_every``: held-out loss every N optimizer steps (0 = only at the end), on ``eval_batches``
    validation batches (``data.validation_fraction: 0`` trains on all the text and skips held-out loss).
    ``save_every``: checkpoint every N steps (0 = only at the end); ``keep_last`` of them are kept.
    ``out_dir`` must be empty or missing unless resuming or ``overwrite`` is true; ``overwrite`` moves the
    previous run's files aside (``.replaced-<time>/``) and deletes them only after the new run succeeded.
    """

    _where = "run config"

    model: str | dict[str, Any] | None = None
    init_from: str | None = None
    objective: str | dict[str, Any] = "causal_lm"
    lora: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    steps: int = 100
    precision: Precision = "auto"
    compile: bool = False
    device: str = "auto"
    parallel: Parallel = "none"
    eval_every: int = 50
    eval_batches: int = 8
    eval_at_start: bool = True
    save_every: int = 0
    keep_last: int = 2
    log_every: int = 1
    seed: int = 0
    out_dir: str = "runs/unimask"
    overwrite: bool = False
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.optimizer, dict):
            self.optimizer = OptimizerConfig.from_dict(self.optimizer)
        if not isinstance(self.optimizer, OptimizerConfig):
            raise ConfigError("config field 'optimizer': expected a mapping of optimizer fields")
        if self.data is None:
            self.data = {}
        self._check_types()
        for name in ("steps", "eval_batches", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config field '{name}' must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config field '{name}' must be >= 0, got {getattr(self, name)}")
        if self.keep_last < 1:
            raise ConfigError(f"config field 'keep_last' must be >= 1, got {self.keep_last}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"config field 'seed': {self.seed} is outside [0, {MAX_SEED}] (numpy's seed range); "
                              "choose a seed in that range")
        if not self.out_dir:
            raise ConfigError("config field 'out_dir' must name a directory")
        if self.init_from is not None and isinstance(self.model, str):
            raise ConfigError(
                f"config fields 'model' and 'init_from' clash: with init_from, 'model' holds overrides such as "
                f"{{arch: prefix}}, not a preset ('{self.model}')"
            )
        if self.device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", self.device):
            raise ConfigError(f"config field 'device': {self.device!r} is not auto, cpu, cuda or cuda:N")
        self._check_sections()
        self._check_memory()

    def _check_sections(self) -> None:
        """Refuse unknown or impossible keys in ``model``, ``data`` and ``objective`` now, not mid-run."""
        from unimask.config import ModelConfig, resolve_model_config
        from unimask.objectives import build_objective

        arch = None
        if self.init_from is None:
            try:
                arch = resolve_model_config(self.model if self.model is not None else "tiny-causal").arch
            except ConfigError as exc:
                raise ConfigError(f"model: {exc}") from None
        elif self.model:
            known = [f.name for f in dataclasses.fields(ModelConfig)]
            unknown = [k for k in self.model if k not in known]
            if unknown:
                raise unknown_key_error("model", unknown, known)
        data = self.data_config()
        if arch is not None:  # with init_from the arch is known once the checkpoint is read (the trainer checks)
            data.check_arch(arch)
        from unimask.finetune.batches import SupervisedSpec

        if SupervisedSpec.from_objective(self.objective) is None:
            try:
                build_objective(self.objective)
            except ConfigError as exc:
                raise ConfigError(str(exc) if str(exc).startswith("objective") else f"objective: {exc}") from None
        if self.lora is not None:
            from unimask.finetune.lora import LoraSpec

            LoraSpec.from_dict(self.lora)

    def _model_config(self) -> Any:
        """The ModelConfig this run will build, as far as the config alone tells (None when unknown)."""
        from unimask.config import resolve_model_config

        if self.init_from is None:
            return resolve_model_config(self.model if self.model is not None else "tiny-causal")
        from unimask.checkpoint import find_model_dir, load_config
        from unimask.errors import UnimaskError

        try:
            base = load_config(find_model_dir(self.init_from))
            return base.replace(**self.model) if self.model else base
        except UnimaskError:
            return None  # the trainer names what is wrong with init_from

    def _check_memory(self) -> None:
        """Refuse sizes that cannot fit in this machine's memory (or the GPU's), before anything is allocated."""
        import os

        from unimask.memory import check_fits, machine_memory, resolve_device, training_need

        model = self._model_config()
        if model is None:
            return
        data = self.data_config()
        device = resolve_device(self.device)
        cuda = device.startswith("cuda")
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        need = training_need(model, batch_size=data.batch_size, seq_len=data.seq_len, target_len=data.target_len,
                             grad_accum=self.optimizer.grad_accum,
                             activation_bytes=2 if cuda and self.precision != "fp32" else 4,
                             shards=world if self.parallel == "fsdp2" else 1,
                             trainable_fraction=0.0 if self.lora is not None else 1.0)
        hint = ("lower data.batch_size or data.seq_len" if need.activations > need.total // 2 else
                "train a smaller model (model.n_layers, model.d_model, model.d_ff)")
        check_fits(need, machine_memory(device), f"this run (model {model.d_model}x{model.n_layers} layers, "
                   f"{data.batch_size} rows of {data.seq_len} tokens)", hint)

    # Construction ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
        """Read a YAML run config and apply ``key=value`` overrides (dotted keys reach into sections)."""
        raw = load_yaml(path)
        try:
            return cls.from_dict(apply_overrides(raw, overrides))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # Derived -----------------------------------------------------------------------------------------
    def data_config(self) -> Any:
        """The ``data`` section as a ``unimask.data.pipeline.DataConfig`` (unknown keys refused)."""
        from unimask.data.pipeline import DataConfig

        try:
            return DataConfig.from_dict(dict(self.data))  # refuses unknown and moved keys, naming them
        except TypeError as exc:
            raise ConfigError(f"data: {exc}") from None

    # The numerics guard (``unimask.train.numerics``) ------------------------------------------------
    # A NaN/inf loss or gradient norm, a loss above ``anomaly_loss_factor`` x its running median (after
    # ``anomaly_warmup`` steps; before, x the highest loss so far; losses under 1 nat never count), or a
    # gradient norm of exactly 0 for ``anomaly_zero_grad_steps`` steps in a row (0 = off) is an anomaly.
    # ``on_anomaly: stop`` ends the run there (naming the step and the last checkpoint taken before it);
    # ``skip`` drops that step's update, counts it (``skipped_steps``), and stops after ``anomaly_max_skips``
    # (a dead gradient always stops). A checkpoint whose weights are non-finite or exceed
    # ``anomaly_max_weight`` in absolute value is never called good.
    on_anomaly: Literal["stop", "skip"] = "stop"
    anomaly_loss_factor: float = 10.0
    anomaly_warmup: int = 20
    anomaly_zero_grad_steps: int = 5
    anomaly_max_skips: int = 10
    anomaly_max_weight: float = 1e4

    def _check_types(self) -> None:
        """Types of every field (``_Validated``), then the ranges of the numerics guard's fields."""
        super()._check_types()
        if self.anomaly_loss_factor <= 1.0:
            raise ConfigError(f"config field 'anomaly_loss_factor' must be > 1, got {self.anomaly_loss_factor}")
        if self.anomaly_max_weight <= 0:
            raise ConfigError(f"config field 'anomaly_max_weight' must be positive, got {self.anomaly_max_weight}")
        for name in ("anomaly_warmup", "anomaly_zero_grad_steps", "anomaly_max_skips"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config field '{name}' must be >= 0, got {getattr(self, name)}")


# YAML with numbers such as 1e-3 read as floats (YAML 1.1 needs a dot) ----------------------------------

class _Loader(yaml.SafeLoader):
    pass


_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
# (appended after the int resolver, so plain integers stay integers)


def parse_value(text: str) -> Any:
    """A YAML scalar (or flow mapping/list): ``3`` -> 3, ``1e-3`` -> 0.001, ``null`` -> None, ``a`` -> 'a'."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError:
        return text


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: a directory, not a run config file; give the .yaml file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such run config file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); check the path and its permissions") from None
    if b"\x00" in raw[:8192]:
        raise ConfigError(f"{path}: a binary file (NUL bytes), not a YAML run config; give the .yaml file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a run config is a YAML file saved as UTF-8"
                          ) from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a run config") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if data is None:
        raise ConfigError(f"{path}: the run config is empty; name at least the model (e.g. model: tiny-causal), "
                          "or give a shipped config such as tiny-causal")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a run config is a mapping of fields, got {type(data).__name__}")
    return data


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``key=value`` strings to a raw config mapping; dotted keys reach into sections.

    Top-level keys and ``optimizer.*`` keys are checked here; keys under ``model``, ``data`` and
    ``objective`` are checked by their own classes when the config is built.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    top = [f.name for f in dataclasses.fields(TrainConfig)]
    opt = [f.name for f in dataclasses.fields(OptimizerConfig)]
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set optimizer.lr=3e-4")
        value = parse_value(text)
        parts = key.split(".")
        if parts[0] not in top:
            raise ConfigError(f"--set {key}: unknown key '{parts[0]}'{_suggest(parts[0], top)}")
        if len(parts) == 1:
            out[key] = value
            continue
        if parts[0] == "optimizer" and parts[1] not in opt:
            raise ConfigError(f"--set {key}: unknown key 'optimizer.{parts[1]}'{_suggest(parts[1], opt)}")
        if parts[0] not in (*FREE_SECTIONS, "optimizer"):
            raise ConfigError(f"--set {key}: '{parts[0]}' is a plain value, not a section")
        section = out.get(parts[0])
        if section is None:
            section = {}
        elif isinstance(section, str):  # a preset / objective name becomes a mapping with settings
            section = {"preset": section} if parts[0] == "model" else {"name": section}
        elif not isinstance(section, dict):
            raise ConfigError(f"--set {key}: '{parts[0]}' is not a section")
        node = section
        for part in parts[1:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = value
        out[parts[0]] = section
    return out
