"""unimask as an lm-evaluation-harness model (EleutherAI's ``lm_eval``), for every family.

    python -m unimask.integrations.lm_eval --model unimask --model_args path=runs/x/checkpoint-100/model \\
        --tasks lambada_openai --batch_size 16

or from Python::

    import lm_eval, unimask.integrations.lm_eval  # the import registers "unimask"
    lm_eval.simple_evaluate(model="unimask", model_args="path=DIR", tasks=[...])

The harness finds models by name in its own registry and has no plugin discovery for third-party models,
so the module that registers ``unimask`` is the entry point: ``python -m unimask.integrations.lm_eval``
takes exactly ``lm_eval``'s arguments (``unimask-lm-eval`` is the same as a console script).

How each request type is read, by the layout the model's objective taught (``unimask.evaluation.formats``;
``objective=`` in ``--model_args`` chooses it, default: causal_lm / prefix_lm / supervised by family):

* ``loglikelihood(context, continuation)``: the continuation's summed log-probability and whether greedy
  decoding would produce it, by ``unimask.evaluation.scoring.score_pairs``, the study's own scoring. The
  context and continuation are tokenized together and split where the context ends (trailing spaces of the
  context move to the continuation), as the harness's own Hugging Face model does. A causal or prefix
  decoder reads them as one row (the prefix decoder sees the context bidirectionally); an encoder-decoder
  encodes the context and scores the continuation in its decoder. Contexts longer than the model's context
  are cut from the left (said once on stderr).
* ``loglikelihood_rolling(text)``: every token scored once, in windows of the context length, each window
  given as much preceding text as fits; the first window is conditioned on BOS (a decoder) or on the empty
  source (an encoder-decoder).
* ``generate_until(context, {until, max_gen_toks, do_sample, temperature, ...})``: batched KV-cache decoding
  (``unimask.generation``), cut at the first stop string.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from unimask.api import DEFAULT_OBJECTIVE
from unimask.errors import UnimaskError
from unimask.evaluation.formats import ReadingFormat, reading_format
from unimask.evaluation.scoring import score_pairs


def _load(path: str, device: str) -> tuple[Any, Any]:
    from unimask.checkpoint import find_model_dir, load_model
    from unimask.data.tokenizer import Tokenizer

    directory = find_model_dir(path)
    if not (directory / "tokenizer.json").is_file():
        raise UnimaskError(f"{directory}: no tokenizer.json next to the model; the harness needs the tokenizer")
    return load_model(directory, device=device).eval(), Tokenizer.load(directory)


@register_model("unimask")
class UnimaskHarnessLM(LM):
    """An ``lm_eval`` model over a unimask model directory (``path=``) or a model and tokenizer in memory."""

    def __init__(self, path: str | None = None, *, model: Any = None, tokenizer: Any = None,
                 objective: str | None = None, batch_size: int | str = 16, max_length: int | None = None,
                 device: str | None = None, **_ignored: Any) -> None:
        super().__init__()
        if device and device.startswith("cuda") and not torch.cuda.is_available():
            print(f"unimask: no CUDA device here (the harness asked for {device}); running on cpu", file=sys.stderr)
            device = "cpu"
        if model is None:
            if not path:
                raise UnimaskError("lm_eval --model unimask needs --model_args path=MODEL_DIR")
            model, tokenizer = _load(path, device or "cpu")
        if tokenizer is None:
            raise UnimaskError("give the tokenizer together with the model")
        self.model, self.tokenizer = model.eval(), tokenizer
        arch = model.config.arch
        self.format: ReadingFormat = reading_format(objective or DEFAULT_OBJECTIVE[arch], arch, tokenizer,
                                                    start_id=model.config.start_token_id)
        self.batch_size = 16 if str(batch_size).startswith("auto") else int(batch_size)
        self.max_length = int(max_length or model.config.max_seq_len)
        self._warned = False

    # -- tokenization ---------------------------------------------------------------------------------------
    def _split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer.encode(context + continuation)
        ctx = self.tokenizer.encode(context) if context else []
        cut = len(ctx)
        while cut > 0 and whole[:cut] != ctx[:cut]:  # a merge across the boundary: split where they agree
            cut -= 1
        return whole[:cut], whole[cut:]

    def _room(self, ctx: list[int], cont: list[int]) -> list[int]:
        """The context cut from the left so that the scored row fits the model's context."""
        fmt = self.format
        extra = len(fmt.lead) + len(fmt.trail) + len(fmt.given) + 1
        if self.model.config.arch == "encoder_decoder":
            budget = self.max_length - len(fmt.lead) - len(fmt.trail)
        else:
            budget = self.max_length - extra - len(cont) + 1
        if len(ctx) > max(budget, 0):
            if not self._warned:
                print(f"unimask: a context longer than the model's {self.max_length} tokens is cut from the left",
                      file=sys.stderr)
                self._warned = True
            ctx = ctx[len(ctx) - max(budget, 0):]
        return ctx

    def _source(self, ctx: list[int]) -> list[int]:
        """A decoder-only row needs a non-empty input: an empty context becomes BOS (prefix decoder)."""
        if not self.format.input_ids(ctx):
            return [self.tokenizer.bos_id]
        return ctx

    # -- the three request types ----------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = []
        for req in requests:
            context, continuation = req.args
            ctx, cont = self._split(context, continuation)
            if not cont:
                raise UnimaskError(f"loglikelihood request with an empty continuation (context {context[-40:]!r})")
            pairs.append((self._source(self._room(ctx, cont)), cont))
        scores = score_pairs(self.model, self.format, pairs, batch_size=self.batch_size)
        out = [(s.logprob, s.all_correct) for s in scores]
        for req, value in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood", req.args, value)
        return out

    def loglikelihood_rolling(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[float]:
        results = []
        for req in requests:
            (text,) = req.args
            tokens = self.tokenizer.encode(text)
            window = max(1, self.max_length - len(self.format.lead) - len(self.format.trail) - 1)
            pairs = []
            for start in range(0, len(tokens), window):
                cont = tokens[start:start + window]
                ctx = tokens[max(0, start + len(cont) - window):start] if start else []
                pairs.append((self._source(ctx), cont))
            total = sum(s.logprob for s in score_pairs(self.model, self.format, pairs, batch_size=self.batch_size))
            results.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return results

    def generate_until(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[str]:
        from unimask.generation import generate
        from unimask.generation.text import truncate_at_stop

        out: list[str | None] = [None] * len(requests)
        keyed = [(req.args[0], dict(req.args[1] or {}), i) for i, req in enumerate(requests)]
        groups: dict[tuple, list[tuple[str, int]]] = {}
        for context, kwargs, i in keyed:
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            key = (tuple(until), int(kwargs.get("max_gen_toks", 256)), bool(kwargs.get("do_sample", False)),
                   float(kwargs.get("temperature", 0.0) or 0.0))
            groups.setdefault(key, []).append((context, i))
        enc_dec = self.model.config.arch == "encoder_decoder"
        for (until, max_new, do_sample, temperature), items in groups.items():
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                rows = []
                for context, _ in chunk:
                    ctx = self.tokenizer.encode(context) if context else []
                    room = self.max_length - (0 if enc_dec else max_new)
                    ctx = self._room(ctx, []) if enc_dec else ctx[max(0, len(ctx) - max(1, room - 2)):]
                    rows.append(self.format.input_ids(self._source(ctx)) + ([] if enc_dec else
                                                                           self.format.given_ids(ctx)))
                ids = generate(self.model, rows, max_new_tokens=max_new, do_sample=do_sample and temperature > 0,
                               temperature=temperature if temperature > 0 else 1.0,
                               eos_token_id=self.tokenizer.eos_id)
                for (context, i), new in zip(chunk, ids.tolist()):  # the new tokens only
                    tokens = []
                    for t in new:
                        if t in (self.tokenizer.eos_id, self.model.config.pad_token_id):
                            break
                        tokens.append(t)
                    text, _ = truncate_at_stop(self.tokenizer.decode(tokens), list(until))
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", (context, dict(until=list(until))), text)
        return out  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    """``lm_eval``'s own command line, with ``unimask`` registered."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = ["lm_eval", *argv]
    cli_evaluate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
