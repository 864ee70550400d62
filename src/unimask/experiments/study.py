"""What a comparison study trains: rows (family + objective + matching), sizes, data shapes and budget.

One row is one family trained with one objective at one size; every row gets the same training FLOPs,
counted by ``unimask.analysis.compute`` on the row's real shapes (decoder rows of ``seq_len`` tokens; an
encoder-decoder's ``seq_len`` source and its objective's target length, cross-attention included), so
the number of optimizer steps follows from the budget and differs between rows.

Matchings of the encoder-decoder against the ``n_layers``-layer decoders (Wang et al. 2022, "What
language model architecture and pretraining objective work best for zero-shot generalization?",
section 3.1, compare this way):

* ``params``: ``n_layers / 2`` encoder + ``n_layers / 2`` decoder layers, about the decoders' parameters;
* ``compute``: ``n_layers`` + ``n_layers`` layers, about twice the parameters but about the same FLOPs
  per token (each token passes through one stack).

Built-in studies: ``cpu`` (the default, minutes on 2 CPU cores), ``gpu`` (about an hour on one GPU) and
``smoke`` (seconds, for tests). A YAML file with the same fields (and ``base: cpu`` to start from a
built-in one) describes any other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from unimask.config import ModelConfig, _Validated, unknown_key_error
from unimask.errors import ConfigError

Matching = Literal["decoder", "params", "compute"]


@dataclass(frozen=True)
class Row:
    """One row of the grid: a family trained with one objective at one matching."""

    name: str
    arch: str
    objective: str
    matching: Matching
    label: str

    def short(self) -> str:
        return self.name


ROWS: dict[str, Row] = {r.name: r for r in (
    Row("causal", "causal", "causal_lm", "decoder", "causal decoder, causal LM"),
    Row("prefix", "prefix", "prefix_lm", "decoder", "prefix decoder, prefix LM"),
    Row("encdec-span-params", "encoder_decoder", "span_corruption", "params",
        "encoder-decoder, span corruption, equal parameters"),
    Row("encdec-span-compute", "encoder_decoder", "span_corruption", "compute",
        "encoder-decoder, span corruption, equal compute per token"),
    Row("encdec-prefix-params", "encoder_decoder", "prefix_lm", "params",
        "encoder-decoder, prefix LM, equal parameters"),
    Row("encdec-prefix-compute", "encoder_decoder", "prefix_lm", "compute",
        "encoder-decoder, prefix LM, equal compute per token"),
    Row("ul2-causal", "causal", "ul2", "decoder", "causal decoder, UL2 mixture"),
    Row("ul2-prefix", "prefix", "ul2", "decoder", "prefix decoder, UL2 mixture"),
    Row("ul2-encdec", "encoder_decoder", "ul2", "compute", "encoder-decoder, UL2 mixture, equal compute"),
)}

# The fields a pretraining run's scores depend on besides its own run config (the probes it is scored on);
# a change elsewhere (the fine-tuning stage, seeds, rows) keeps its finished runs valid.
EVAL_FIELDS = ("tasks", "task_instances", "vocab_size", "text_documents", "eval_instances", "few_shot",
               "text_pairs", "source_tokens", "continuation_tokens", "rank_sequences", "rank_length", "curve_points")
FINETUNE_FIELDS = (*EVAL_FIELDS, "finetune_task", "finetune_sizes", "finetune_steps", "finetune_lr", "finetune_seeds")
DEFAULT_ROWS = ("causal", "prefix", "encdec-span-params", "encdec-span-compute", "encdec-prefix-params",
                "encdec-prefix-compute")
MIN_STEPS = 20


@dataclass
class StudySpec(_Validated):
    """A comparison study. Sizes: every row shares ``d_model``, heads, ``d_ff`` and the vocabulary; the
    decoders have ``n_layers`` layers. Budget: ``budget_flops`` training FLOPs per run (the calculator's
    count, 6N + 12LHQT per token on the real shapes). Evaluation sizes: ``eval_instances`` per task and
    setting, ``text_pairs`` held-out text continuations of ``continuation_tokens`` after
    ``source_tokens``."""

    _where = "study"

    name: str = "custom"
    description: str = ""
    rows: list[str] = field(default_factory=lambda: list(DEFAULT_ROWS))
    seeds: int = 2
    # corpus and tokenizer
    text_documents: int | None = None  # cap on built-in text documents (None = all)
    tasks: list[str] = field(default_factory=lambda: ["max", "min", "mode", "lookup", "sort", "maxmin"])
    task_instances: int = 20000
    vocab_size: int = 1024
    # models
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 176
    n_layers: int = 2
    # data shapes and schedule
    seq_len: int = 64
    span_target_len: int = 16
    batch_size: int = 16  # rows per step of the decoders; other rows scaled to the same FLOPs per step
    equal_steps: bool = True
    budget_flops: float = 7.0e11
    lr: float = 4e-3
    warmup_steps: int = 30
    curve_points: int = 3  # checkpoints of the causal row scored for the emergence curve
    # evaluation
    eval_instances: int = 80
    few_shot: int = 3
    text_pairs: int = 200
    source_tokens: int = 32
    continuation_tokens: int = 16
    rank_sequences: int = 4
    rank_length: int = 32
    timing_repeats: int = 5
    # fine-tuning stage (Q8): pretrained vs from scratch on a held-out task, per family and labelled-set size
    finetune_task: str = "median"
    finetune_sizes: list[int] = field(default_factory=lambda: [64, 256, 1024])
    finetune_rows: list[str] = field(default_factory=lambda: ["causal", "prefix", "encdec-prefix-params"])  # if trained
    finetune_steps: int = 60
    finetune_lr: float = 2e-3
    finetune_seeds: int = 2  # fine-tuning seeds per pretrained model
    finetune_adapt: bool = True
    # execution
    workers: int = 0  # 0 = as many as fit the CPU cores (one thread each); on a GPU always 1
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def __post_init__(self) -> None:
        self._check_types()
        unknown = [r for r in self.rows if r not in ROWS]
        if unknown:
            raise unknown_key_error("study rows", unknown, list(ROWS))
        if not self.rows:
            raise ConfigError("study field 'rows' is empty; name at least one of " + ", ".join(ROWS))
        from unimask.data.task_suite import TASKS

        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise unknown_key_error("study tasks", bad, list(TASKS))
        for name in ("seeds", "task_instances", "vocab_size", "d_model", "n_heads", "d_ff", "n_layers", "seq_len",
                     "span_target_len", "batch_size", "eval_instances", "text_pairs", "source_tokens",
                     "continuation_tokens", "rank_sequences", "rank_length", "timing_repeats", "curve_points"):
            if getattr(self, name) < 1:
                raise ConfigError(f"study field '{name}' must be >= 1, got {getattr(self, name)}")
        if self.few_shot < 0 or self.workers < 0 or self.warmup_steps < 0:
            raise ConfigError("study fields 'few_shot', 'workers' and 'warmup_steps' must be >= 0")
        if not self.budget_flops > 0 or not self.lr > 0:
            raise ConfigError("study fields 'budget_flops' and 'lr' must be positive")
        if self.source_tokens + self.continuation_tokens > self.seq_len:
            raise ConfigError(f"study: source_tokens + continuation_tokens ({self.source_tokens} + "
                              f"{self.continuation_tokens}) must fit in seq_len {self.seq_len}")
        if self.finetune_task in self.tasks:
            raise ConfigError(f"study: finetune_task '{self.finetune_task}' is in the pretraining tasks; the "
                              "fine-tuning task must be held out of pretraining")
        if self.finetune_task not in TASKS:
            raise unknown_key_error("study finetune_task", [self.finetune_task], list(TASKS))
        if any(n < 1 for n in self.finetune_sizes) or self.finetune_steps < 1 or not self.finetune_lr > 0 \
                or self.finetune_seeds < 1:
            raise ConfigError("study: finetune_sizes, finetune_steps, finetune_lr and finetune_seeds must be positive")
        unknown_ft = [r for r in self.finetune_rows if r not in ROWS]
        if unknown_ft:  # rows known but not trained in this study are skipped by the fine-tuning stage
            raise unknown_key_error("study finetune_rows", unknown_ft, list(ROWS))
        if self.d_model % self.n_heads:
            raise ConfigError(f"study: n_heads {self.n_heads} must divide d_model {self.d_model}")

    # Identity -----------------------------------------------------------------------------------------
    def fingerprint(self, fields: tuple[str, ...] | None = None) -> str:
        """A hash of everything that changes results (not ``workers``, which changes only speed), or of
        the given ``fields`` only."""
        data = {k: v for k, v in self.to_dict().items() if k not in ("workers", "description")
                and (fields is None or k in fields)}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    # Models and shapes --------------------------------------------------------------------------------
    def model_config(self, row: Row, vocab_size: int, pad: int, bos: int, eos: int) -> ModelConfig:
        """The row's architecture: LLaMA-style blocks (RoPE, RMSNorm, SwiGLU) for every family, so the
        families differ only in their masks and stacks."""
        base = dict(vocab_size=vocab_size, d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff,
                    activation="swiglu", norm="rmsnorm", norm_eps=1e-6, position="rope", bias=False,
                    tie_embeddings=True, max_seq_len=max(256, 2 * self.seq_len), pad_token_id=pad,
                    bos_token_id=bos, eos_token_id=eos)
        if row.arch != "encoder_decoder":
            return ModelConfig(arch=row.arch, n_layers=self.n_layers, **base)
        layers = self.n_layers if row.matching == "compute" else max(1, self.n_layers // 2)
        return ModelConfig(arch="encoder_decoder", n_layers=layers, n_encoder_layers=layers,
                           decoder_start_token_id=pad, **base)

    def target_len(self, row: Row) -> int | None:
        """Decoder length of an encoder-decoder row: short for span corruption (15% noise), the full
        row for a prefix LM (the target is the text after a uniform split point)."""
        if row.arch != "encoder_decoder":
            return None
        return self.span_target_len if row.objective == "span_corruption" else self.seq_len

    def flops_per_sequence(self, row: Row, config: ModelConfig) -> float:
        """Training FLOPs (3 x forward) of one padded row of this row's shapes, by the calculator."""
        from unimask.analysis.compute import forward_flops_per_sequence

        fwd = forward_flops_per_sequence(config, self.seq_len, self.target_len(row))
        return 3.0 * (fwd["matmul"] + fwd["attention"])

    def batch_for(self, row: Row, config: ModelConfig) -> int:
        """Rows per step: ``batch_size`` for the decoders; with ``equal_steps`` every other row takes as many
        rows as cost the same FLOPs, so that every run makes the same number of optimizer steps (same
        schedule, same number of updates) as well as spending the same FLOPs."""
        if not self.equal_steps or row.arch != "encoder_decoder":
            return self.batch_size
        ref = self.model_config(ROWS["causal"], config.vocab_size, config.pad_token_id, config.bos_token_id or 0,
                                config.eos_token_id or 0)
        scale = self.flops_per_sequence(ROWS["causal"], ref) / self.flops_per_sequence(row, config)
        return max(1, round(self.batch_size * scale))

    def flops_per_step(self, row: Row, config: ModelConfig) -> float:
        """Training FLOPs of one optimizer step (``batch_for`` padded rows), by the calculator."""
        return self.batch_for(row, config) * self.flops_per_sequence(row, config)

    def steps_for(self, row: Row, config: ModelConfig) -> int:
        """Optimizer steps that spend ``budget_flops`` on this row (at least ``MIN_STEPS``, else an error)."""
        per_step = self.flops_per_step(row, config)
        steps = round(self.budget_flops / per_step)
        if steps < MIN_STEPS:
            raise ConfigError(f"study '{self.name}': budget_flops {self.budget_flops:.3g} buys only {steps} steps "
                              f"of row '{row.name}' ({per_step:.3g} FLOPs each); raise budget_flops to at least "
                              f"{MIN_STEPS * per_step:.3g}")
        return steps

    def row_objects(self) -> list[Row]:
        return [ROWS[r] for r in self.rows]


