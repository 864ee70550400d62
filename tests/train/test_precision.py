"""``precision: auto`` decides from a probe of the model's own training step, leaves no trace, is remembered
per machine and model, and a resumed run keeps the precision it was trained in."""

from __future__ import annotations

import json

import pytest
import torch

from unimask.cli import main
from unimask.models import build_model
from unimask.train import loop, train
from unimask.train import precision as P
from unimask.train.metrics import read_metrics

FAST = P.PrecisionProbe("AVX512", 100.0, 400.0, "bf16")  # a matmul probe that lets bf16 in
SLOW = P.PrecisionProbe("AVX2", 100.0, 0.0, "fp32")  # one that rules it out


def tiny():
    torch.manual_seed(0)
    model = build_model({"preset": "tiny-causal", "vocab_size": 64, "d_model": 32, "n_layers": 1, "n_heads": 2,
                         "d_ff": 64, "dropout": 0.1})
    ids = torch.randint(4, 64, (2, 12))
    return model, {"input_ids": ids, "labels": ids}


def test_choose_needs_a_clear_speedup():
    assert P.choose(1.0, 0.5) == "bf16"
    assert P.choose(1.0, 1.0 / P.STEP_SPEEDUP) == "bf16"
    assert P.choose(1.0, 0.9) == "fp32"  # 1.11x: a near tie keeps fp32
    assert P.choose(1.0, 2.0) == "fp32"


def test_probe_step_times_both_and_leaves_no_trace():
    model, batch = tiny()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    marker = torch.full_like(model.lm_head.weight, 3.0)
    model.lm_head.weight.grad = marker
    rng = torch.get_rng_state()
    probe = P.probe_step(model, batch, cpu=FAST)  # real steps in both precisions (dropout draws random numbers)
    assert probe.choice in ("fp32", "bf16") and probe.fp32_step_s > 0 and probe.bf16_step_s > 0
    assert probe.choice == P.choose(probe.fp32_step_s, probe.bf16_step_s)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.lm_head.weight.grad is marker
    assert all(p.grad is None for p in model.parameters() if p is not model.lm_head.weight)
    assert not model.training


def test_probe_step_decides_by_the_measured_steps():
    model, batch = tiny()
    calls: list[str] = []

    def timer(seconds):
        def time_step(m, b, precision):
            calls.append(precision)
            return seconds[precision]
        return time_step

    fast = P.probe_step(model, batch, cpu=FAST, repeats=2, timer=timer({"fp32": 1.0, "bf16": 0.5}))
    assert fast.choice == "bf16" and fast.fp32_step_s == 1.0 and fast.bf16_step_s == 0.5
    assert calls == ["fp32", "bf16"] * 3  # one warm-up each, then interleaved
    assert P.probe_step(model, batch, cpu=FAST, timer=timer({"fp32": 1.0, "bf16": 0.95})).choice == "fp32"
    calls.clear()
    ruled_out = P.probe_step(model, batch, cpu=SLOW, timer=timer({"fp32": 1.0, "bf16": 0.1}))
    assert ruled_out.choice == "fp32" and calls == []  # no emulated bf16 step is ever timed
    assert "no fast bf16" in ruled_out.summary()


def test_decisions_are_remembered_per_machine_and_model(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIMASK_CACHE", str(tmp_path))
    measured = []

    def measure(choice):
        def run():
            measured.append(choice)
            return P.PrecisionProbe("AVX512", 1.0, 2.0, choice, 1.0, 0.5 if choice == "bf16" else 1.0)
        return run

    first = P.remembered({"model": "a"}, measure("bf16"))
    again = P.remembered({"model": "a"}, measure("fp32"))
    assert measured == ["bf16"] and first.remembered is None
    assert again.choice == "bf16" and again.remembered and "measured on this machine before" in again.summary()
    assert P.remembered({"model": "b"}, measure("fp32")).choice == "fp32"  # another model: measured anew
    for entry in (tmp_path / "precision").glob("*.json"):
        entry.write_text("{not json")
    assert P.remembered({"model": "a"}, measure("fp32")).choice == "fp32"  # a broken entry: measured again
    assert measured == ["bf16", "fp32", "fp32"]


def run_config(out, **changes):
    base = {"model": {"preset": "tiny-causal", "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64},
            "data": {"seq_len": 32, "batch_size": 4}, "steps": 4, "eval_every": 0, "save_every": 2,
            "optimizer": {"lr": 3e-3, "warmup_steps": 1}, "out_dir": str(out), "progress": False,
            "tensorboard": False}
    base.update(changes)
    return base


def losses(out):
    return [r["loss"] for _, r in sorted(read_metrics(out).items())]


def test_trainer_auto_trains_in_the_probed_precision_and_resume_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIMASK_CACHE", str(tmp_path / "cache"))
    asked = []

    def fake(choice):
        def probe(model, batch, **kw):
            asked.append(sorted(batch))
            return P.PrecisionProbe("AVX512", 1.0, 4.0, choice, 1.0, 0.5 if choice == "bf16" else 1.0)
        return probe

    fp32 = train(run_config(tmp_path / "fp32", precision="fp32"))
    bf16 = train(run_config(tmp_path / "bf16", precision="bf16"))
    assert losses(tmp_path / "fp32") != losses(tmp_path / "bf16")  # the precisions really differ
    assert asked == [] and fp32.precision == "fp32" and fp32.precision_note is None and bf16.precision == "bf16"

    monkeypatch.setattr(loop, "probe_step", fake("bf16"))
    auto = train(run_config(tmp_path / "auto"))
    assert auto.precision == "bf16" and "bf16 2.00x" in auto.precision_note
    assert losses(tmp_path / "auto") == losses(tmp_path / "bf16")  # trained under bf16 autocast
    assert asked == [["input_ids", "labels", "position_ids", "segment_ids"]]  # probed once, on a real (packed) batch
    record = read_metrics(tmp_path / "auto", "precision")[0]
    assert record["used"] == "bf16" and record["requested"] == "auto" and record["probe"]["bf16_step_s"] == 0.5
    state = json.loads((auto.checkpoint / "trainer_state.json").read_text())
    assert state["precision"] == "bf16"

    # stop at step 2, then resume where a new probe (fresh cache) would say fp32: the run keeps bf16
    cut = tmp_path / "cut"
    train(run_config(cut), should_stop=lambda step: step == 2)
    monkeypatch.setenv("UNIMASK_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setattr(loop, "probe_step", fake("fp32"))
    asked.clear()
    resumed = train(run_config(cut), resume=True)
    assert asked == [] and resumed.precision == "bf16"
    assert losses(cut) == losses(tmp_path / "auto")  # exactly the uninterrupted bf16 run


def test_cli_precision_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNIMASK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loop, "probe_step", lambda *a, **k: pytest.fail("an explicit precision is never probed"))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps(run_config(tmp_path / "run", save_every=0)))
    assert main(["train", "--config", str(cfg), "--precision", "fp32", "--no-progress"]) == 0
    assert read_metrics(tmp_path / "run", "precision")[0]["used"] == "fp32"
    with pytest.raises(SystemExit) as stop:
        main(["train", "--config", str(cfg), "--precision", "half", "--no-progress"])
    assert stop.value.code == 2 and "--precision" in capsys.readouterr().err
