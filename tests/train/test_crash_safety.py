"""Crash safety: a real training run killed with SIGKILL at random points (some inside a checkpoint write)
resumes to bit-identical weights; broken checkpoints are skipped (and moved aside) on resume."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from unimask import load_model
from unimask.cli import main
from unimask.errors import CheckpointError
from unimask.train import checkpoint as ckpt
from unimask.train import train

STEPS, SAVE_EVERY = 32, 4


def run_config(out_dir: Path, **changes) -> dict:
    base = {"model": "tiny-causal", "objective": "causal_lm", "data": {"seq_len": 32, "batch_size": 2},
            "steps": STEPS, "eval_every": 0, "save_every": SAVE_EVERY, "keep_last": 2,
            "optimizer": {"lr": 3e-3, "warmup_steps": 3}, "out_dir": str(out_dir), "progress": False,
            "tensorboard": False}
    base.update(changes)
    return base


def tensors_of(checkpoint: Path) -> dict[str, torch.Tensor]:
    return {**load_file(str(checkpoint / "model" / "model.safetensors")),
            **{f"optim/{k}": v for k, v in load_file(str(checkpoint / ckpt.OPTIM_TENSORS)).items()}}


def temporaries(out: Path) -> list[Path]:
    return sorted(out.glob(".tmp-checkpoint-*"))


def _launch(config: Path, resume: bool, slow_write: bool) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(ckpt.SLOW_WRITE_ENV, None)
    if slow_write:
        env[ckpt.SLOW_WRITE_ENV] = "1.0"  # the kill lands while the temporary directory is half written
    cmd = [sys.executable, "-m", "unimask", "train", "--config", str(config), "--no-progress"]
    return subprocess.Popen(cmd + (["--resume"] if resume else []), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, ready, limit: float = 30.0) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def _run_and_kill(config: Path, out: Path, resumed: bool, during_write: bool, delay: float) -> tuple[bool, bool]:
    """Start (or resume) the run and SIGKILL it: inside a checkpoint write (the hook holds the temporary
    directory open) or ``delay`` seconds after it made progress. Returns (killed, killed inside a write)."""
    proc = _launch(config, resume=resumed, slow_write=during_write)
    before = {s for s, _ in ckpt.list_checkpoints(out)}
    size = (out / "metrics.jsonl").stat().st_size if resumed else 0

    def own_temporary() -> bool:
        return any(p.name.endswith(f"-{proc.pid}") for p in temporaries(out))

    def progressed() -> bool:
        if {s for s, _ in ckpt.list_checkpoints(out)} - before:
            return True
        return resumed and (out / "metrics.jsonl").stat().st_size > size

    if during_write:
        _wait_for(proc, own_temporary)
    else:
        _wait_for(proc, progressed)
        time.sleep(delay)
    if proc.poll() is not None:  # finished before the kill
        return False, False
    inside = own_temporary()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return True, inside


def test_sigkill_at_random_points_resumes_bit_identically(tmp_path):
    torch.set_num_threads(1)
    reference = train(run_config(tmp_path / "reference"))
    out = tmp_path / "killed"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run_config(out)))
    rng = random.Random(14)
    kills = in_write = 0
    while kills < 6:
        # the first kill comes after a complete checkpoint exists; every second one inside a write
        killed, inside = _run_and_kill(config, out, kills > 0, kills % 2 == 1, rng.uniform(0.0, 0.4))
        if not killed:
            break
        kills, in_write = kills + 1, in_write + inside
        newest = ckpt.list_checkpoints(out)[-1][1]  # the last complete checkpoint always loads and verifies
        assert ckpt.verify_checkpoint(newest) is None
        ckpt.load_checkpoint(newest)
        load_model(newest)
    proc = _launch(config, resume=True, slow_write=False)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert kills >= 5 and in_write >= 3, (kills, in_write)
    final = out / f"checkpoint-{STEPS}"
    a, b = tensors_of(reference.checkpoint), tensors_of(final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical weights and moments
    assert temporaries(out) == []  # every half-written checkpoint was cleaned up
    # a restart loop around --resume ends: the finished run has nothing to do and exits 0
    proc = _launch(config, resume=True, slow_write=False)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and stdout.startswith("nothing to do")


# Broken checkpoints on resume (in-process, fast) -------------------------------------------------------

def _short(out: Path, steps: int) -> dict:
    return run_config(out, steps=steps, save_every=2, keep_last=5)


def _flip(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def six_steps(tmp_path_factory):
    torch.set_num_threads(1)
    return train(_short(tmp_path_factory.mktemp("broken") / "reference", 8))


def _yaml(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("damage", ["weights", "optimizer", "no_trainer_state", "truncated"])
def test_resume_falls_back_past_a_broken_checkpoint(six_steps, tmp_path, caplog, damage):
    reference = six_steps
    out = tmp_path / "run"
    train(_short(out, 6))
    bad = out / "checkpoint-6"
    if damage == "weights":
        _flip(bad / "model" / "model.safetensors")
    elif damage == "optimizer":
        _flip(bad / ckpt.OPTIM_TENSORS)
    elif damage == "no_trainer_state":
        (bad / ckpt.STATE).unlink()
    else:
        path = bad / "model" / "model.safetensors"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    damaged = {p.relative_to(bad): p.read_bytes() for p in bad.rglob("*") if p.is_file()}
    if damage != "no_trainer_state":
        with pytest.raises(CheckpointError, match="checksum"):
            ckpt.load_checkpoint(bad)  # a named checkpoint that does not verify is refused
    config = _yaml(tmp_path, _short(out, 8))
    assert main(["train", "--config", str(config), "--resume", "--no-progress"]) == 0
    skipped = [line for line in caplog.messages if "skipped checkpoint-6" in line]  # one line on stderr
    assert len(skipped) == 1 and ("checksum" in skipped[0] or ckpt.STATE in skipped[0])
    aside = sorted(out.glob("checkpoint-6.corrupt-*"))
    assert len(aside) == 1  # moved aside, byte for byte, never deleted
    assert {p.relative_to(aside[0]): p.read_bytes() for p in aside[0].rglob("*") if p.is_file()} == damaged
    a, b = tensors_of(reference.checkpoint), tensors_of(out / "checkpoint-8")
    assert all(torch.equal(a[k], b[k]) for k in a)  # replayed from checkpoint-4 to the same weights
    assert main(["train", "--config", str(_yaml(tmp_path, _short(out, 10))), "--resume", "--no-progress"]) == 0


def test_loading_a_corrupted_training_checkpoint_model_is_refused(tmp_path):
    out = tmp_path / "run"
    train(_short(out, 2))
    _flip(out / "checkpoint-2" / "model" / "model.safetensors")
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(out / "checkpoint-2")
    with pytest.raises(CheckpointError, match="sha256"):
        train(_short(tmp_path / "child", 2) | {"model": None, "init_from": str(out / "checkpoint-2")})


def test_resume_by_path_past_newer_broken_checkpoints_and_stale_temporaries(six_steps, tmp_path, caplog):
    reference = six_steps
    out = tmp_path / "run"
    train(_short(out, 6))
    _flip(out / "checkpoint-6" / ckpt.RNG)
    stale = out / ".tmp-checkpoint-8-999999999"  # left by a killed writer (no such process)
    (stale / "model").mkdir(parents=True)
    seen = []  # asked after step 5, before any new checkpoint is written: cleaned at start-up
    result = train(_short(out, 8), resume=out / "checkpoint-4", should_stop=lambda step: seen.append(stale.exists()))
    assert seen[0] is False and result.step == 8
    assert any("skipped checkpoint-6" in line and "rng.safetensors" in line for line in caplog.messages)
    assert len(list(out.glob("checkpoint-6.corrupt-*"))) == 1
    a, b = tensors_of(reference.checkpoint), tensors_of(out / "checkpoint-8")
    assert all(torch.equal(a[k], b[k]) for k in a)
