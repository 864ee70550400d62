"""Training checkpoint pieces: optimizer state through safetensors + JSON, RNG states, pruning."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from unimask import build_model
from unimask.errors import CheckpointError
from unimask.train import checkpoint as ckpt
from unimask.train.config import OptimizerConfig
from unimask.train.optim import build_optimizer


def _stepped(seed: int):
    torch.manual_seed(seed)
    model = build_model("tiny-causal")
    opt = build_optimizer(model, OptimizerConfig(lr=1e-2))
    ids = torch.randint(0, 512, (2, 9))
    for _ in range(2):
        model(ids[:, :-1], labels=ids[:, 1:]).loss.backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_optimizer_state_round_trip_is_exact(tmp_path):
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    model, opt = _stepped(0)
    state = get_optimizer_state_dict(model, opt)
    tensors, doc = ckpt.optimizer_to_files(state)
    assert "embed.weight::exp_avg" in tensors and doc["param_groups"][0]["betas"] == [0.9, 0.95]
    restored = ckpt.optimizer_from_files(tensors, doc)
    fresh = build_optimizer(model, OptimizerConfig(lr=1e-2))
    set_optimizer_state_dict(model, fresh, restored)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(a["state"][i][key], b["state"][i][key])


def test_rng_capture_and_restore():
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    state = ckpt.capture_rng()
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    ckpt.restore_rng(state)
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], got[0]) and expected[1:] == got[1:]
    tensors, rest = ckpt._rng_to_files([state])
    assert ckpt._rng_from_files(tensors, rest)[0]["torch"] == state["torch"]


def test_save_is_atomic_and_pruned(tmp_path):
    model, opt = _stepped(0)
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    osd = get_optimizer_state_dict(model, opt)
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, model_state=model.state_dict(), model_config=model.config,
                             tokenizer=None, optimizer_state=osd, rng=[ckpt.capture_rng()],
                             trainer_state={"schedule": {"step": step}, "data": [{}], "world_size": 1})
        ckpt.prune_checkpoints(tmp_path, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(CheckpointError, match="never overwritten"):
        ckpt.save_checkpoint(tmp_path, 3, model_state=model.state_dict(), model_config=model.config,
                             tokenizer=None, optimizer_state=osd, rng=[ckpt.capture_rng()], trainer_state={})
    loaded = ckpt.load_checkpoint(tmp_path)  # a run directory resolves to its latest checkpoint
    assert loaded.step == 3 and loaded.model_config == model.config
    assert torch.equal(loaded.optimizer_state["state"]["embed.weight"]["exp_avg"],
                       osd["state"]["embed.weight"]["exp_avg"])
    assert ckpt.resolve_model_dir(tmp_path) == tmp_path / "checkpoint-3" / "model"
    from unimask import load_model

    reloaded = load_model(tmp_path / "checkpoint-3")  # a training checkpoint loads as a model
    assert torch.equal(reloaded.embed.weight, model.embed.weight)


def test_truncated_checkpoint_is_reported(tmp_path):
    model, opt = _stepped(0)
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    path = ckpt.save_checkpoint(tmp_path, 1, model_state=model.state_dict(), model_config=model.config,
                                tokenizer=None, optimizer_state=get_optimizer_state_dict(model, opt),
                                rng=[ckpt.capture_rng()], trainer_state={})
    data = (path / ckpt.OPTIM_TENSORS).read_bytes()
    (path / ckpt.OPTIM_TENSORS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such"):
        ckpt.resolve_resume(tmp_path / "nope")


def test_a_failed_write_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    model, opt = _stepped(0)
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    osd = get_optimizer_state_dict(model, opt)
    kwargs = dict(model_state=model.state_dict(), model_config=model.config, tokenizer=None, optimizer_state=osd,
                  rng=[ckpt.capture_rng()], trainer_state={})
    ckpt.save_checkpoint(tmp_path, 1, **kwargs)

    def full_disk(*args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_tensors", full_disk)
    with pytest.raises(CheckpointError, match=r"checkpoint-2: could not be written \(No space left"):
        ckpt.save_checkpoint(tmp_path, 2, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1"]  # no temporary folder left
    assert ckpt.load_checkpoint(tmp_path).step == 1
