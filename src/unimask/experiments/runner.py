"""``run_study``: train every row and seed of a study at equal FLOPs, score them, write ``results.json``.

Runs go to ``<out>/runs/<row>-s<seed>/`` (an ordinary training run directory plus ``result.json``); a
study started again in the same folder reuses every run that finished (same settings), so an
interrupted study loses at most the runs in flight. On a CPU the runs are spread over worker processes
with one thread each (small models use one core better than two), on a GPU they run one after another.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import shutil
import statistics
import subprocess
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from unimask.data.cache import atomic_write_text, check_writable
from unimask.errors import ConfigError, UnimaskError
from unimask.experiments.study import ROWS, StudySpec

log = logging.getLogger(__name__)

RESULTS_FORMAT = "unimask-study-results"
RESULTS_VERSION = 1


# Planning -------------------------------------------------------------------------------------------

def plan_jobs(spec: StudySpec, corpus: Any, tok: Any, out: Path, precision: str, device: str) -> list[dict[str, Any]]:
    """One job per row and seed: its run config, steps and FLOPs (all JSON-able)."""
    from unimask.analysis.params import count_parameters

    jobs = []
    for row in spec.row_objects():
        config = spec.model_config(row, tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id)
        steps = spec.steps_for(row, config)
        per_step = spec.flops_per_step(row, config)
        curve = row.name == "causal" and spec.curve_points > 1
        every = max(1, steps // spec.curve_points) if curve else 0
        for seed in range(spec.seeds):
            run_dir = out / "runs" / f"{row.name}-s{seed}"
            data = {"path": str(corpus.prepared), "tokenizer": str(corpus.tokenizer_path), "seq_len": spec.seq_len,
                    "batch_size": spec.batch_for(row, config), "validation_fraction": 0.02}
            if row.arch == "encoder_decoder":
                data["target_len"] = spec.target_len(row)
            train_config = {
                "model": config.to_dict(), "objective": row.objective, "data": data,
                "optimizer": {"lr": spec.lr, "warmup_steps": min(spec.warmup_steps, steps // 5), "schedule": "cosine",
                              "weight_decay": 0.1, "clip_grad_norm": 1.0},
                "steps": steps, "eval_every": max(1, steps // 8), "eval_batches": 4, "save_every": every,
                "keep_last": spec.curve_points if curve else 1, "seed": seed, "out_dir": str(run_dir),
                "overwrite": True, "progress": False, "tensorboard": False, "precision": precision,
                "device": device,
            }
            jobs.append({"id": f"{row.name}-s{seed}", "row": row.name, "seed": seed, "arch": row.arch,
                         "objective": row.objective, "matching": row.matching, "steps": steps,
                         "flops_per_step": per_step, "flops": steps * per_step, "curve": curve,
                         "batch_size": spec.batch_for(row, config),
                         "params": count_parameters(config).total,
                         "non_embedding_params": count_parameters(config).non_embedding,
                         "train_config": train_config, "run_dir": str(run_dir)})
    return jobs


def job_key(job: dict[str, Any], spec: StudySpec) -> str:
    import hashlib

    from unimask.experiments.study import EVAL_FIELDS, FINETUNE_FIELDS

    fields = FINETUNE_FIELDS if job.get("kind") == "finetune" else EVAL_FIELDS
    payload = {"spec": spec.fingerprint(fields), "train": {k: v for k, v in job["train_config"].items()
                                                           if k != "out_dir"}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Running one job (in a worker process) ------------------------------------------------------------------

_QUEUE: Any = None


def _init_worker(threads: int, q: Any) -> None:
    global _QUEUE
    _QUEUE = q
    torch.set_num_threads(threads)
    logging.getLogger("unimask").setLevel(logging.WARNING)


def _curve(job: dict[str, Any], fmt: Any, tok: Any, probes: dict[str, Any]) -> list[dict[str, Any]]:
    """Composite-task scores of the run's checkpoints (the emergence curve over training compute)."""
    from unimask.checkpoint import load_model
    from unimask.experiments.evaluate import evaluate_model
    from unimask.train.checkpoint import list_checkpoints, resolve_model_dir

    points = []
    for step, path in list_checkpoints(job["run_dir"]):
        model = load_model(resolve_model_dir(path))
        scores = evaluate_model(model, fmt, tok, probes, full=False)
        points.append({"step": step, "flops": step * job["flops_per_step"],
                       "tasks": scores["tasks"]["in_distribution"]})
    return points


