"""Checkpoint files and bad input: sharding, tokenizer files, the CLI, and one-line errors that name the problem."""

from __future__ import annotations

import json

import pytest
import torch
from hf_parity import logits_diff, padded, randomize
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from unimask import build_model, preset
from unimask.cli import main
from unimask.errors import UnimaskError
from unimask.interop import export_hf, from_hf, to_hf

SMALL = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)


@pytest.fixture
def hf_llama():
    return randomize(LlamaForCausalLM(LlamaConfig(**SMALL)))


@pytest.fixture
def hf_dir(hf_llama, tmp_path):
    d = tmp_path / "hf"
    hf_llama.save_pretrained(d)
    (d / "tokenizer.json").write_text('{"version": "1.0"}', encoding="utf-8")
    (d / "special_tokens_map.json").write_text('{"eos_token": "</s>"}', encoding="utf-8")
    return d


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sharded_input_and_output(hf_llama, tmp_path) -> None:
    hf_llama.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    um = from_hf(tmp_path / "sharded")
    assert same_weights(um, from_hf(hf_llama))
    out = to_hf(um, tmp_path / "out", max_shard_bytes=20_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2 and not (out / "model.safetensors").exists()
    loaded, info = LlamaForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids, mask = padded([10, 6], 128, pad=0, left=False)
    assert logits_diff(loaded.eval(), um, ids, mask) <= 1e-4
    assert same_weights(from_hf(out), um)


def test_dtype_auto_keeps_checkpoint_dtype(hf_llama, tmp_path) -> None:
    hf_llama.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    um = from_hf(tmp_path / "bf16", dtype="auto")
    assert um.embed.weight.dtype == torch.bfloat16
    assert from_hf(tmp_path / "bf16").embed.weight.dtype == torch.float32
    out = to_hf(um, tmp_path / "out")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_cli_round_trip_keeps_family_and_tokenizer(tmp_path, capsys) -> None:
    hf = randomize(MistralForCausalLM(MistralConfig(**SMALL, sliding_window=None)))
    hf.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "tokenizer.json").write_text('{"version": "1.0"}', encoding="utf-8")
    assert main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "um")]) == 0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "hf_config.json"):
        assert (tmp_path / "um" / name).is_file(), name
    assert main(["convert", "--to-hf", str(tmp_path / "um"), "--out", str(tmp_path / "back")]) == 0
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config["model_type"] == "mistral"  # not relabelled as llama
    assert (tmp_path / "back" / "tokenizer.json").read_text() == '{"version": "1.0"}'
    loaded, info = MistralForCausalLM.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids, mask = padded([9, 4], 128, pad=0, left=False)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(input_ids=ids, attention_mask=mask).logits,
                           hf(input_ids=ids, attention_mask=mask).logits)
    assert "wrote" in capsys.readouterr().out


