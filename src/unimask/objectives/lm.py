"""Language modelling: full causal LM and prefix LM.

- Full causal LM (Radford et al. 2018/2019, GPT): maximum likelihood of every next token. As an example
  it is ``source = [bos]``, ``target = text + [eos]``, so the loss covers every token of the text.
- Prefix LM (Raffel et al. 2020, section 3.2.3; Dong et al. 2019, UniLM): the text is cut at a random
  point; the first part is the input (bidirectional in a prefix decoder), the rest the target.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unimask.objectives.base import Example, Objective, Vocab, as_ids


class CausalLM(Objective):
    """``source = [bos]``, ``target = ids + [eos]``: every token carries loss."""

    name = "causal_lm"
    min_length = 1

    def __call__(self, ids: np.ndarray, rng: np.random.Generator, vocab: Vocab) -> Example:
        return Example(source=as_ids(vocab.bos), target=as_ids(ids, vocab.eos), mode="causal_lm")

    def bounds(self, n: int) -> tuple[int, int]:
        return 1, n + 1


class PrefixLM(Objective):
    """Split point ``k`` uniform in ``[min_prefix, n - 1]``: ``source = ids[:k]``, ``target = ids[k:] + [eos]``.

    ``source_eos``: end the source with EOS too (``ids[:k] + [eos]``), as T5 does for its prefix-LM inputs
    (seqio appends EOS to every ``inputs`` feature), so UL2's S-denoiser ends its input like the R- and
    X-denoisers (``t5.data.preprocessors.span_corruption`` inputs end with EOS); the UL2 and UL2R mixtures
    use it. The standalone ``prefix_lm`` keeps no EOS: its target continues the very same text, and an EOS
    after the prefix would claim the text ended there; it also keeps the ``prompt -> continuation``
    format of zero-shot scoring and generation (a prompt fed without EOS) unchanged.
    """

    name = "prefix_lm"
    min_length = 2

    def __init__(self, min_prefix: int = 1, source_eos: bool = False) -> None:
        if min_prefix < 1:
            raise ValueError("prefix_lm: min_prefix must be >= 1")
        self.min_prefix = min_prefix
        self.source_eos = bool(source_eos)

    def __call__(self, ids: np.ndarray, rng: np.random.Generator, vocab: Vocab) -> Example:
        n = len(ids)
        lo = min(self.min_prefix, n - 1)
        k = int(rng.integers(lo, n))  # in [lo, n - 1]
        source = as_ids(ids[:k], vocab.eos) if self.source_eos else ids[:k]
        return Example(source=source, target=as_ids(ids[k:], vocab.eos), mode="prefix_lm", info={"split": k})

    def bounds(self, n: int) -> tuple[int, int]:
        return max(n - 1, 1) + self.source_eos, n - min(self.min_prefix, n - 1) + 1

    def row_bound(self, n: int) -> int:
        return n + self.source_eos  # source + target - 1 = (k [+ 1]) + (n - k + 1) - 1

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "min_prefix": self.min_prefix, "source_eos": self.source_eos}