def run_any(job: dict[str, Any], payload: dict[str, Any], tokenizer_path: str) -> dict[str, Any]:
    """A pretraining run or a fine-tuning run (``job["kind"]``), in a worker process or in this one."""
    if job.get("kind") == "finetune":
        from unimask.experiments.finetune_stage import run_finetune_job

        def tick(step: int) -> bool:
            if _QUEUE is not None:
                _QUEUE.put((job["id"], step))
            return False

        return run_finetune_job(job, payload["finetune_test"], tokenizer_path, tick)
    return run_job(job, payload["probes"], tokenizer_path)


def run_job(job: dict[str, Any], probes: dict[str, Any], tokenizer_path: str) -> dict[str, Any]:
    """Train one run, then score it; returns its result (and writes ``result.json`` in its run dir)."""
    from unimask.checkpoint import load_model
    from unimask.data.tokenizer import Tokenizer
    from unimask.evaluation import reading_format
    from unimask.experiments.evaluate import evaluate_model
    from unimask.models import build_model
    from unimask.train import train
    from unimask.train.checkpoint import resolve_model_dir
    from unimask.train.metrics import read_metrics

    def tick(step: int) -> bool:
        if _QUEUE is not None:
            _QUEUE.put((job["id"], step))
        return False

    start = time.perf_counter()
    result = train(job["train_config"], should_stop=tick)
    train_seconds = time.perf_counter() - start
    if result.checkpoint is None:
        raise UnimaskError(f"run {job['id']} wrote no checkpoint")
    tok = Tokenizer.load(tokenizer_path)
    model = load_model(resolve_model_dir(result.checkpoint))
    fmt = reading_format(job["objective"], job["arch"], tok, model.config.start_token_id)
    t0 = time.perf_counter()
    scores = evaluate_model(model, fmt, tok, probes)
    torch.manual_seed(job["seed"])
    init = build_model(model.config)  # the same architecture at random initialisation
    if probes["rank_inputs"]:
        from unimask.experiments.evaluate import attention_rank

        scores["attention_rank_init"] = attention_rank(init, probes["rank_inputs"])
    curve = _curve(job, fmt, tok, probes) if job["curve"] else []
    history = result.history
    step_times = [h["tokens"] / h["tokens_per_s"] for h in history[1:] if h.get("tokens_per_s")]
    train_records = read_metrics(job["run_dir"], "train")
    evals = read_metrics(job["run_dir"], "eval")
    out = {k: v for k, v in job.items() if k not in ("train_config",)}
    out.update({
        "key": job.get("key"), "checkpoint": str(result.checkpoint), "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - t0,
        "step_seconds_median": statistics.median(step_times) if step_times else None,
        "final_train_loss": result.train_loss, "final_heldout_loss": result.eval_loss,
        "tokens": sum(r["tokens"] for r in train_records.values()),
        "loss_tokens": sum(r["loss_tokens"] for r in train_records.values()),
        "loss_curve": [{"step": s, "flops": s * job["flops_per_step"], "heldout_loss": r["loss"]}
                       for s, r in sorted(evals.items())],
        "eval": scores, "curve": curve, "threads": torch.get_num_threads(),
        "model_config": model.config.to_dict(), "train_config": job["train_config"],
    })
    atomic_write_text(Path(job["run_dir"]) / "result.json", json.dumps(out, allow_nan=True))
    return out


