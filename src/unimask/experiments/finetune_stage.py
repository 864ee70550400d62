"""The study's fine-tuning stage (the notes' Q8): pretrain, then adapt with a little labelled data.

For each family row in ``finetune_rows``, each labelled-set size in ``finetune_sizes`` (nested: the small
sets are the first examples of the large one) and each seed, two runs on the same labels with the same
steps: fine-tuning the study's pretrained model of that seed, and training the same architecture from
random initialisation. With ``finetune_adapt`` the causal decoder is also adapted into an
encoder-decoder the T5Gemma way (``unimask.finetune.adapt``) and fine-tuned, against the natively
pretrained encoder-decoder of the same shape (``encdec-prefix-compute``: both pretrained with the same
FLOPs). The task (``finetune_task``, default ``median``) is held out of the pretraining corpus; every
model is scored on its test split by likelihood ranking and greedy exact match.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from unimask.data.cache import atomic_write_text
from unimask.experiments.study import ROWS, StudySpec

NATIVE_ROW = "encdec-prefix-compute"  # the encoder-decoder with the adapted model's shape (L + L layers)
FT_SEQ_LEN, FT_TARGET_LEN, FT_BATCH = 32, 8, 16


def write_datasets(spec: StudySpec, out: Path) -> tuple[dict[int, Path], list[dict[str, Any]]]:
    """The labelled sets (JSONL, nested) and the test instances."""
    from unimask.data.task_suite import instances

    folder = out / "finetune"
    biggest = instances(spec.finetune_task, max(spec.finetune_sizes), seed=0, split="train")
    paths = {}
    for n in spec.finetune_sizes:
        paths[n] = folder / f"{spec.finetune_task}-{n}.jsonl"
        atomic_write_text(paths[n], "".join(json.dumps({"input": i.prompt, "output": i.answer}) + "\n"
                                            for i in biggest[:n]))
    test = [{"prompt": i.prompt, "answer": i.answer.strip(), "choices": list(i.choices), "label": i.label}
            for i in instances(spec.finetune_task, spec.eval_instances, seed=1, split="test")]
    return paths, test


def plan_finetune(spec: StudySpec, pretrained: dict[str, dict[str, Any]], corpus: Any, tok: Any, out: Path,
                  precision: str, device: str) -> list[dict[str, Any]]:
    """The fine-tuning jobs (JSON-able), given the finished pretraining runs by id."""
    from unimask.analysis.compute import forward_flops_per_sequence

    if not spec.finetune_sizes:
        return []
    paths, _ = write_datasets(spec, out)
    jobs = []

    def job(kind: str, row: str, init: str, n: int, seed: int, init_from: str | None, model: Any,
            ft_seed: int) -> dict[str, Any]:
        config = spec.model_config(ROWS["causal"] if kind == "adapted" else ROWS[row], tok.vocab_size, tok.pad_id,
                                   tok.bos_id, tok.eos_id)
        if kind == "adapted":
            config = config.replace(arch="encoder_decoder", n_encoder_layers=config.n_layers)
        target = FT_TARGET_LEN if config.arch == "encoder_decoder" else None
        fwd = forward_flops_per_sequence(config, FT_SEQ_LEN, target)
        data = {"path": str(paths[n]), "tokenizer": str(corpus.tokenizer_path), "seq_len": FT_SEQ_LEN,
                "batch_size": FT_BATCH, "validation_fraction": 0.0}
        if config.arch == "encoder_decoder":
            data["target_len"] = FT_TARGET_LEN
        train_config: dict[str, Any] = {
            "objective": "supervised", "data": data, "steps": spec.finetune_steps, "eval_every": 0,
            "save_every": 0, "keep_last": 1, "seed": ft_seed, "precision": precision, "device": device,
            "optimizer": {"lr": spec.finetune_lr, "warmup_steps": min(10, spec.finetune_steps // 5),
                          "schedule": "cosine", "weight_decay": 0.1},
            "out_dir": str(out / "finetune" / "runs" / f"{row}-{init}-n{n}-s{seed}-f{ft_seed}"), "overwrite": True,
            "progress": False, "tensorboard": False}
        if init_from is not None:
            train_config["init_from"] = init_from
            if model:
                train_config["model"] = model
        else:
            train_config["model"] = config.to_dict()
        return {"id": f"ft-{row}-{init}-n{n}-s{seed}-f{ft_seed}", "kind": "finetune", "row": row, "init": init,
                "n": n, "seed": seed, "finetune_seed": ft_seed, "arch": config.arch, "steps": spec.finetune_steps,
                "flops_per_step": 3.0 * FT_BATCH * (fwd["matmul"] + fwd["attention"]),
                "flops": 3.0 * FT_BATCH * (fwd["matmul"] + fwd["attention"]) * spec.finetune_steps,
                "train_config": train_config, "run_dir": train_config["out_dir"]}

    for seed in range(spec.seeds):
        for k in range(spec.finetune_seeds):
            f = 1000 * seed + k
            for n in spec.finetune_sizes:
                for row in spec.finetune_rows:
                    run = pretrained.get(f"{row}-s{seed}")
                    if run is None:
                        continue
                    jobs.append(job("finetune", row, "pretrained", n, seed, run["checkpoint"], None, f))
                    jobs.append(job("finetune", row, "scratch", n, seed, None, None, f))
                causal, native = pretrained.get(f"causal-s{seed}"), pretrained.get(f"{NATIVE_ROW}-s{seed}")
                if spec.finetune_adapt and causal is not None and native is not None:
                    jobs.append(job("adapted", "adapted-encdec", "pretrained", n, seed, causal["checkpoint"],
                                    {"arch": "encoder_decoder"}, f))
                    jobs.append(job("finetune", NATIVE_ROW, "pretrained", n, seed, native["checkpoint"], None, f))
    for j in jobs:
        j["flops_per_step"] = j["flops"] / max(1, j["steps"])
    return jobs


def run_finetune_job(job: dict[str, Any], test: list[dict[str, Any]], tokenizer_path: str, tick: Any) -> dict[str, Any]:
    """Train one fine-tuning run and score it on the held-out task."""
    from unimask.checkpoint import load_model
    from unimask.data.tokenizer import Tokenizer
    from unimask.evaluation import reading_format
    from unimask.experiments.evaluate import task_scores
    from unimask.train import train
    from unimask.train.checkpoint import resolve_model_dir

    start = time.perf_counter()
    result = train(job["train_config"], should_stop=tick)
    seconds = time.perf_counter() - start
    tok = Tokenizer.load(tokenizer_path)
    model = load_model(resolve_model_dir(result.checkpoint))
    fmt = reading_format("supervised", model.config.arch, tok, model.config.start_token_id)
    items = [{"source": tok.encode(t["prompt"]), "choices": [tok.encode(c) for c in t["choices"]],
              "label": t["label"], "answer": t["answer"]} for t in test]
    scores = task_scores(model, fmt, tok, items)
    out = {k: v for k, v in job.items() if k != "train_config"}
    out.update({"train_seconds": seconds, "final_train_loss": result.train_loss, **scores,
                "params": sum(p.numel() for p in model.parameters())})
    atomic_write_text(Path(job["run_dir"]) / "result.json", json.dumps(out))
    return out


__all__ = ["NATIVE_ROW", "plan_finetune", "run_finetune_job", "write_datasets"]
