"""The empirical sweep: batch layout, a loss that falls, and a micro sweep end to end (seconds)."""

from __future__ import annotations

import math

import pytest
import torch

import unimask
from unimask.analysis.compute import training_flops
from unimask.analysis.emergence_sweep import (
    CharTokenizer,
    SweepConfig,
    encode_batch,
    model_config,
    run_sweep,
    train_model,
)
from unimask.errors import UnimaskError


@pytest.fixture
def tok() -> CharTokenizer:
    return CharTokenizer("0123456789+=")


def test_char_tokenizer_round_trip(tok: CharTokenizer) -> None:
    ids = tok.encode("12+9=21")
    assert min(ids) >= 3 and tok.vocab_size == 15
    assert tok.decode(ids) == "12+9=21"
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == "12+9=21"
    with pytest.raises(UnimaskError, match="alphabet"):
        tok.encode("x")


def test_decoder_batch_puts_the_loss_on_the_answer_only(tok: CharTokenizer) -> None:
    p, a = tok.encode("1+2="), tok.encode("3")
    batch = encode_batch([(p, a), (tok.encode("10+2="), tok.encode("12"))], "prefix", tok)
    ids, labels = batch["input_ids"], batch["labels"]
    # row 0: <s> 1 + 2 = 3 </s> <pad> <pad>; the '=' predicts '3', the '3' predicts </s>
    assert ids[0].tolist() == [tok.bos_id, *p, *a, tok.eos_id, tok.pad_id, tok.pad_id]
    assert labels[0].tolist() == [-100, -100, -100, -100, a[0], tok.eos_id, -100, -100, -100]
    assert labels[1].tolist()[-4:] == [*tok.encode("12"), tok.eos_id, -100]
    assert batch["is_prefix"][0].tolist() == [True] * 5 + [False] * 4
    assert "is_prefix" not in encode_batch([(p, a)], "causal", tok)


def test_encoder_decoder_batch(tok: CharTokenizer) -> None:
    batch = encode_batch([(tok.encode("1+2="), tok.encode("3")), (tok.encode("10+2="), tok.encode("12"))],
                         "encoder_decoder", tok)
    assert batch["input_ids"][0].tolist() == [*tok.encode("1+2="), tok.eos_id, tok.pad_id]
    assert batch["attention_mask"][0].sum() == 5
    assert batch["labels"][0].tolist() == [tok.encode("3")[0], tok.eos_id, -100]


def test_training_lowers_the_loss(tok: CharTokenizer) -> None:
    cfg = SweepConfig(widths=(16,), steps=40, batch_size=16, lr=1e-2, threads=1)
    pairs = [(tok.encode(f"{i}+{j}="), tok.encode(str(i + j))) for i in range(10) for j in range(10)]
    torch.manual_seed(0)
    model = unimask.build_model(model_config(cfg, 16, tok.vocab_size, 16, tok))
    batch = encode_batch(pairs, "causal", tok)
    with torch.no_grad():
        before = float(model(**batch).loss)
    flops, tokens, _ = train_model(model, pairs, cfg, tok)
    with torch.no_grad():
        after = float(model(**batch).loss)
    assert after < before - 0.5
    assert tokens > 0 and flops > 0


def test_micro_sweep_end_to_end() -> None:
    cfg = SweepConfig(widths=(8, 16), steps=4, batch_size=8, digits=2, train_examples=64, test_examples=8)
    results = run_sweep(cfg, progress=False)
    assert [r.width for r in results] == [8, 16]
    assert results[0].params < results[1].params
    for r in results:
        assert 0.0 <= r.exact_match <= r.digit_accuracy + 1e-9 <= 1.0 + 1e-9
        assert r.edit_distance >= 0 and r.target_log_likelihood < 0
        assert math.isfinite(r.final_train_loss)
        assert len(r.examples) == 5 and all(e["prompt"].endswith("=") for e in r.examples)
        # FLOPs follow the model size and the tokens seen (6N + attention per token, roughly)
        seq = r.train_tokens / (cfg.steps * cfg.batch_size)
        config = model_config(cfg, r.width, 15, 16, CharTokenizer("0123456789+="))
        rough = training_flops(config, r.train_tokens, round(seq))["total"]
        assert r.train_flops == pytest.approx(rough, rel=0.3)


def test_bad_sweep_config_is_a_user_error() -> None:
    with pytest.raises(UnimaskError, match="widths"):
        run_sweep(SweepConfig(widths=(2,)), progress=False)