# Timing benchmark ----------------------------------------------------------------------------------

def time_prefix_vs_causal(spec: StudySpec, corpus: Any, tok: Any, threads: int, device: str) -> dict[str, Any]:
    """Median seconds of one training step (forward, backward, AdamW) of the causal and the prefix
    decoder on real batches of their objectives, interleaved ``timing_repeats`` times in one process."""
    from unimask.data.pipeline import build_batches
    from unimask.models import build_model
    from unimask.train.precision import torch_threads

    with torch_threads(threads):
        models, opts, batches = {}, {}, {}
        for name in ("causal", "prefix"):
            row = ROWS[name]
            config = spec.model_config(row, tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id)
            torch.manual_seed(0)
            models[name] = build_model(config).to(device)
            opts[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4)
            data = {"path": str(corpus.prepared), "tokenizer": str(corpus.tokenizer_path), "seq_len": spec.seq_len,
                    "batch_size": spec.batch_size}
            it = iter(build_batches(data, row.objective, row.arch, seed=0))
            batches[name] = {k: v.to(device) for k, v in next(it).items()}

        def step(name: str) -> float:
            start = time.perf_counter()
            out = models[name](**batches[name])
            out.loss.backward()
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - start

        for name in models:  # warm-up
            step(name)
        times: dict[str, list[float]] = {"causal": [], "prefix": []}
        for _ in range(spec.timing_repeats):
            for name in ("causal", "prefix"):
                times[name].append(step(name))
        med = {k: statistics.median(v) for k, v in times.items()}
        return {"causal_step_seconds": med["causal"], "prefix_step_seconds": med["prefix"],
                "prefix_over_causal": med["prefix"] / med["causal"], "repeats": spec.timing_repeats,
                "threads": threads, "samples": times}


# The study ---------------------------------------------------------------------------------------------

def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: str, threads: int, workers: int) -> dict[str, Any]:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "torch": torch.__version__, "device": device, "threads_per_worker": threads, "workers": workers}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is visible here; use --device cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    return device


def _workers(spec: StudySpec, device: str, n_jobs: int) -> int:
    if device.startswith("cuda"):
        return 1
    wanted = spec.workers or max(1, os.cpu_count() or 1)
    return max(1, min(wanted, n_jobs))


