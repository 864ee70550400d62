"""Text in, text out from Python, for every family: ``unimask.load(DIR)``.

    import unimask
    m = unimask.load("runs/tiny-causal")            # a run, a checkpoint, a model directory, or a HF one
    m.generate("The attention mask", max_new_tokens=20)
    m.generate(["one", "two"], temperature=0.8, seed=1)       # batched: one decode for all prompts
    for piece in m.generate("stream me", stream=True): print(piece, end="")
    m.score("The capital of France is", " Paris")             # log p(continuation | context), nats
    m.generate("unimask is [MASK] to use")                     # a GLM-style prefix decoder fills the blank
    m.generate("unimask is <extra_id_0> to use")               # an encoder-decoder fills T5 sentinels
    m.embed(["a fox", "a dog"])                                # (2, d_model) mean-pooled final states

Prompts are laid out as each family's objective taught it (``unimask.serving.LoadedModel``); scores use
the study's own family-aware scoring (``unimask.evaluation.scoring``). A Hugging Face directory
(``config.json`` with ``model_type``) is converted in memory through ``unimask.interop.from_hf`` with its
``tokenizer.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from unimask.errors import UnimaskError
from unimask.serving.engine import LoadedModel, SamplingParams

DEFAULT_OBJECTIVE = {"causal": "causal_lm", "prefix": "prefix_lm", "encoder_decoder": "supervised"}


class TextModel:
    """A model with its tokenizer; see the module docstring. ``model``, ``tokenizer`` and ``config`` are the
    underlying unimask objects."""

    def __init__(self, engine: LoadedModel, objective: str | None = None) -> None:
        self.engine = engine
        self.model, self.tokenizer = engine.model, engine.tokenizer
        self.config = self.model.config
        self.objective = objective or DEFAULT_OBJECTIVE[self.config.arch]

    def __repr__(self) -> str:
        return f"TextModel({self.engine.name!r}, arch={self.config.arch!r}, context={self.engine.context_length})"

    # -- generation -----------------------------------------------------------------------------------------
    def generate(self, prompt: str | Sequence[str], *, max_new_tokens: int = 32, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 stop: str | Sequence[str] = (), seed: int | None = None,
                 stream: bool = False) -> str | list[str] | Iterator[str]:
        """The continuation of ``prompt`` (a list: one per prompt, decoded together); ``stream=True`` yields
        the text piece by piece (one prompt). Blanks (GLM ``[MASK]`` for a prefix decoder, T5 sentinels for
        an encoder-decoder) are filled instead: the whole text comes back with the blanks written in."""
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                repetition_penalty=repetition_penalty,
                                stop=(stop,) if isinstance(stop, str) else tuple(stop), seed=seed)
        if isinstance(prompt, str):
            if self.engine.can_infill(prompt):
                text = self.engine.infill(prompt, params).text
                return iter([text]) if stream else text
            if stream:
                return (c.text for c in self.engine.stream(prompt, params) if c.text)
            return self.engine.complete(prompt, params)[0].text
        prompts = list(prompt)
        if stream:
            raise UnimaskError("stream=True takes one prompt; call generate once per prompt to stream several")
        if not prompts:
            return []
        if any(self.engine.can_infill(p) for p in prompts):
            return [self.generate(p, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                                  top_p=top_p, repetition_penalty=repetition_penalty, stop=stop, seed=seed)
                    for p in prompts]  # type: ignore[misc]
        return [c.text for c in self.engine.complete(prompts, params)]

    def chat(self, messages: Sequence[dict[str, str]], **settings: Any) -> str:
        """The assistant's reply to ``[{"role": "user", "content": ...}, ...]`` (the server's template)."""
        defaults = {"max_new_tokens": 64, "temperature": 0.0}
        return self.engine.chat(messages, SamplingParams(**{**defaults, **settings})).text

    # -- scoring --------------------------------------------------------------------------------------------
    def score(self, context: str | Sequence[str], continuation: str | Sequence[str]) -> float | list[float]:
        """log p(continuation | context) in nats, summed over the continuation's tokens, read in the layout
        the model's objective taught (``objective=`` of ``load``); lists score pairwise."""
        from unimask.evaluation.formats import reading_format
        from unimask.evaluation.scoring import score_pairs

        single = isinstance(context, str)
        contexts = [context] if single else list(context)
        conts = [continuation] * len(contexts) if isinstance(continuation, str) else list(continuation)
        if len(conts) != len(contexts):
            raise UnimaskError(f"{len(contexts)} contexts but {len(conts)} continuations; give one per context")
        fmt = reading_format(self.objective, self.config.arch, self.tokenizer, start_id=self.config.start_token_id)
        pairs = []
        for ctx, cont in zip(contexts, conts):
            whole, head = self.tokenizer.encode(ctx + cont), self.tokenizer.encode(ctx) if ctx else []
            cut = len(head) if whole[: len(head)] == head else len(self.tokenizer.encode(ctx.rstrip()))
            ctx_ids, cont_ids = whole[:cut], whole[cut:]
            if not cont_ids:
                raise UnimaskError(f"the continuation {cont!r} has no tokens of its own; give a non-empty one")
            if not fmt.input_ids(ctx_ids):
                ctx_ids = [self.tokenizer.bos_id]
            pairs.append((ctx_ids, cont_ids))
        with self.engine._lock:
            scores = [s.logprob for s in score_pairs(self.model, fmt, pairs)]
        return scores[0] if single else scores

    def embed(self, texts: str | Sequence[str]) -> torch.Tensor:
        """``(N, d_model)`` embeddings (``unimask.embeddings``: mean of the final states)."""
        return self.engine.embed([texts] if isinstance(texts, str) else list(texts))


def load(path: str | Path, *, device: str = "cpu", dtype: torch.dtype | None = None,
         objective: str | None = None) -> TextModel:
    """A ``TextModel`` from a run directory (its newest checkpoint), a checkpoint, a model directory, or a
    Hugging Face model directory (``config.json`` + weights + ``tokenizer.json``)."""
    directory = Path(path)
    hf_config = directory / "config.json"
    if hf_config.is_file():
        try:
            raw = json.loads(hf_config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raw = {}
        if isinstance(raw, dict) and "model_type" in raw and "arch" not in raw:
            return TextModel(_from_hf_dir(directory, device, dtype), objective)
    return TextModel(LoadedModel.load(path, device=device, dtype=dtype), objective)


def _from_hf_dir(directory: Path, device: str, dtype: torch.dtype | None) -> LoadedModel:
    from unimask.data.tokenizer import Tokenizer
    from unimask.interop import from_hf

    if not (directory / "tokenizer.json").is_file():
        raise UnimaskError(f"{directory}: no tokenizer.json; a Hugging Face directory needs its fast tokenizer file")
    model = from_hf(directory, dtype=dtype or torch.float32).to(device)
    return LoadedModel(model, Tokenizer.load(directory), name=directory.name)


__all__ = ["TextModel", "load"]