def _builtin() -> dict[str, dict[str, Any]]:
    cpu: dict[str, Any] = dict(
        name="cpu", description="the three families side by side on 2 CPU cores, about 8 minutes")
    gpu: dict[str, Any] = dict(
        name="gpu", description="larger models and every row with UL2, about an hour on one GPU",
        rows=[*DEFAULT_ROWS, "ul2-causal", "ul2-prefix", "ul2-encdec"], seeds=3, task_instances=100000,
        vocab_size=4096, d_model=512, n_heads=8, d_ff=1376, n_layers=8, seq_len=256, span_target_len=64,
        batch_size=64, budget_flops=4.0e16, lr=1e-3, warmup_steps=200, eval_instances=400, text_pairs=1000,
        source_tokens=64, continuation_tokens=32, rank_length=64)
    smoke: dict[str, Any] = dict(
        name="smoke", description="every stage in seconds, for tests: the numbers mean nothing",
        rows=["causal", "prefix", "encdec-span-params", "encdec-prefix-compute"], text_documents=300,
        tasks=["max", "maxmin", "sort"], task_instances=300, vocab_size=400, d_model=32, n_heads=2, d_ff=64,
        seq_len=48, span_target_len=16, batch_size=4, budget_flops=2.0e9, warmup_steps=2, curve_points=2,
        eval_instances=12, few_shot=1, text_pairs=12, source_tokens=16, continuation_tokens=8, rank_sequences=2,
        rank_length=12, timing_repeats=2, workers=1, finetune_sizes=[8, 24], finetune_steps=6, finetune_seeds=1,
        finetune_rows=["causal", "encdec-span-params"])
    return {"cpu": cpu, "gpu": gpu, "smoke": smoke}