def prepare_out_dir(out: Path, spec: StudySpec, overwrite: bool) -> None:
    """A new folder, or one holding a study of the same name (its finished runs are reused where their
    settings match). Another study's folder is kept unless ``overwrite``: then it is moved aside and
    deleted after this study finishes."""
    check_writable(out, "--out folder")
    marker = out / "study.json"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; choose a folder for --out")
    if out.is_dir() and any(out.iterdir()):
        same = False
        if marker.is_file():
            try:
                same = json.loads(marker.read_text(encoding="utf-8")).get("spec", {}).get("name") == spec.name
            except (OSError, json.JSONDecodeError):
                same = False
        if not same and not overwrite:
            what = "another study" if marker.is_file() else "files that are not a unimask study"
            raise ConfigError(f"{out} holds {what}; choose another --out, or add --overwrite to replace it")
        if not same:
            aside = out.with_name(f".{out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            out.rename(aside)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"fingerprint": spec.fingerprint(), "spec": spec.to_dict()}, indent=2))


def _finished(job: dict[str, Any]) -> dict[str, Any] | None:
    path = Path(job["run_dir"]) / "result.json"
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return done if done.get("key") == job["key"] else None


def run_study(spec: StudySpec, out: str | Path, *, device: str = "auto", overwrite: bool = False,
              progress: bool = True, echo: Any = None) -> Path:
    """Run ``spec`` into ``out`` and return the path of ``results.json``. ``echo(line)`` gets status lines."""
    from tqdm.auto import tqdm

    from unimask.experiments.corpus import build_corpus
    from unimask.experiments.facts import calculator_facts
    from unimask.experiments.probes import build_probes, unigram_loss
    from unimask.train.precision import pick_precision, probe_model

    say = echo or (lambda line: None)
    out = Path(out)
    device = resolve_device(device)
    prepare_out_dir(out, spec, overwrite)
    began = time.time()
    say(f"study '{spec.name}': building the corpus and tokenizer (cached after the first time)")
    corpus = build_corpus(spec)
    tok = corpus.tokenizer()
    probes = build_probes(spec, corpus.heldout, tok)
    counts = corpus.unigram_counts(tok.vocab_size)
    workers = _workers(spec, device, len(spec.rows) * spec.seeds)
    threads = 1 if workers > 1 else max(1, torch.get_num_threads())
    # one precision for every run: the causal row's training step timed as its runs will take it
    causal = spec.model_config(ROWS["causal"], tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id)
    precision, probe = pick_precision(spec.precision, device, lambda: probe_model(
        causal, spec.batch_size, spec.seq_len, threads=threads))
    if probe is not None:
        say(f"precision: {probe.summary()}")
    jobs = plan_jobs(spec, corpus, tok, out, precision, device)
    for job in jobs:
        job["key"] = job_key(job, spec)
    results: dict[str, dict[str, Any]] = {}
    for job in jobs:
        done = _finished(job)
        if done is not None:
            results[job["id"]] = done
    from unimask.experiments.finetune_stage import plan_finetune, write_datasets

    expected = {j["id"]: {"checkpoint": str(Path(j["run_dir"]) / f"checkpoint-{j['steps']}")} for j in jobs}
    ft_jobs = plan_finetune(spec, expected, corpus, tok, out, precision, device)
    for job in ft_jobs:
        job["key"] = job_key(job, spec)
    ft_results: dict[str, dict[str, Any]] = {}
    for job in ft_jobs:
        done = _finished(job)
        if done is not None:
            ft_results[job["id"]] = done
    payload = {"probes": probes, "finetune_test": write_datasets(spec, out)[1] if ft_jobs else []}
    todo = [j for j in jobs if j["id"] not in results]
    total = sum(j["flops"] for j in jobs + ft_jobs)
    say(f"study '{spec.name}': {len(jobs)} runs ({len(spec.rows)} rows x {spec.seeds} seeds), "
        f"{spec.budget_flops:.2e} training FLOPs each, {precision} on {device}, {workers} worker(s)"
        + (f"; reusing {len(results)} finished" if results else ""))
    bar = tqdm(total=total, disable=not progress, desc="study", unit="FLOP", unit_scale=True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} FLOPs [{elapsed}<{remaining}{postfix}]")
    bar.update(sum(j["flops"] for j in jobs if j["id"] in results)
               + sum(j["flops"] for j in ft_jobs if j["id"] in ft_results))
    try:
        if todo:
            _execute(todo, payload, str(corpus.tokenizer_path), workers, threads, bar, results)
        ft_todo = [j for j in ft_jobs if j["id"] not in ft_results]
        if ft_todo:
            bar.set_postfix_str("fine-tuning")
            _execute(ft_todo, payload, str(corpus.tokenizer_path), workers, threads, bar, ft_results)
        bar.set_postfix_str("timing prefix vs causal")
        timing = time_prefix_vs_causal(spec, corpus, tok, threads, device) \
            if {"causal", "prefix"} <= set(spec.rows) else None
    finally:
        bar.close()
    document = {
        "format": RESULTS_FORMAT, "version": RESULTS_VERSION, "unimask_version": _version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": time.time() - began, "git_commit": _git_commit(),
        "command": f"unimask compare --study {spec.name}", "study": spec.to_dict(),
        "fingerprint": spec.fingerprint(), "machine": machine_info(device, threads, workers),
        "precision": {"used": precision, "probe": probe.__dict__ if probe else None},
        "corpus": {"fingerprint": corpus.fingerprint, **corpus.stats, "vocab_size": tok.vocab_size},
        "baselines": {"unigram_text_loss": unigram_loss(counts, [p["continuation"] for p in probes["text"]]),
                      "unigram_task_loss": unigram_loss(counts, [it["choices"][it["label"]] for items in
                                                                 probes["tasks"]["in_distribution"].values()
                                                                 for it in items]),
                      "chance_accuracy": 1.0 / 4},
        "probes": {"text_pairs": len(probes["text"]), "cloze": len(probes["cloze"]), "ending": len(probes["ending"]),
                   "instances_per_task": spec.eval_instances, "tasks": spec.tasks, "few_shot": spec.few_shot},
        "timing": timing, "runs": [results[j["id"]] for j in jobs], "facts": calculator_facts(),
        "finetune": {"task": spec.finetune_task, "sizes": spec.finetune_sizes, "rows": spec.finetune_rows,
                     "steps": spec.finetune_steps, "runs": [ft_results[j["id"]] for j in ft_jobs]},
    }
    path = out / "results.json"
    atomic_write_text(path, json.dumps(document, indent=1, allow_nan=True))
    for aside in out.parent.glob(f".{out.name}.replaced-*"):
        shutil.rmtree(aside, ignore_errors=True)
    return path


def _version() -> str:
    from unimask import __version__

    return __version__


def _execute(todo: list[dict[str, Any]], payload: dict[str, Any], tokenizer_path: str, workers: int, threads: int,
             bar: Any, results: dict[str, dict[str, Any]]) -> None:
    """Run the jobs (longest first) over ``workers`` processes, moving the bar by FLOPs as steps finish."""
    todo = sorted(todo, key=lambda j: -j["flops"])
    by_id = {j["id"]: j for j in todo}
    seen: dict[str, int] = {}

    def advance(job_id: str, step: int) -> None:
        job = by_id[job_id]
        delta = step - seen.get(job_id, 0)
        if delta > 0:
            seen[job_id] = step
            bar.update(delta * job["flops_per_step"])
            bar.set_postfix_str(job_id, refresh=False)

    if workers == 1:
        global _QUEUE
        q: Any = _LocalQueue(advance)
        _QUEUE, saved = q, _QUEUE
        try:
            for job in todo:
                results[job["id"]] = run_any(job, payload, tokenizer_path)
        finally:
            _QUEUE = saved
        return
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(threads, q)) as pool:
        futures: dict[Future, dict[str, Any]] = {pool.submit(run_any, j, payload, tokenizer_path): j for j in todo}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(q, advance)
            for fut in done:
                job = futures[fut]
                try:
                    results[job["id"]] = fut.result()
                except UnimaskError as exc:
                    for other in pending:
                        other.cancel()
                    raise UnimaskError(f"run {job['id']} failed: {exc}; finished runs are kept and reused when "
                                       "the study is started again") from None
        _drain(q, advance)


class _LocalQueue:
    """The in-process stand-in for the workers' progress queue."""

    def __init__(self, advance: Any) -> None:
        self.advance = advance

    def put(self, item: tuple[str, int]) -> None:
        self.advance(*item)


def _drain(q: Any, advance: Any) -> None:
    while True:
        try:
            job_id, step = q.get_nowait()
        except queue_mod.Empty:
            return
        advance(job_id, step)


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` written by this version of unimask (one clear error otherwise)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise ConfigError(f"{p}: no results.json there; run `unimask compare` first")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigError(f"{p}: not a readable JSON results file") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise ConfigError(f"{p}: not a unimask study results file")
    if data.get("version") != RESULTS_VERSION:
        raise ConfigError(f"{p}: results format version {data.get('version')!r}, this unimask reads version "
                          f"{RESULTS_VERSION}; run the study again with this version")
    if not data.get("runs"):
        raise ConfigError(f"{p}: holds no runs")
    return data


__all__ = ["RESULTS_FORMAT", "RESULTS_VERSION", "load_results", "plan_jobs", "run_study", "time_prefix_vs_causal"]