def test_cli_refuses_non_empty_out(hf_dir, tmp_path, capsys) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert main(["convert", "--from-hf", str(hf_dir), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_failed_conversion_writes_nothing(hf_dir, tmp_path, capsys) -> None:
    tensors = load_file(hf_dir / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, hf_dir / "model.safetensors", metadata={"format": "pt"})
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["convert", "--from-hf", str(hf_dir), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "missing tensor 'model.layers.1.mlp.up_proj.weight'" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no partial directory


def test_unexpected_and_mismatched_tensors_are_named(hf_dir) -> None:
    tensors = load_file(hf_dir / "model.safetensors")
    tensors["model.layers.0.self_attn.extra.weight"] = torch.zeros(2)
    save_file(tensors, hf_dir / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UnimaskError, match=r"unexpected tensor 'model\.layers\.0\.self_attn\.extra\.weight'"):
        from_hf(hf_dir)
    del tensors["model.layers.0.self_attn.extra.weight"]
    save_file(tensors, hf_dir / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((hf_dir / "config.json").read_text())
    config["intermediate_size"] = 64
    (hf_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnimaskError, match=r"tensor 'model\.layers\.0\.mlp\.\w+_proj\.weight' has shape"):
        from_hf(hf_dir)


def test_unsupported_inputs_have_clear_messages(hf_dir, tmp_path) -> None:
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(UnimaskError, match="model_type 'bert' is not supported; supported: bart") as exc:
        from_hf(hf_dir)
    for family in ("gpt2", "llama", "mistral", "qwen2", "t5"):
        assert family in str(exc.value)
    yarn = {**config, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}
    (hf_dir / "config.json").write_text(json.dumps(yarn))
    with pytest.raises(UnimaskError, match="rope type 'yarn' is not supported; supported: default, linear, llama3"):
        from_hf(hf_dir)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps(config))
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(UnimaskError, match="pickle files are never loaded"):
        from_hf(pickled)
    with pytest.raises(UnimaskError, match=r"no config\.json"):
        from_hf(tmp_path)


def test_export_refusals(tmp_path) -> None:
    glm = build_model(preset("tiny-glm"))
    with pytest.raises(UnimaskError, match="cannot be written as a supported Hugging Face model"):
        to_hf(glm, tmp_path / "glm", as_causal=True)
    assert not (tmp_path / "glm").exists()
    prefix = build_model(preset("tiny-prefix"))
    with pytest.raises(UnimaskError, match="as_causal=True"):
        to_hf(prefix, tmp_path / "prefix")
    assert export_hf(prefix, as_causal=True)[0] == "llama"
    gpt2_like = build_model(preset("gpt2", n_layers=1, d_model=32, n_heads=4, head_dim=None, d_ff=64,
                                   vocab_size=64))
    with pytest.raises(UnimaskError, match=r"llama: differs in .*activation"):
        export_hf(gpt2_like, model_type="llama")
    assert export_hf(gpt2_like)[0] == "gpt2"
    with pytest.raises(UnimaskError, match="model_type 'gptj' is not supported"):
        export_hf(gpt2_like, model_type="gptj")


def test_lazy_top_level_exports() -> None:
    import unimask

    assert unimask.from_hf is from_hf and unimask.to_hf is to_hf


def test_export_tells_transformers_the_special_tokens(tmp_path) -> None:
    """A model trained with unimask's tokenizer (tokenizer.json only) exports a tokenizer that transformers'
    AutoTokenizer loads with its BOS/EOS/PAD tokens and that encodes like unimask's."""
    from transformers import AutoTokenizer

    from unimask.checkpoint import load_model
    from unimask.data.tokenizer import Tokenizer
    from unimask.serving.tiny import make_tiny_model_dir

    src = make_tiny_model_dir(tmp_path / "um", "tiny-causal")
    assert not (src / "tokenizer_config.json").exists()
    out = to_hf(load_model(src), tmp_path / "hf", tokenizer_dir=src)
    hf_tok = AutoTokenizer.from_pretrained(out)
    ours = Tokenizer.load(src)
    assert (hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id) == (ours.bos_id, ours.eos_id, ours.pad_id)
    text = "The quick brown fox, 12 times."
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    assert hf_tok.decode(ours.encode(text)) == text


def test_cli_wrong_direction_and_unwritable_out(hf_dir, tmp_path, capsys) -> None:
    """Each direction named the other way round, and an --out that cannot be created: one line, exit 2."""
    assert main(["convert", "--to-hf", str(hf_dir), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "Hugging Face 'llama' model directory" in err and "--from-hf" in err and err.count("\n") == 1
    assert main(["convert", "--from-hf", str(hf_dir), "--out", str(tmp_path / "um")]) == 0
    capsys.readouterr()
    assert main(["convert", "--from-hf", str(tmp_path / "um"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "a unimask checkpoint" in err and "--to-hf" in err and err.count("\n") == 1
    blocker = tmp_path / "file.txt"
    blocker.write_text("user data")
    for direction, src in (("--from-hf", hf_dir), ("--to-hf", tmp_path / "um")):
        assert main(["convert", direction, str(src), "--out", str(blocker / "sub")]) == 2
        err = capsys.readouterr().err
        assert "cannot create the output directory" in err and err.count("\n") == 1
    assert blocker.read_text() == "user data"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
