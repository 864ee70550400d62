"""One decoder start token: an encoder-decoder's training rows start with the token generation starts from, the
model's ``start_token_id`` (BART: 2, its EOS), for a preset and for a converted Hugging Face BART checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unimask.errors import ConfigError
from unimask.generation import generate_stream
from unimask.train import TrainConfig
from unimask.train import distributed as D
from unimask.train.loop import Trainer

TINY_BART = {"preset": "bart-base", "d_model": 32, "n_layers": 1, "n_encoder_layers": 1, "n_heads": 2, "d_ff": 64,
             "max_seq_len": 128}


def trainer(out: Path, **changes) -> Trainer:
    raw = {"model": TINY_BART, "objective": "bart_infilling", "data": {"seq_len": 48, "batch_size": 2},
           "steps": 1, "out_dir": str(out), "progress": False, "tensorboard": False, "device": "cpu", **changes}
    cfg = TrainConfig.from_dict(raw)
    return Trainer(cfg, D.setup(cfg.parallel, cfg.device))


def decoder_starts(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The first decoder input of every packed example: ``(n_examples,)``."""
    seg = batch["decoder_segment_ids"]
    first = torch.ones_like(seg, dtype=torch.bool)
    first[:, 1:] = seg[:, 1:] != seg[:, :-1]
    return batch["decoder_input_ids"][first & (seg > 0)]


def check_one_start_token(t: Trainer, start: int) -> None:
    assert t.model_config.start_token_id == start
    batch = next(iter(t.batches))
    starts = decoder_starts(batch)
    assert len(starts) >= 2 and (starts == start).all(), starts  # before: 0, the tokenizer's pad
    val = next(iter(t._validation))
    assert (decoder_starts(val) == start).all()
    # generation starts from the same token: its first logits are those after [start], not after pad
    model = t.model.eval()
    src = batch["input_ids"][:1, :10]
    step = next(iter(generate_stream(model, src, max_new_tokens=1)))
    with torch.no_grad():
        after_start = model(src, decoder_input_ids=torch.tensor([[start]])).logits[:, -1]
        after_pad = model(src, decoder_input_ids=torch.tensor([[t.tokenizer.pad_id]])).logits[:, -1]
    assert torch.allclose(step.logits, after_start, atol=1e-5)
    assert not torch.allclose(step.logits, after_pad, atol=1e-3)


def test_bart_preset_trains_and_generates_from_its_start_token(tmp_path):
    check_one_start_token(trainer(tmp_path / "run"), 2)


def test_converted_hf_bart_checkpoint_trains_from_its_start_token(tmp_path):
    from transformers import BartConfig, BartForConditionalGeneration

    from unimask.data.tokenizer import default_tokenizer
    from unimask.interop import from_hf

    vocab = default_tokenizer().vocab_size
    hf = BartForConditionalGeneration(BartConfig(
        vocab_size=vocab, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None)).eval()
    from_hf(hf).save(tmp_path / "bart")
    check_one_start_token(trainer(tmp_path / "run", model=None, init_from=str(tmp_path / "bart")), 2)


def test_the_data_section_no_longer_holds_the_start_token(tmp_path):
    raw = {"model": TINY_BART, "data": {"decoder_start_token_id": 2}, "out_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"data\.decoder_start_token_id moved to model\.decoder_start_token_id"):
        TrainConfig.from_dict(raw)
    (tmp_path / "run.yaml").write_text("model: tiny-encdec\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"moved to model\.decoder_start_token_id") as info:
        TrainConfig.load(tmp_path / "run.yaml", ["data.decoder_start_token_id=0"])
    assert "\n" not in str(info.value)
