"""Data: the tokenizer, corpora (built-in and user files), synthetic tasks, prepared shards and batches.

Nothing here imports ``unimask.models``: batches are plain dicts of tensors in the batch contract.
"""

from __future__ import annotations

from unimask.data.tokenizer import SpecialTokens, Tokenizer, default_tokenizer, train_tokenizer

__all__ = ["SpecialTokens", "Tokenizer", "default_tokenizer", "train_tokenizer"]
