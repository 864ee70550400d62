"""End-to-end training on the built-in corpus: each family learns, resume is exact, UL2R continuation runs,
and bad input gives one clear line without touching earlier results."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from unimask import load_model
from unimask.cli import main
from unimask.train import TrainConfig, TrainingDiverged, train
from unimask.train.metrics import read_metrics

FAMILIES = {
    "causal": ("tiny-causal", "causal_lm"),
    "prefix": ("tiny-prefix", "prefix_lm"),
    "encoder_decoder": ("tiny-encdec", "span_corruption"),
}


def run_config(out_dir: Path, **changes) -> dict:
    base = {"model": "tiny-causal", "objective": "causal_lm", "data": {"seq_len": 64, "batch_size": 8},
            "steps": 20, "eval_every": 20, "eval_batches": 4, "optimizer": {"lr": 3e-3, "warmup_steps": 3},
            "out_dir": str(out_dir), "progress": False, "tensorboard": False}
    base.update(changes)
    return base


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def causal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("causal") / "run"
    result = train(run_config(out, tensorboard=True))
    return result


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_lowers_heldout_loss(family, causal_run, tmp_path):
    model, objective = FAMILIES[family]
    result = causal_run if family == "causal" else train(run_config(tmp_path / family, model=model,
                                                                     objective=objective))
    evals = read_metrics(result.out_dir, "eval")
    assert sorted(evals) == [0, 20]
    start, end = evals[0]["loss"], evals[20]["loss"]
    assert end < start - 1.0, (family, start, end)  # ln(4096) = 8.3 at init; clearly lower after 20 steps
    assert evals[20]["ppl"] == pytest.approx(math.exp(end))
    trained = read_metrics(result.out_dir, "train")
    assert sorted(trained) == list(range(1, 21))
    assert all(r["tokens_per_s"] > 0 and 0 < r["loss_tokens"] <= r["tokens"] for r in trained.values())
    model_ = load_model(result.checkpoint)  # the checkpoint loads as a plain model, with its tokenizer
    assert model_.config.arch == {"causal": "causal", "prefix": "prefix"}.get(family, "encoder_decoder")
    assert (result.checkpoint / "model" / "tokenizer.json").is_file()


def test_progress_artifacts(causal_run):
    out = causal_run.out_dir
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "config.yaml").is_file()
    assert TrainConfig.load(out / "config.yaml").steps == 20


def test_resume_equals_uninterrupted_run(tmp_path):
    """Interrupt an encoder-decoder run (dropout, grad accumulation) and resume through the CLI."""
    cfg = run_config(tmp_path / "x", model={"preset": "tiny-encdec", "dropout": 0.1}, objective="span_corruption",
                     steps=6, eval_every=3, data={"seq_len": 48, "batch_size": 4},
                     optimizer={"lr": 3e-3, "warmup_steps": 2, "grad_accum": 2})
    full = train({**cfg, "out_dir": str(tmp_path / "full")})
    stopped = train({**cfg, "out_dir": str(tmp_path / "cut")}, should_stop=lambda step: step == 4)
    assert stopped.stopped_early and stopped.step == 4 and stopped.checkpoint.name == "checkpoint-4"
    config_file = tmp_path / "run.yaml"
    config_file.write_text(TrainConfig.from_dict({**cfg, "out_dir": str(tmp_path / "cut")}).to_yaml())
    assert main(["train", "--config", str(config_file), "--resume"]) == 0
    a = [r["loss"] for _, r in sorted(read_metrics(tmp_path / "full").items())]
    b = [r["loss"] for _, r in sorted(read_metrics(tmp_path / "cut").items())]
    assert len(a) == 6 and a == b  # exactly equal, step for step
    ea, eb = read_metrics(tmp_path / "full", "eval"), read_metrics(tmp_path / "cut", "eval")
    assert ea[6]["loss"] == eb[6]["loss"]
    ma, mb = load_model(full.checkpoint), load_model(tmp_path / "cut" / "checkpoint-6")
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))


def test_init_from_causal_as_prefix_with_ul2r(causal_run, tmp_path):
    """The U-PaLM recipe: continue a causal checkpoint as a prefix decoder on the UL2R mixture."""
    result = train(run_config(tmp_path / "ul2r", init_from=str(causal_run.out_dir), model={"arch": "prefix"},
                              objective="ul2r", steps=4, eval_every=4,
                              optimizer={"lr": 1e-3, "warmup_steps": 1, "schedule": "wsd"}))
    evals = read_metrics(result.out_dir, "eval")
    fresh = train(run_config(tmp_path / "fresh", model="tiny-prefix", objective="ul2r", steps=1, eval_every=1))
    fresh_start = read_metrics(fresh.out_dir, "eval")[0]["loss"]
    assert evals[0]["loss"] < fresh_start - 0.5  # it starts from the trained causal weights
    model = load_model(result.checkpoint)
    assert model.config.arch == "prefix"
    assert math.isfinite(result.eval_loss)


# Bad input ------------------------------------------------------------------------------------------------

def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["train", *args, "--no-progress"])
    err = capsys.readouterr().err.strip()
    return code, err


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_missing_data_path(tmp_path, capsys):
    cfg = _yaml(tmp_path, f"model: tiny-causal\ndata: {{path: {tmp_path / 'nope.txt'}}}\nout_dir: {tmp_path / 'o'}\n")
    code, err = _cli(capsys, "--config", str(cfg))
    assert code == 2 and "nope.txt" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_config_typo_names_the_key(tmp_path, capsys):
    cfg = _yaml(tmp_path, "model: tiny-causal\noptimzer: {lr: 1e-3}\n")
    code, err = _cli(capsys, "--config", str(cfg))
    assert code == 2 and "'optimzer'" in err and "did you mean 'optimizer'" in err
    code, err = _cli(capsys, "--config", str(_yaml(tmp_path, "model: tiny-causal\n")), "--set", "data.seq_lenn=3")
    assert code == 2 and "seq_lenn" in err


def test_resume_with_another_shape_touches_nothing(causal_run, tmp_path, capsys):
    before = tree_digest(causal_run.out_dir)
    cfg = _yaml(tmp_path, TrainConfig.from_dict(run_config(causal_run.out_dir)).to_yaml())
    code, err = _cli(capsys, "--config", str(cfg), "--resume", "--set", "model.d_model=128",
                     "--set", "steps=30")
    assert code == 2 and "d_model" in err and len(err.splitlines()) == 1
    code, err = _cli(capsys, "--config", str(cfg))  # no --resume: a finished run is never overwritten
    assert code == 2 and "--resume" in err
    assert tree_digest(causal_run.out_dir) == before


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import unimask.models.base as base

    calls = {"n": 0}
    real = base.head_loss

    def poisoned(model, h, labels):
        calls["n"] += 1
        mean, total, n = real(model, h, labels)
        if calls["n"] == 4:  # the fourth training forward
            total = total * float("nan")
        return mean, total, n

    monkeypatch.setattr(base, "head_loss", poisoned)
    cfg = run_config(tmp_path / "nan", steps=8, save_every=1, keep_last=5, eval_every=0,
                     data={"seq_len": 32, "batch_size": 2})
    with pytest.raises(TrainingDiverged) as info:
        train(cfg)
    message = str(info.value)
    assert "step 4" in message and "nan" in message and "checkpoint-3" in message and "\n" not in message
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "nan").glob("checkpoint-*"))
    assert steps == [1, 2, 3]
    model = load_model(tmp_path / "nan" / "checkpoint-3")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    records = [json.loads(line) for line in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]


def test_resume_of_a_finished_run_has_nothing_to_do(causal_run, tmp_path, capsys):
    """An automatic restart loop around `--resume` must end: a finished run exits 0 and touches nothing."""
    before = tree_digest(causal_run.out_dir)
    cfg = _yaml(tmp_path, TrainConfig.from_dict(run_config(causal_run.out_dir)).to_yaml())  # steps: 20, done
    code = main(["train", "--config", str(cfg), "--resume", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0 and err.strip() == ""
    assert out.startswith("nothing to do:") and "already at step 20" in out and "raise steps" in out
    assert len(out.strip().splitlines()) == 1
    assert tree_digest(causal_run.out_dir) == before


def test_too_small_corpus_fails_before_writing_anything(tmp_path, capsys):
    (tmp_path / "one.txt").write_text("a single short document about functions and values")
    out = tmp_path / "o"
    cfg = _yaml(tmp_path, f"model: tiny-causal\ndata: {{path: {tmp_path / 'one.txt'}, seq_len: 16, batch_size: 1}}\n"
                          f"steps: 2\nout_dir: {out}\ntensorboard: false\n")
    code, err = _cli(capsys, "--config", str(cfg))
    assert code == 2 and "validation split yields no batch" in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing to clean up before the next try
    code, _ = _cli(capsys, "--config", str(cfg), "--set", "data.validation_fraction=0")
    assert code == 0
    assert read_metrics(out, "eval") == {} and sorted(read_metrics(out)) == [1, 2]


def _poison_fourth_loss(monkeypatch):
    import unimask.models.base as base

    calls = {"n": 0}
    real = base.head_loss

    def poisoned(model, h, labels):
        calls["n"] += 1
        mean, total, n = real(model, h, labels)
        if calls["n"] == 4:
            total = total * float("nan")
        return mean, total, n

    monkeypatch.setattr(base, "head_loss", poisoned)


def test_overwrite_keeps_the_replaced_run_until_the_new_one_succeeds(tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = run_config(out, steps=2, eval_every=0, save_every=1, data={"seq_len": 32, "batch_size": 2})
    train(cfg)
    (out / "notes.txt").write_text("mine")  # not unimask's: never moved or deleted
    old = tree_digest(out)
    _poison_fourth_loss(monkeypatch)
    with pytest.raises(TrainingDiverged, match="replaced run is kept in") as info:
        train({**cfg, "steps": 6, "overwrite": True})
    kept = Path(str(info.value).rsplit("kept in ", 1)[1])
    assert kept.parent == out and kept.name.startswith(".replaced-")
    # the previous run, byte for byte, next to the failed run's own checkpoints
    moved = {name: digest for name, digest in old.items() if name != "notes.txt"}
    assert tree_digest(kept) == moved
    assert (out / "notes.txt").read_text() == "mine"
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == ["checkpoint-2", "checkpoint-3"]  # the new run's
    monkeypatch.undo()
    result = train({**cfg, "overwrite": True})  # replaces the failed run; this time it succeeds
    assert result.checkpoint == out / "checkpoint-2"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert list(out.glob(".replaced-*")) == [kept]  # what it replaced is deleted after success; the older one stays
    assert (out / "notes.txt").read_text() == "mine"


def test_out_dir_that_cannot_be_created_fails_first(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    cfg = _yaml(tmp_path, f"model: tiny-causal\nout_dir: {tmp_path / 'file' / 'run'}\n")
    code, err = _cli(capsys, "--config", str(cfg))
    assert code == 2 and "is a file" in err and len(err.splitlines()) == 1
    assert (tmp_path / "file").read_text() == "x"


def test_no_grad_forward_sees_every_optimizer_step():
    """Held-out evaluation between training steps must use the current weights: the fused AdamW kernel
    updates in place without bumping tensor versions, so nothing may cache weights keyed on versions."""
    from unimask import build_model, preset
    from unimask.train.config import OptimizerConfig
    from unimask.train.optim import build_optimizer

    torch.manual_seed(0)
    model = build_model(preset("tiny-causal"))
    assert model.config.gated  # the gate/up GEMM path
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-2))
    for _ in range(2):
        with torch.no_grad():
            model(input_ids=ids)  # an evaluation between steps
        model(input_ids=ids).logits.float().pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        got = model(input_ids=ids).logits
    fresh = build_model(preset("tiny-causal"))
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        want = fresh(input_ids=ids).logits
    assert torch.equal(got, want)
