"""Save/load gives identical logits; bad checkpoints give one clear error; nothing is unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unimask import build_model, load_model, preset
from unimask.errors import CheckpointError


@pytest.mark.parametrize("name", ["tiny-causal", "tiny-prefix", "tiny-encdec", "tiny-glm"])
def test_save_load_identical_logits(name: str, tmp_path: Path) -> None:
    model = build_model(preset(name, tie_embeddings=name != "tiny-glm")).eval()
    ids = torch.randint(3, 500, (2, 6))
    kwargs = {"decoder_input_ids": ids[:, :3]} if model.config.arch == "encoder_decoder" else {}
    before = model(ids, **kwargs).logits
    model.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    again = load_model(tmp_path / "ckpt")
    assert torch.equal(again(ids, **kwargs).logits, before)
    if model.config.tie_embeddings:
        assert again.lm_head.weight is again.embed.weight


def test_missing_config(tmp_path: Path) -> None:
    build_model("tiny-causal").save(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_model(tmp_path)


def test_truncated_safetensors(tmp_path: Path) -> None:
    build_model("tiny-causal").save(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a safetensors"):
        load_model(tmp_path)


def test_foreign_file_is_not_unpickled(tmp_path: Path) -> None:
    build_model("tiny-causal").save(tmp_path)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "model.safetensors")  # a pickle in disguise
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_model(tmp_path)


def test_shape_mismatch_names_the_tensor(tmp_path: Path) -> None:
    build_model("tiny-causal").save(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["d_ff"] = 200
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"mlp\.gate_proj\.weight"):
        load_model(tmp_path)


def test_integer_tensors_are_a_foreign_file(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    build_model("tiny-causal").save(tmp_path)
    tensors = {k: v.to(torch.int32) for k, v in load_file(tmp_path / "model.safetensors").items()}
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="not floating point"):
        load_model(tmp_path)


def test_a_foreign_safetensors_file_says_so(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    build_model("tiny-causal").save(tmp_path)
    save_file({"model.embed_tokens.weight": torch.zeros(4, 2)}, tmp_path / "model.safetensors")  # HF names
    with pytest.raises(CheckpointError, match=r"not a unimask checkpoint .*unimask convert --from-hf"):
        load_model(tmp_path)


def test_hugging_face_directory_points_to_convert(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(CheckpointError, match="convert --from-hf"):
        load_model(tmp_path)
