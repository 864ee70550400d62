"""A causal checkpoint imported from Hugging Face trains further as a prefix decoder with the UL2R mixture
(Tay et al. 2022, U-PaLM), then goes back to Hugging Face format."""

from __future__ import annotations

import math

import torch
from hf_parity import randomize
from transformers import LlamaConfig, LlamaForCausalLM

from unimask.checkpoint import load_model
from unimask.cli import main
from unimask.data.tokenizer import train_tokenizer
from unimask.train import train


def test_hf_llama_continues_as_prefix_decoder_with_ul2r(tmp_path) -> None:
    corpus = tmp_path / "corpus.txt"
    lines = [f"the quick fox {i} jumps over the lazy dog {i % 7} and runs home." for i in range(300)]
    corpus.write_text("\n\n".join(" ".join(lines[i:i + 6]) for i in range(0, 300, 6)), encoding="utf-8")
    tok = train_tokenizer([corpus.read_text(encoding="utf-8")], vocab_size=512)
    hf = randomize(LlamaForCausalLM(LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, pad_token_id=tok.pad_id, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id)), std=0.05)
    hf.save_pretrained(tmp_path / "hf")
    tok.save(tmp_path / "hf")

    assert main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "um")]) == 0
    result = train({
        "init_from": str(tmp_path / "um"), "model": {"arch": "prefix"}, "objective": "ul2r",
        "data": {"path": str(corpus), "seq_len": 64, "batch_size": 4}, "steps": 3, "eval_every": 0,
        "eval_batches": 1, "out_dir": str(tmp_path / "run"), "progress": False, "tensorboard": False,
    })
    assert result.step == 3 and math.isfinite(result.train_loss)
    trained = load_model(result.checkpoint)
    start = load_model(tmp_path / "um")
    assert trained.config.arch == "prefix" and start.config.arch == "causal"
    assert trained.config.replace(arch="causal") == start.config
    assert not torch.equal(trained.decoder.layers[0].attn.q_proj.weight, start.decoder.layers[0].attn.q_proj.weight)

    # back to transformers (which runs it causally)
    assert main(["convert", "--to-hf", str(result.checkpoint), "--out", str(tmp_path / "back")]) == 2
    assert main(["convert", "--to-hf", str(result.checkpoint), "--out", str(tmp_path / "back"), "--as-causal"]) == 0
    assert (tmp_path / "back" / "tokenizer.json").is_file()
    loaded, info = LlamaForCausalLM.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.tensor([tok.encode("the quick fox jumps")])
    with torch.no_grad():
        assert (loaded.eval()(input_ids=ids).logits - trained(ids).logits).abs().max() <= 1e-4
