"""TrainConfig parsing and validation, the schedules and the AdamW parameter groups."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from unimask import build_model
from unimask.errors import ConfigError
from unimask.train.config import OptimizerConfig, TrainConfig, apply_overrides, parse_value
from unimask.train.optim import Schedule, build_optimizer, lr_at, param_groups


def test_yaml_with_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: tiny-causal\noptimizer: {lr: 1e-3, warmup_steps: 5}\ndata: {seq_len: 64}\nsteps: 7\n")
    cfg = TrainConfig.load(path, ["optimizer.lr=3e-4", "data.batch_size=2", "model.n_layers=3", "steps=9",
                                  "optimizer.clip_grad_norm=null"])
    assert cfg.optimizer.lr == pytest.approx(3e-4) and isinstance(cfg.optimizer.lr, float)
    assert cfg.optimizer.warmup_steps == 5 and cfg.optimizer.clip_grad_norm is None
    assert cfg.data == {"seq_len": 64, "batch_size": 2}
    assert cfg.model == {"preset": "tiny-causal", "n_layers": 3}
    assert cfg.steps == 9


@pytest.mark.parametrize(("raw", "override", "needle"), [
    ({"optimzer": {}}, [], "unknown key 'optimzer' (did you mean 'optimizer'?)"),
    ({}, ["optimizer.learning_rate=1"], "optimizer.learning_rate"),
    ({"optimizer": {"warmup": 3}}, [], "unknown key 'warmup'"),
    ({}, ["stepz=3"], "unknown key 'stepz' (did you mean 'steps'?)"),
    ({}, ["steps"], "expected key=value"),
    ({"steps": 0}, [], "'steps' must be >= 1"),
    ({"optimizer": {"lr": -1.0}}, [], "optimizer.lr"),
    ({"parallel": "zero3"}, [], "'parallel'"),
    ({"init_from": "x", "model": "tiny-causal"}, [], "clash"),
])
def test_bad_configs_name_the_field(raw, override, needle):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(apply_overrides(raw, override))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_loss_on_all_tokens_only_for_a_causal_decoder():
    assert TrainConfig.from_dict({"data": {"loss_on_targets_only": False}}).data_config().loss_on_targets_only is False
    for model, why in (("tiny-prefix", "leak the tokens it predicts"), ("tiny-encdec", "never decodes its source")):
        with pytest.raises(ConfigError, match=why) as info:
            TrainConfig.from_dict({"model": model, "data": {"loss_on_targets_only": False}})
        assert "data.loss_on_targets_only" in str(info.value) and "\n" not in str(info.value)


def test_loss_on_all_tokens_cli_shortcut(monkeypatch, tmp_path):
    import unimask.train
    from unimask.cli import main

    seen = []

    def fake_train(config, resume=None):
        seen.append(config)
        raise SystemExit(0)

    monkeypatch.setattr(unimask.train, "train", fake_train)
    with pytest.raises(SystemExit):
        main(["train", "--config", "tiny-causal", "--loss-on-all-tokens", "--out-dir", str(tmp_path / "run")])
    assert seen[0].data_config().loss_on_targets_only is False
    seen.clear()
    with pytest.raises(SystemExit):
        main(["train", "--config", "tiny-causal", "--out-dir", str(tmp_path / "run")])
    assert seen[0].data_config().loss_on_targets_only is True


def test_parse_value():
    assert parse_value("1e-3") == pytest.approx(1e-3)
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("true") is True and parse_value("null") is None
    assert parse_value("ddp") == "ddp"
    assert parse_value("{a: 1}") == {"a": 1}


def test_schedules():
    cos = OptimizerConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=4, schedule="cosine")
    lrs = [lr_at(s, 20, cos) for s in range(20)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))  # monotone decay after warmup
    wsd = OptimizerConfig(lr=1.0, min_lr_ratio=0.0, warmup_steps=2, schedule="wsd", decay_steps=5)
    lrs = [lr_at(s, 20, wsd) for s in range(20)]
    assert lrs[2:15] == pytest.approx([1.0] * 13)  # stable phase
    assert lrs[15:] == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])
    assert not math.isclose(lrs[14], lrs[15])


def test_weight_decay_only_on_matrices():
    model = build_model("tiny-causal")
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert model.embed.weight in decay["params"]  # tied with the head, listed once


def test_schedule_sets_the_learning_rate():
    model = build_model("tiny-causal")
    cfg = OptimizerConfig(lr=2.0, warmup_steps=2)
    opt = build_optimizer(model, cfg)
    sched = Schedule(opt, 10, cfg)
    assert sched.apply() == pytest.approx(1.0)
    assert all(g["lr"] == pytest.approx(1.0) for g in opt.param_groups)
    sched.advance()
    state = sched.state_dict()
    other = Schedule(opt, 10, cfg)
    other.load_state_dict(state)
    assert other.apply() == pytest.approx(2.0)
    assert isinstance(opt, torch.optim.AdamW)


def test_shipped_run_configs_are_valid():
    from unimask.commands.train import shipped_configs

    configs = shipped_configs()
    assert {"tiny-causal", "tiny-prefix", "tiny-encdec", "tiny-ul2r"} <= set(configs)
    families = set()
    for path in configs.values():
        cfg = TrainConfig.load(path)
        model = cfg.model
        arch = model["arch"] if cfg.init_from else (model.get("preset") if isinstance(model, dict) else model)
        families.add((arch, cfg.objective))
    assert ("tiny-encdec", "span_corruption") in families and ("prefix", "ul2r") in families
