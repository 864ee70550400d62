"""The numerics guard: divergence is caught at the step where it happens, the run stops (or skips) with one
line naming the step, and the checkpoint it names as last good was taken before the divergence began."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from unimask import load_model
from unimask.cli import main
from unimask.train import TrainingDiverged, train
from unimask.train.metrics import read_metrics
from unimask.train.numerics import NumericsGuard


def run_config(out_dir: Path, **changes) -> dict:
    base = {"model": "tiny-causal", "objective": "causal_lm", "data": {"seq_len": 32, "batch_size": 2},
            "steps": 6, "eval_every": 0, "save_every": 2, "keep_last": 5,
            "optimizer": {"lr": 3e-3, "warmup_steps": 2}, "out_dir": str(out_dir), "progress": False,
            "tensorboard": False}
    base.update(changes)
    return base


def _cli(capsys, tmp_path: Path, cfg: dict, *args: str) -> tuple[int, str]:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = main(["train", "--config", str(path), "--no-progress", *args])
    return code, capsys.readouterr().err.strip()


def test_lr_1e3_stops_at_the_spike_instead_of_training_a_dead_model(tmp_path, capsys):
    torch.set_num_threads(1)
    cfg = run_config(tmp_path / "run", steps=30, optimizer={"lr": 1e3, "weight_decay": 0.0})
    code, err = _cli(capsys, tmp_path, cfg)
    assert code == 2 and len(err.splitlines()) == 1
    assert "step 2:" in err and "jumped" in err and "no checkpoint was taken before the divergence" in err
    assert sorted(read_metrics(tmp_path / "run")) == [1]  # nothing logged or saved after the anomaly
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_dead_gradient_is_caught_when_the_spike_check_is_off(tmp_path):
    torch.set_num_threads(1)
    cfg = run_config(tmp_path / "run", steps=30, anomaly_loss_factor=1e30, anomaly_zero_grad_steps=4,
                     optimizer={"lr": 1e3, "weight_decay": 0.0})
    with pytest.raises(TrainingDiverged) as info:
        train(cfg)
    message = str(info.value)
    # the gradient dies at step 3 (after the explosion of step 2); four zero steps in a row end it at step 6
    assert message.startswith("step 6: the gradient norm has been 0 since step 3"), message
    assert info.value.anomaly.bad_from == 2
    assert "the last good checkpoint" not in message  # checkpoint-2 and -4 hold the exploded weights
    moved = sorted(p.name.split(".")[0] for p in (tmp_path / "run").glob("checkpoint-*.diverged-*"))
    assert moved == ["checkpoint-2", "checkpoint-4"]


def test_divergence_names_a_checkpoint_from_before_it_that_resumes(tmp_path, capsys):
    """Healthy for six steps, then lr=1e3 with weight decay: the spike at step 8 condemns checkpoint-7 (its
    weights produced it); checkpoint-6 is named, the later one is moved aside, and --resume trains on."""
    torch.set_num_threads(1)
    out = tmp_path / "run"
    train(run_config(out))
    diverging = run_config(out, steps=20, save_every=1, optimizer={"lr": 1e3, "weight_decay": 0.1})
    code, err = _cli(capsys, tmp_path, diverging, "--resume")
    assert code == 2 and len(err.splitlines()) == 1 and "step 8:" in err
    assert f"the last good checkpoint is {out / 'checkpoint-6'}" in err and "checkpoint-7.diverged-" in err
    assert sorted(p.name for p in out.glob("checkpoint-?")) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    code, err = _cli(capsys, tmp_path, run_config(out, steps=10), "--resume")  # a sane lr again
    assert code == 0, err
    losses = [r["loss"] for s, r in sorted(read_metrics(out).items()) if s > 6]
    assert len(losses) == 4 and all(math.isfinite(x) and x < 9.0 for x in losses)
    model = load_model(out / "checkpoint-10")
    assert all(bool(torch.isfinite(p).all()) and float(p.detach().abs().max()) < 100 for p in model.parameters())


def _poison(monkeypatch, forwards: set[int]) -> None:
    import unimask.models.base as base

    calls = {"n": 0}
    real = base.head_loss

    def poisoned(model, h, labels):
        calls["n"] += 1
        mean, total, n = real(model, h, labels)
        if calls["n"] in forwards:
            total = total * float("nan")
        return mean, total, n

    monkeypatch.setattr(base, "head_loss", poisoned)


def test_skip_drops_the_update_counts_it_and_stops_after_too_many(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    _poison(monkeypatch, {3, 5})
    result = train(run_config(tmp_path / "skip", on_anomaly="skip"))
    records = read_metrics(tmp_path / "skip")
    assert [s for s, r in sorted(records.items()) if r["skipped"]] == [3, 5]
    assert records[6]["skipped_steps"] == 2 and math.isnan(records[3]["loss"])
    assert all(math.isfinite(records[s]["loss"]) for s in (1, 2, 4, 6))
    assert all(bool(torch.isfinite(p).all()) for p in load_model(result.checkpoint).parameters())
    _poison(monkeypatch, {3, 5})
    with pytest.raises(TrainingDiverged, match=r"^step 5: the training loss is nan \(2 anomalous steps, more than "
                                                r"anomaly_max_skips 1\)"):
        train(run_config(tmp_path / "few", on_anomaly="skip", anomaly_max_skips=1))


def test_exploded_weights_are_never_saved_as_good(tmp_path):
    torch.set_num_threads(1)
    with pytest.raises(TrainingDiverged, match=r"^step 2: tensor '.*' holds a weight of .* above "
                                                r"anomaly_max_weight 0.5"):
        train(run_config(tmp_path / "run", anomaly_max_weight=0.5))
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_guard_rules():
    guard = NumericsGuard(factor=3.0, warmup=4, zero_steps=3)
    assert guard.check(1, 8.0, 1.0) is None
    assert guard.check(2, 23.0, 1.0) is None  # under 3x the highest loss so far (warm-up)
    spike = guard.check(3, 70.0, 1.0)
    assert spike is not None and spike.bad_from == 2 and "highest loss so far" in spike.reason
    for step, loss in zip(range(4, 10), [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]):
        assert guard.check(step, loss, 1.0) is None
    spike = guard.check(10, 6.5, 1.0)  # over 3x the running median 2.0 after warm-up
    assert spike is not None and "running median" in spike.reason
    tiny = NumericsGuard(factor=3.0, warmup=1, zero_steps=0)
    assert tiny.check(1, 0.01, 1.0) is None and tiny.check(2, 0.9, 1.0) is None  # under 1 nat: never a spike
    assert tiny.check(3, 0.0, 0.0) is None  # zero_steps 0: the dead-gradient check is off
    nan = guard.check(11, 2.0, float("inf"))
    assert nan is not None and nan.bad_from == 11 and "gradient norm is inf" in nan.reason
    assert guard.check(12, 2.0, 0.0) is None and guard.check(13, 2.0, 0.0) is None
    dead = guard.check(14, 2.0, 0.0)
    assert dead is not None and dead.fatal and dead.bad_from == 11
    copy = NumericsGuard(factor=3.0, warmup=4, zero_steps=3)
    copy.load_state_dict(guard.state_dict())
    assert copy.state_dict() == guard.state_dict()
