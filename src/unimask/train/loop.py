"""One training loop for every family and objective, with exact resume and data parallelism.

``train(config)`` builds the model config (a preset, fields, or ``init_from`` a checkpoint, possibly of another
family, fitted to the tokenizer), the objective's batches (``unimask.data.pipeline.build_batches``, whose
encoder-decoder rows start with the model's ``start_token_id``, as generation does), AdamW and its schedule, then
runs ``steps`` optimizer steps of ``grad_accum`` micro-batches each. The loss of a step is the sum of token
cross-entropies over every micro-batch and rank divided by the GLOBAL number of tokens that carry loss, so
that gradients equal those of single-process training on the same global batch (DESIGN.md, batch
contract). Checkpoints hold everything needed to continue bit-exactly on CPU in fp32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unimask.checkpoint import load_state_into, read_tensors
from unimask.config import ModelConfig, resolve_model_config
from unimask.data.cache import check_writable, ensure_dir
from unimask.errors import CheckpointError, ConfigError, UnimaskError
from unimask.models import build_model
from unimask.train import checkpoint as ckpt
from unimask.train import distributed as D
from unimask.train.config import TrainConfig
from unimask.train.curves import CURVE
from unimask.train.metrics import METRICS, TENSORBOARD, MetricsLog, Progress
from unimask.train.numerics import Anomaly, NumericsGuard, weights_problem
from unimask.train.optim import Schedule, build_optimizer
from unimask.train.precision import PrecisionProbe, probe_step, remembered

log = logging.getLogger(__name__)
ADAPTER_DIR = "adapter"  # a LoRA run's adapter inside each checkpoint, in peft's own format


class TrainingDiverged(UnimaskError):
    """The numerics guard stopped the run (NaN/inf, a loss spike, a dead gradient, exploded weights); nothing
    was saved after the anomaly, and checkpoints taken after the divergence began were moved aside."""

    def __init__(self, message: str, anomaly: Anomaly | None = None) -> None:
        super().__init__(message)
        self.anomaly = anomaly


@dataclass
class TrainResult:
    """The end of a run: where it lives, its last checkpoint and its final numbers."""

    out_dir: Path
    checkpoint: Path | None
    step: int
    train_loss: float | None = None
    eval_loss: float | None = None
    eval_ppl: float | None = None
    stopped_early: bool = False
    nothing_to_do: bool = False  # resumed a run that had already reached ``steps``
    precision: str | None = None  # what the run trained in (fp32 or bf16 autocast)
    precision_note: str | None = None  # why, when ``precision: auto`` measured it
    history: list[dict[str, Any]] = field(default_factory=list)


def coerce_config(config: TrainConfig | dict[str, Any] | str | Path) -> TrainConfig:
    """A TrainConfig from itself, a mapping or a YAML path."""
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    return TrainConfig.load(config)


def train(config: TrainConfig | dict[str, Any] | str | Path, *, resume: bool | str | Path | None = None,
          should_stop: Callable[[int], bool] | None = None) -> TrainResult:
    """Run (or, with ``resume``, continue) a training run; see ``TrainConfig``.

    ``resume``: True = the latest checkpoint in ``out_dir``; a path = that checkpoint or run directory.
    ``should_stop(step)`` is asked after every optimizer step; True saves a checkpoint and stops, as a
    first Ctrl-C does. Under torchrun every rank calls this and rank 0 writes.
    """
    cfg = coerce_config(config)
    ctx = D.setup(cfg.parallel, cfg.device)
    try:
        trainer = Trainer(cfg, ctx, resume=resume)
        return trainer.fit(should_stop)
    finally:
        D.teardown(ctx)


def count_tokens(batch: dict[str, Tensor]) -> tuple[int, int]:
    """(non-padding input tokens, tokens carrying loss) of one batch in the batch contract."""
    def real(ids_key: str, seg_key: str, mask_key: str) -> int:
        if seg_key in batch:
            return int((batch[seg_key] != 0).sum())
        if mask_key in batch:
            return int(batch[mask_key].sum())
        return int(batch[ids_key].numel()) if ids_key in batch else 0

    tokens = real("input_ids", "segment_ids", "attention_mask")
    if "decoder_input_ids" in batch or "decoder_segment_ids" in batch:
        tokens += real("decoder_input_ids", "decoder_segment_ids", "decoder_attention_mask")
    return tokens, int((batch["labels"] != -100).sum())


def _seed_all(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _StopFlag:
    """First SIGINT asks for a clean stop (checkpoint, then exit); a second one interrupts at once."""

    def __init__(self) -> None:
        self.raised = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class Trainer:
    """Holds the run's model, optimizer, schedule and batches; ``fit`` runs the loop."""

    def __init__(self, config: TrainConfig, ctx: D.DistContext, *, resume: bool | str | Path | None = None) -> None:
        from unimask.data.pipeline import build_batches, data_tokenizer

        self.config, self.ctx = config, ctx
        self.out_dir = Path(config.out_dir)
        self._skipped: list[tuple[Path, str]] = []  # checkpoints that failed verification, moved aside at start
        self.resumed = self._find_resume(resume)
        self.done = self.resumed is not None and config.steps <= self.resumed.step
        if self.done:  # a finished run: an automatic restart loop must be able to end (exit 0)
            return
        self._check_out_dir()
        self._replaced: Path | None = None  # a previous run moved aside by ``overwrite``, deleted after success
        _seed_all(config.seed)
        self.data_config = config.data_config()
        base, init_dir = self._base_model_config()
        self._pick_tokenizer(init_dir)
        self.arch = base.arch
        # The tokenizer and the model config come before the batches: the model decides the decoder start
        # token, and the training rows must start with the token generation starts from.
        self.tokenizer = data_tokenizer(self.data_config, config.objective)
        self.model_config = self._fit_vocabulary(base, init_dir)
        start_id = self.model_config.start_token_id if self.arch == "encoder_decoder" else None
        self._build_batches = lambda split: build_batches(
            self.data_config, config.objective, self.arch, split=split, seed=config.seed, rank=ctx.rank,
            world_size=ctx.world_size, start_id=start_id)
        self.batches = self._build_batches("train")
        self._validation: Any = None  # rewound to its start before each evaluation
        self._validation_start: dict[str, Any] = {}
        self.evaluates = self.data_config.validation_fraction > 0  # 0: train on everything, no held-out loss
        if self.evaluates:
            self._check_validation()
        model = build_model(self.model_config)
        self.lora = None
        if config.lora is not None:
            from unimask.finetune.lora import LoraSpec

            if init_dir is None:
                raise ConfigError("lora adapts a pretrained model: set init_from to a checkpoint or model directory")
            self.lora = LoraSpec.from_dict(config.lora)
        # a LoRA run resumes from its frozen base (init_from) plus the checkpoint's adapter
        weights_from = self.resumed.model_dir if self.resumed and self.lora is None else init_dir
        if self.resumed:
            diff = ckpt.config_difference(self.resumed.model_config, self.model_config)
            if diff:
                raise CheckpointError(f"cannot resume {self.resumed.path}: model {diff}; resume with the run "
                                      "config that wrote it")
        if weights_from is not None:
            tensors = read_tensors(weights_from)
            source_config = getattr(self, "init_config", None) if weights_from == init_dir else None
            if source_config is not None:
                from unimask.finetune.adapt import decoder_to_encoder_decoder, needs_adaptation

                if needs_adaptation(source_config, self.model_config):
                    tensors = decoder_to_encoder_decoder(tensors, source_config, self.model_config)
            load_state_into(model, tensors, source=str(weights_from))
        if self.lora is not None:
            from unimask.finetune.lora import apply_lora, load_adapter_state

            model = apply_lora(model, self.lora)
            if self.resumed:
                from safetensors.torch import load_file

                adapter = self.resumed.path / ADAPTER_DIR / "adapter_model.safetensors"
                if not adapter.is_file():
                    raise CheckpointError(f"{adapter}: missing; {self.resumed.path} holds no LoRA adapter to resume")
                load_adapter_state(model, load_file(str(adapter)))
        model = model.to(ctx.device)
        self.precision, self.precision_probe = self._pick_precision(model)  # before wrapping: no collectives
        torch.manual_seed(config.seed + ctx.rank)  # dropout streams differ per rank
        self.model = D.wrap_model(model, ctx)
        if config.compile:
            self.model.compile()
        self.optimizer = build_optimizer(self.model, config.optimizer)
        self.schedule = Schedule(self.optimizer, config.steps, config.optimizer)
        self.step = 0
        self.counters = {"tokens": 0, "loss_tokens": 0, "skipped_steps": 0}
        self.guard = NumericsGuard(factor=config.anomaly_loss_factor, warmup=config.anomaly_warmup,
                                   zero_steps=config.anomaly_zero_grad_steps)
        if self.resumed:
            self._restore(self.resumed)

    # Setup ------------------------------------------------------------------------------------------
    def _find_resume(self, resume: bool | str | Path | None) -> ckpt.TrainCheckpoint | None:
        if resume is None or resume is False:
            return None
        where = self.out_dir if resume is True else Path(resume)
        if resume is True and not ckpt.checkpoint_dirs(where):
            raise CheckpointError(f"--resume: {where} holds no checkpoint-<step>/ to resume; start without --resume")
        if (where / ckpt.STATE).is_file() or not ckpt.checkpoint_dirs(where):
            return ckpt.load_checkpoint(where)  # one named checkpoint: it verifies or the run stops
        found, self._skipped = ckpt.load_latest_good(where)  # a run directory: the newest that verifies
        return found

    def _check_out_dir(self) -> None:
        out, cfg = self.out_dir, self.config
        if out.exists() and not out.is_dir():
            raise ConfigError(f"out_dir {out} is a file; choose a directory")
        check_writable(out, "out_dir")
        entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        if self.resumed is not None:
            inside = self.resumed.path.parent.resolve() == out.resolve()
            newer = []
            for s, path in ckpt.checkpoint_dirs(out):
                if s > self.resumed.step and all(path != p for p, _ in self._skipped):
                    problem = ckpt.verify_checkpoint(path)  # a newer one that is broken is moved aside, not in the way
                    if problem:
                        self._skipped.append((path, problem))
                    else:
                        newer.append(s)
            if newer:
                raise CheckpointError(f"out_dir {out} already holds checkpoint-{newer[-1]}, newer than the resumed "
                                      f"{self.resumed.path.name}; resume from the latest or choose another out_dir")
            if inside or not entries or cfg.overwrite:
                return
        if entries and not cfg.overwrite:
            raise ConfigError(f"out_dir {out} is not empty ({len(entries)} entries, e.g. '{entries[0]}'); continue "
                              "it with --resume, choose another out_dir, or add --overwrite (overwrite: true in a "
                              "run config)")

    def _base_model_config(self) -> tuple[ModelConfig, Path | None]:
        spec = self.config.model
        if self.config.init_from is not None:
            init_dir = ckpt.resolve_model_dir(self.config.init_from)
            from unimask.checkpoint import load_config

            base = load_config(init_dir)
            self.init_config = base
            overrides = dict(spec or {})
            return (base.replace(**overrides) if overrides else base), init_dir
        try:
            return resolve_model_config(spec if spec is not None else "tiny-causal"), None
        except ConfigError as exc:
            raise ConfigError(f"model: {exc}") from None

    def _pick_tokenizer(self, init_dir: Path | None) -> None:
        """Without ``data.tokenizer``, a resumed run or an ``init_from`` model brings its own tokenizer."""
        if getattr(self.data_config, "tokenizer", None) is not None:
            return
        source = self.resumed.model_dir if self.resumed else init_dir
        if source is not None and (source / "tokenizer.json").is_file():
            self.data_config = dataclasses.replace(self.data_config, tokenizer=str(source / "tokenizer.json"))

    def _fit_vocabulary(self, base: ModelConfig, init_dir: Path | None) -> ModelConfig:
        """A fresh model takes the tokenizer's vocabulary size and pad/bos/eos ids unless the config sets them."""
        tok = self.tokenizer
        seq_len = getattr(self.data_config, "seq_len", 0)
        if init_dir is None:
            given = set(self.config.model) if isinstance(self.config.model, dict) else set()
            changes: dict[str, Any] = {}
            if "vocab_size" not in given:
                changes["vocab_size"] = tok.vocab_size
            for name, role in (("pad_token_id", "pad_id"), ("bos_token_id", "bos_id"), ("eos_token_id", "eos_id")):
                if name not in given:
                    with contextlib.suppress(UnimaskError):
                        changes[name] = getattr(tok, role)
            if "max_seq_len" not in given and seq_len > base.max_seq_len:
                changes["max_seq_len"] = seq_len
            base = base.replace(**changes)
        if base.vocab_size < tok.vocab_size:
            raise ConfigError(f"model vocab_size {base.vocab_size} is smaller than the tokenizer's "
                              f"{tok.vocab_size}; use the model's tokenizer (data.tokenizer) or a larger vocab_size")
        if seq_len > base.max_seq_len and base.position == "learned":
            raise ConfigError(f"data.seq_len {seq_len} exceeds the model's max_seq_len {base.max_seq_len} "
                              "(learned positions); lower data.seq_len")
        return base

    def _restore(self, resumed: ckpt.TrainCheckpoint) -> None:
        state = resumed.state
        if int(state.get("world_size", 1)) != self.ctx.world_size:
            raise CheckpointError(f"{resumed.path} was written by {state.get('world_size')} processes, this run has "
                                  f"{self.ctx.world_size}; resume with the same --nproc_per_node")
        D.load_optimizer_state(self.model, self.optimizer, resumed.optimizer_state, self.ctx)
        self.schedule.load_state_dict(state["schedule"])
        self.batches.load_state_dict(state["data"][self.ctx.rank])
        ckpt.restore_rng(resumed.rng[self.ctx.rank])
        self.step = resumed.step
        self.counters = {**self.counters, **state.get("counters", {})}
        self.guard.load_state_dict((state.get("numerics") or {}).get("guard", {}))

    def _check_validation(self) -> None:
        """Build the validation batches now, so that a corpus too small for them fails before anything is written."""
        self._validation = self._build_batches("validation")
        self._validation_start = self._validation.state_dict()
        has_batch = next(islice(iter(self._validation), 1), None) is not None
        self._validation.load_state_dict(self._validation_start)
        if not all(D.all_gather_json(has_batch, self.ctx)):
            raise UnimaskError("the validation split yields no batch; use a larger corpus, a smaller data.batch_size "
                               "/ data.seq_len, or data.validation_fraction=0 to train without held-out loss")

    def _pick_precision(self, model: torch.nn.Module) -> tuple[str, PrecisionProbe | None]:
        """``precision: auto``: bf16 autocast on CUDA; on a CPU what ``probe_step`` measures on this model and
        the run's first batch (``unimask.train.precision``), rank 0's choice for every rank. A resumed run
        keeps the precision its checkpoint was trained in, so that resuming stays exact."""
        wanted, ctx = self.config.precision, self.ctx
        if wanted != "auto":
            return wanted, None
        if ctx.device.type == "cuda":
            return "bf16", None
        kept = self.resumed.state.get("precision") if self.resumed is not None else None
        if kept in ("fp32", "bf16"):
            return kept, None
        start = self.batches.state_dict()  # the probe's batch is the first one, drawn again by the run
        batch = next(iter(self.batches))
        self.batches.load_state_dict(start)
        batch = {k: v.to(ctx.device) for k, v in batch.items()}
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        what = {"model": self.model_config.to_dict(), "trainable": trainable, "world_size": ctx.world_size,
                "batch": {k: [list(v.shape), str(v.dtype)] for k, v in sorted(batch.items())}}
        probe = remembered(what, lambda: probe_step(model, batch))
        return D.all_gather_json(probe.choice, ctx)[0], probe

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "bf16":
            return torch.autocast(self.ctx.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _prepare_out_dir(self) -> None:
        """Rank 0 creates ``out_dir``. With ``overwrite``, unimask's own files of the previous run are moved
        into a hidden ``.replaced-<time>/`` folder, deleted only once this run has finished (a failed run
        leaves them there); other files are never touched."""
        out = self.out_dir
        for path in ckpt.clean_temporaries(out):
            log.info("removed %s, left by a checkpoint write that was killed", path)
        for path, why in self._skipped:
            moved = ckpt.move_aside(path, "corrupt")
            log.warning("resume: skipped %s (%s); moved it to %s", path.name, why, moved.name)
        if self.config.overwrite and not self.resumed and out.is_dir():
            ours = [path for _, path in ckpt.list_checkpoints(out)]
            ours += [out / name for name in (METRICS, "config.yaml", TENSORBOARD, CURVE) if (out / name).exists()]
            ours += sorted(out.glob("config-resume-*.yaml"))
            if ours:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                self._replaced = out / f".replaced-{stamp}"
                k = 1
                while self._replaced.exists():
                    self._replaced, k = out / f".replaced-{stamp}.{k}", k + 1
                self._replaced.mkdir()
                for path in ours:
                    path.rename(self._replaced / path.name)
        ensure_dir(out, "out_dir")
        name = "config.yaml" if not self.resumed else f"config-resume-{self.step}.yaml"
        k = 1
        while (out / name).exists():  # a log of an earlier resume from the same step is kept
            name, k = f"config-resume-{self.step}.{k}.yaml", k + 1
        (out / name).write_text(self.config.to_yaml(), encoding="utf-8")

    def _drop_replaced(self) -> None:
        import shutil

        if self._replaced is not None:
            shutil.rmtree(self._replaced, ignore_errors=True)
            self._replaced = None

    # The loop ---------------------------------------------------------------------------------------
    def fit(self, should_stop: Callable[[int], bool] | None = None) -> TrainResult:
        if self.done:
            assert self.resumed is not None
            return TrainResult(out_dir=self.out_dir, checkpoint=self.resumed.path, step=self.resumed.step,
                               nothing_to_do=True)
        cfg, ctx = self.config, self.ctx
        D.barrier(ctx)  # every rank has checked out_dir before rank 0 creates anything
        if ctx.is_main:
            self._prepare_out_dir()
        D.barrier(ctx)
        metrics = MetricsLog(self.out_dir, tensorboard=cfg.tensorboard, start_step=self.step) if ctx.is_main else None
        progress = Progress(cfg.steps, self.step, enabled=cfg.progress and ctx.is_main)
        probe = self.precision_probe
        result = TrainResult(out_dir=self.out_dir, checkpoint=None, step=self.step, precision=self.precision,
                             precision_note=probe.summary() if probe else None)
        saved_at = self.step if self.resumed else -1
        if metrics is not None and self.resumed:
            metrics.write("resume", self.step, {"checkpoint": str(self.resumed.path)})
        if metrics is not None:
            metrics.write("precision", self.step, {"used": self.precision, "requested": cfg.precision,
                                                   "probe": probe.to_dict() if probe else None})
        if probe is not None:
            progress.note(f"precision: {probe.summary()}")
        try:
            with _StopFlag() as flag:
                if cfg.eval_every and cfg.eval_at_start and self.step == 0:
                    self._evaluate(metrics, result)
                batches = iter(self.batches)
                last = time.perf_counter()
                while self.step < cfg.steps:
                    record = self._train_step(batches)
                    now = time.perf_counter()
                    record["tokens_per_s"] = record["tokens"] / max(now - last, 1e-9)
                    record["loss_tokens_per_s"] = record["loss_tokens"] / max(now - last, 1e-9)
                    self.step += 1
                    self._log_step(record, metrics, progress, result)
                    stop = self._agree_stop(flag.raised or bool(should_stop and should_stop(self.step)))
                    final = self.step == cfg.steps
                    if final or (cfg.eval_every and self.step % cfg.eval_every == 0):
                        self._evaluate(metrics, result)
                    if final or stop or (cfg.save_every and self.step % cfg.save_every == 0):
                        result.checkpoint = self._save() or result.checkpoint
                        saved_at = self.step
                    if stop:
                        result.stopped_early = True
                        progress.note(f"stopped at step {self.step}; resume with --resume")
                        break
                    last = time.perf_counter()  # rates cover the step itself, not evaluation or saving
        except TrainingDiverged as exc:
            where = self._after_divergence(exc.anomaly) if ctx.is_main else ""
            kept = f"; the replaced run is kept in {self._replaced}" if self._replaced is not None else ""
            raise TrainingDiverged(f"{exc}; {where} (lower optimizer.lr or raise warmup_steps){kept}",
                                   exc.anomaly) from None
        except UnimaskError as exc:
            if self._replaced is None:
                raise
            raise type(exc)(f"{exc}; the replaced run is kept in {self._replaced}") from None
        finally:
            progress.close()
            if metrics is not None:
                metrics.close()
        self._drop_replaced()
        if result.checkpoint is None and ctx.is_main and saved_at >= 0:
            found = ckpt.list_checkpoints(self.out_dir)
            result.checkpoint = found[-1][1] if found else None
        result.step = self.step
        return result

    def _after_divergence(self, anomaly: Anomaly | None) -> str:
        """Name the newest checkpoint taken before the divergence began; move the later ones aside."""
        bad_from = anomaly.bad_from if anomaly is not None else self.step
        good: Path | None = None
        moved = []
        for step, path in reversed(ckpt.list_checkpoints(self.out_dir)):
            if good is None and step < bad_from and ckpt.verify_checkpoint(path) is None:
                good = path
            elif good is None:
                moved.append(ckpt.move_aside(path, "diverged").name)
        aside = f"; moved aside the later {', '.join(moved)}" if moved else ""
        if good is None:
            return f"no checkpoint was taken before the divergence began{aside}; start again"
        return f"the last good checkpoint is {good} (taken before the divergence; --resume continues from it){aside}"

    def _anomaly(self, anomaly: Anomaly) -> None:
        """Stop (raise) or, under ``on_anomaly: skip``, count the skipped step."""
        cfg = self.config
        self.guard.skipped += 1
        self.counters["skipped_steps"] = self.counters.get("skipped_steps", 0) + 1
        if cfg.on_anomaly == "stop" or anomaly.fatal or self.guard.skipped > cfg.anomaly_max_skips:
            extra = (f" ({self.guard.skipped} anomalous steps, more than anomaly_max_skips "
                     f"{cfg.anomaly_max_skips})" if cfg.on_anomaly == "skip" and not anomaly.fatal else "")
            raise TrainingDiverged(f"step {anomaly.step}: {anomaly.reason}{extra}; stopped without saving", anomaly)
        log.warning("step %d: %s; skipped its update (%d of at most %d)", anomaly.step, anomaly.reason,
                    self.guard.skipped, cfg.anomaly_max_skips)

    def _agree_stop(self, local: bool) -> bool:
        if not self.ctx.distributed:
            return local
        return bool(D.all_reduce_sum(torch.tensor([float(local)]), self.ctx).item() > 0)

    def _train_step(self, batches: Iterator[dict[str, Tensor]]) -> dict[str, Any]:
        """One optimizer step over ``grad_accum`` micro-batches; the loss is normalised globally."""
        opt_cfg, ctx = self.config.optimizer, self.ctx
        micro = [next(batches) for _ in range(opt_cfg.grad_accum)]
        local = torch.tensor([sum(count_tokens(b)[i] for b in micro) for i in (0, 1)], dtype=torch.float64)
        tokens, loss_tokens = D.all_reduce_sum(local, ctx).tolist()
        # each rank's gradient is averaged by DDP/FSDP2 over world_size ranks: scale it back up
        scale = ctx.world_size / max(loss_tokens, 1.0)
        loss_sum = torch.zeros((), dtype=torch.float64)
        self.model.train()
        for i, batch in enumerate(micro):
            batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
            with D.gradient_sync(self.model, ctx, sync=i == len(micro) - 1), self._autocast():
                out = self.model(**batch)
            (out.loss_sum * scale).backward()
            loss_sum += out.loss_sum.detach().double().cpu()
        loss = float(D.all_reduce_sum(loss_sum, ctx).item()) / max(loss_tokens, 1.0)
        max_norm = opt_cfg.clip_grad_norm if opt_cfg.clip_grad_norm is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        norm_value = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        anomaly = self.guard.check(self.step + 1, loss, norm_value)  # global numbers: every rank agrees
        if anomaly is not None:
            self._anomaly(anomaly)  # raises unless the step is skipped
        lr = self.schedule.apply()
        if anomaly is None:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.advance()
        self.counters["tokens"] += int(tokens)
        self.counters["loss_tokens"] += int(loss_tokens)
        record = {"loss": loss, "lr": lr, "grad_norm": norm_value, "tokens": int(tokens),
                  "loss_tokens": int(loss_tokens)}
        if self.config.on_anomaly == "skip":
            record.update(skipped=anomaly is not None, skipped_steps=self.counters["skipped_steps"])
        return record

    def _log_step(self, record: dict[str, Any], metrics: MetricsLog | None, progress: Progress,
                  result: TrainResult) -> None:
        result.train_loss = record["loss"]
        result.history.append({"step": self.step, **record})
        progress.update(record["loss"], record["tokens_per_s"], record["loss_tokens_per_s"])
        if metrics is not None and (self.step % self.config.log_every == 0 or self.step == self.config.steps):
            metrics.write("train", self.step, {**record, "tokens_seen": self.counters["tokens"]})

    @torch.no_grad()
    def _evaluate(self, metrics: MetricsLog | None, result: TrainResult) -> None:
        """Held-out loss and perplexity over the validation tokens that carry loss (all ranks together)."""
        ctx = self.ctx
        if not self.evaluates:
            return
        self._validation.load_state_dict(self._validation_start)
        items = list(islice(iter(self._validation), self.config.eval_batches))
        n = len(items)
        if ctx.distributed:  # every rank must run the same number of forwards (FSDP2 gathers per block)
            n = min(D.all_gather_json(n, ctx))
        if n == 0:
            raise UnimaskError("the validation split yields no batch; use a larger corpus or a smaller "
                               "data.batch_size / data.seq_len")
        sums = torch.zeros(2, dtype=torch.float64)
        self.model.eval()
        for batch in items[:n]:
            batch = {k: v.to(ctx.device) for k, v in batch.items()}
            with self._autocast():
                out = self.model(**batch)
            sums += torch.stack([out.loss_sum.double().cpu(), out.n_loss_tokens.double().cpu()])
        self.model.train()
        loss_sum, count = D.all_reduce_sum(sums, ctx).tolist()
        loss = loss_sum / max(count, 1.0)
        ppl = math.exp(min(loss, 700.0))
        result.eval_loss, result.eval_ppl = loss, ppl
        if metrics is not None:
            metrics.write("eval", self.step, {"loss": loss, "ppl": ppl, "loss_tokens": int(count)})
            self._draw_curves()

    def _draw_curves(self) -> None:
        """``loss_curve.png`` from the metrics so far; a picture that fails never stops training."""
        from unimask.analysis.compute import training_flops
        from unimask.train.curves import plot_loss_curves

        try:
            per_token = training_flops(self.model_config, 1.0, self.data_config.seq_len)["per_token"]
            plot_loss_curves(self.out_dir, per_token, title=f"{self.out_dir.name} ({self.model_config.arch})")
        except Exception as exc:  # matplotlib missing or broken, a full disk: say so, keep training
            log.warning("could not draw %s/loss_curve.png: %s", self.out_dir, exc)

    def _save(self) -> Path | None:
        """Gather full states (collective) and let rank 0 write ``checkpoint-<step>`` atomically."""
        ctx = self.ctx
        if self.lora is not None:
            from unimask.finetune.lora import merged_state, save_adapter

            model_state = merged_state(self.model)  # an ordinary model directory, adapters merged in
            extra = lambda folder: save_adapter(self.model, folder / ADAPTER_DIR)
        else:
            model_state, extra = D.full_model_state(self.model, ctx), None
        problem = weights_problem(model_state, self.config.anomaly_max_weight) if ctx.is_main else None
        problem = next((p for p in D.all_gather_json(problem, ctx) if p), None)
        if problem is not None:  # never written: a checkpoint is only ever called good with sane weights
            raise TrainingDiverged(f"step {self.step}: {problem}; stopped without saving",
                                   Anomaly(self.step, problem, bad_from=self.step))
        optim_state = D.full_optimizer_state(self.model, self.optimizer, ctx)
        data_states = D.all_gather_json(self.batches.state_dict(), ctx)
        rng = D.all_gather_json(ckpt.capture_rng(), ctx)
        path = None
        if ctx.is_main:
            state = {"schedule": self.schedule.state_dict(), "data": data_states, "world_size": ctx.world_size,
                     "counters": self.counters, "parallel": ctx.parallel, "config": self.config.to_dict(),
                     "precision": self.precision,
                     "numerics": {"healthy": True, "guard": self.guard.state_dict()}}
            path = ckpt.save_checkpoint(self.out_dir, self.step, model_state=model_state,
                                        model_config=self.model_config, tokenizer=self.tokenizer,
                                        optimizer_state=optim_state, rng=rng, trainer_state=state, extra=extra)
            # keep the newest checkpoint that a later spike or dead gradient could not condemn
            safe = self.guard.safe_before(self.step)
            ckpt.prune_checkpoints(self.out_dir, self.config.keep_last, protect_before=safe)
        D.barrier(ctx)
        return path
