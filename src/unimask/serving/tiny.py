"""A tiny random model directory (checkpoint + tokenizer) to try generation and serving without training.

Its text is junk (the weights are random); it exists for tests, examples and smoke checks of the plumbing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

SAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog. A language model predicts the next token from the ones "
    "before it. The prefix decoder reads its input in both directions and writes its answer one token at a "
    "time. The encoder-decoder reads the source with an encoder and writes the target with a decoder. "
    "Numbers like 12, 345 and 6789 appear in text too, and so do questions: what is two plus two? Four. "
)


def tiny_model(preset: str, tokenizer: Any, *, seed: int = 0, **overrides: object) -> torch.nn.Module:
    """A random ``preset`` model sized to ``tokenizer`` (vocabulary and pad/bos/eos ids), in eval mode."""
    import unimask

    config = unimask.preset(preset, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_id,
                            bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id, **overrides)
    torch.manual_seed(seed)
    return unimask.build_model(config).eval()


def make_tiny_model_dir(directory: str | Path, preset: str = "tiny-causal", *, text: str = SAMPLE_TEXT,
                        vocab_size: int = 420, seed: int = 0, **overrides: object) -> Path:
    """Train a byte-level BPE tokenizer on ``text`` (repeated) and save a random ``preset`` model sized to it,
    with pad/bos/eos ids taken from the tokenizer, plus ``tokenizer.json``, into ``directory``."""
    from unimask.data.tokenizer import train_tokenizer

    tok = train_tokenizer([text] * 4, vocab_size=vocab_size)
    out = tiny_model(preset, tok, seed=seed, **overrides).save(directory)
    tok.save(out)
    return Path(out)


__all__ = ["SAMPLE_TEXT", "make_tiny_model_dir", "tiny_model"]