BUILTIN_STUDIES = _builtin()


def load_study(spec: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None) -> StudySpec:
    """A built-in study by name, a YAML file (``base: cpu`` starts from a built-in one), or a mapping."""
    import yaml

    if isinstance(spec, dict):
        raw = dict(spec)
    elif str(spec) in BUILTIN_STUDIES:
        raw = dict(BUILTIN_STUDIES[str(spec)])
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"'{spec}' is neither a built-in study ({', '.join(BUILTIN_STUDIES)}) nor a YAML file")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            raise ConfigError(f"{path}: not a valid YAML study file") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a study file is a mapping of fields")
        raw = dict(loaded)
        raw.setdefault("name", path.stem)
    base = raw.pop("base", None)
    if base is not None:
        if base not in BUILTIN_STUDIES:
            raise ConfigError(f"study field 'base': unknown study '{base}'; use one of {', '.join(BUILTIN_STUDIES)}")
        raw = {**BUILTIN_STUDIES[base], **raw}
    raw.update(overrides or {})
    known = [f.name for f in dataclasses.fields(StudySpec)]
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise unknown_key_error("study", unknown, known)
    return StudySpec.from_dict(raw)


__all__ = ["BUILTIN_STUDIES", "DEFAULT_ROWS", "ROWS", "Row", "StudySpec", "load_study"]
