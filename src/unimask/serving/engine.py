"""A loaded model with its tokenizer: text in, text out, streamed or not, for all three families.

``LoadedModel.load(directory)`` reads a unimask checkpoint directory (``config.json``,
``model.safetensors``) that also holds ``tokenizer.json``. Generation goes through
``unimask.generation.generate_stream`` (KV cache) and ``TextStream`` (detokenisation and stop strings), so
``complete`` is ``stream`` collected and both give the same text. A lock is held around each decoding step,
never around a whole request: concurrent requests take turns token by token and all make progress.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from unimask.errors import UnimaskError
from unimask.generation.decode import GenerationConfig, generate_stream
from unimask.generation.text import Infilled, TextStream, glm_infill, has_glm_blank, has_sentinel, t5_infill
from unimask.serving.chat import CHAT_STOP, render_chat

SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed accepts
TEMPERATURE_MAX = 2.0  # OpenAI's range is [0, 2]
REPETITION_PENALTY_RANGE = (0.01, 10.0)  # beyond it the penalty only pushes logits towards overflow
MAX_STOP = 4  # stop strings one request may give (OpenAI: up to 4)
PENALTY_RANGE = (-2.0, 2.0)  # OpenAI's presence / frequency penalties
MAX_TOP_LOGPROBS = 20  # OpenAI's limit


class RequestError(UnimaskError):
    """A request the model cannot serve (too long for the context, bad parameter); ``code`` names it."""

    def __init__(self, message: str, code: str = "invalid_request", param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


class TimeLimitError(RequestError):
    """A request that ran past its time limit (checked between decoding steps)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to generate: ``temperature == 0`` is greedy; ``stop`` strings end a completion (not included).

    The one validation of generation settings, shared by the server, ``unimask generate`` and LangChain: a
    value outside the ranges below is a ``RequestError`` naming the field. Any temperature in (0, 2]
    samples correctly, a tiny one exactly like greedy (``generation.sampling.scale_by_temperature``).
    """

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # None: none; k >= 0: the chosen token's log-probability and the top k
    grammar: str | None = None  # an llguidance grammar (``unimask.structured``) the output must follow

    def __post_init__(self) -> None:
        lo, hi = REPETITION_PENALTY_RANGE
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens", "must be at least 1"),
            (_finite(self.temperature) and 0 <= self.temperature <= TEMPERATURE_MAX, "temperature",
             f"must be in [0, {TEMPERATURE_MAX:g}] (0 = greedy)"),
            (self.top_k >= 0, "top_k", "must be >= 0 (0 = all tokens)"),
            (_finite(self.top_p) and 0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
            (_finite(self.repetition_penalty) and lo <= self.repetition_penalty <= hi, "repetition_penalty",
             f"must be in [{lo:g}, {hi:g}] (1 = none)"),
            (all(isinstance(x, str) and x for x in self.stop), "stop", "strings must not be empty"),
            (_finite(self.presence_penalty) and PENALTY_RANGE[0] <= self.presence_penalty <= PENALTY_RANGE[1],
             "presence_penalty", f"must be in [{PENALTY_RANGE[0]:g}, {PENALTY_RANGE[1]:g}]"),
            (_finite(self.frequency_penalty) and PENALTY_RANGE[0] <= self.frequency_penalty <= PENALTY_RANGE[1],
             "frequency_penalty", f"must be in [{PENALTY_RANGE[0]:g}, {PENALTY_RANGE[1]:g}]"),
            (self.logprobs is None or 0 <= self.logprobs <= MAX_TOP_LOGPROBS, "logprobs",
             f"(top log-probabilities) must be in [0, {MAX_TOP_LOGPROBS}]"),
        ]
        if self.seed is not None:
            checks.append((SEED_RANGE[0] <= self.seed <= SEED_RANGE[1], "seed", "must fit in 64 bits"))
        for ok, name, what in checks:
            if not ok:
                got = getattr(self, name)
                raise RequestError(f"{name} {what}, got {list(got) if name == 'stop' else got}", param=name)

    @classmethod
    def from_user(cls, *, max_stop: int = MAX_STOP, **fields: Any) -> SamplingParams:
        """Settings a user gave (server request, command line): ``SamplingParams(**fields)`` plus at most
        ``max_stop`` stop strings (the chat template adds its own on top, see ``chat_params``)."""
        stop = tuple(fields.get("stop") or ())
        if len(stop) > max_stop:
            raise RequestError(f"stop must hold at most {max_stop} strings, got {len(stop)}", param="stop")
        return cls(**fields)

    def generation_config(self, eos_token_id: int | None) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=self.temperature > 0,
                                temperature=self.temperature if self.temperature > 0 else 1.0, top_k=self.top_k,
                                top_p=self.top_p, repetition_penalty=self.repetition_penalty,
                                presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
                                eos_token_id=eos_token_id, seed=self.seed)


@dataclass
class Chunk:
    """A piece of generated text for prompt ``index``; the last chunk of a prompt has ``finish_reason``
    (``"stop"``: EOS or a stop string, ``"length"``: max_new_tokens) and its token counts."""

    index: int
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None  # the tokens decoded since the row's previous chunk


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text and bytes, log p under the model (its own logits, before sampling
    settings), and the ``top`` most likely tokens there as ``(text, bytes, logprob)``."""

    token: str
    bytes: tuple[int, ...]
    logprob: float
    top: tuple[tuple[str, tuple[int, ...], float], ...] = ()


@dataclass
class Completion:
    """A finished completion and its usage."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None


class LoadedModel:
    """A model, its tokenizer (``unimask.data.Tokenizer``) and a name; thread-safe text generation.

    Prompts are laid out as unimask's objectives lay out sources: a causal decoder's prompt starts with BOS
    (``causal_lm``: ``[bos] + text``), a prefix decoder's does not (``prefix_lm``), an encoder-decoder's
    source ends with EOS (T5, BART). ``add_bos`` / ``append_eos`` override this (e.g. for imported models).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, name: str = "unimask", *,
                 add_bos: bool | None = None, append_eos: bool = True) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.add_bos = model.config.arch == "causal" if add_bos is None else add_bos
        self.append_eos = append_eos
        self._lock = threading.Lock()
        self._specials: frozenset[int] | None = None

    def __repr__(self) -> str:
        return f"LoadedModel(name={self.name!r}, arch={self.model.config.arch!r}, context={self.context_length})"

    @classmethod
    def load(cls, directory: str | Path, *, name: str | None = None, device: str = "cpu",
             dtype: torch.dtype | None = None, add_bos: bool | None = None,
             append_eos: bool = True) -> LoadedModel:
        """Load ``directory`` (config.json, model.safetensors, tokenizer.json)."""
        from unimask.checkpoint import find_model_dir, load_model
        from unimask.data.tokenizer import Tokenizer
        from unimask.interop.common import refuse_hf_dir

        given = Path(directory)
        directory = find_model_dir(directory)
        refuse_hf_dir(directory)
        model = load_model(directory, device=check_device(device), dtype=dtype)
        if not (directory / "tokenizer.json").is_file():
            raise UnimaskError(f"{directory}: no tokenizer.json next to the model; copy the tokenizer used in "
                               "training there (`unimask tokenizer train` writes one)")
        tokenizer = Tokenizer.load(directory)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise UnimaskError(f"{directory}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                               f"{model.config.vocab_size}; they do not belong together")
        if name is None:  # the directory the user named (a run, a checkpoint-<step>, or its model/)
            where = given.resolve()
            name = where.parent.name if where.name == "model" and where.parent.name else where.name
        return cls(model, tokenizer, name, add_bos=add_bos, append_eos=append_eos)

    # Properties ------------------------------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        return int(self.model.config.max_seq_len)

    @property
    def is_encoder_decoder(self) -> bool:
        return self.model.config.arch == "encoder_decoder"

    # Prompts ---------------------------------------------------------------------------------------------
    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of a prompt (never empty: an empty prompt becomes BOS, or EOS for an encoder)."""
        tok = self.tokenizer
        ids = tok.encode(valid_text(prompt))
        if self.is_encoder_decoder:
            ids = ids + [tok.eos_id] if self.append_eos else ids
        elif self.add_bos:
            ids = [tok.bos_id, *ids]
        if not ids:
            ids = [tok.eos_id if self.is_encoder_decoder else tok.bos_id]
        return ids

    def check_fits(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Raise ``RequestError`` (code ``context_length_exceeded``) when a request cannot fit the context."""
        limit = self.context_length
        if self.is_encoder_decoder:
            if prompt_tokens > limit or max_new_tokens > limit:
                raise RequestError(f"this model's context is {limit} tokens; the prompt has {prompt_tokens} and "
                                   f"{max_new_tokens} new tokens were asked for; shorten them",
                                   code="context_length_exceeded")
        elif prompt_tokens + max_new_tokens > limit:
            raise RequestError(f"this model's context is {limit} tokens; the prompt ({prompt_tokens}) plus the "
                               f"new tokens ({max_new_tokens}) need {prompt_tokens + max_new_tokens}; shorten the "
                               "prompt or lower max_tokens", code="context_length_exceeded")

    # Generation ------------------------------------------------------------------------------------------
    def stream(self, prompts: str | Sequence[str], params: SamplingParams | None = None) -> Iterator[Chunk]:
        """Generate for one prompt or a batch; yield ``Chunk``s as text becomes final, one last chunk per
        prompt with its ``finish_reason``. Checks the context before anything runs."""
        params = params or SamplingParams()
        ids = self.prepare(prompts, params)
        if ids:
            yield from self.stream_ids(ids, params)

    def prepare(self, prompts: str | Sequence[str], params: SamplingParams) -> list[list[int]]:
        """Encode prompts and check that each fits the context with ``params.max_new_tokens``."""
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = [self.encode_prompt(p) for p in batch]
        for row in ids:
            self.check_fits(len(row), params.max_new_tokens)
        return ids

    def stream_ids(self, ids: list[list[int]], params: SamplingParams, *, deadline: float | None = None,
                   cancel: threading.Event | None = None) -> Iterator[Chunk]:
        """``stream`` for prompts already encoded (by ``prepare``).

        Before each decoding step: past ``deadline`` (a ``time.monotonic()`` value) ``TimeLimitError`` is
        raised; once ``cancel`` is set the stream ends at once, without last chunks. The lock is held around
        each step and nothing else; closing the stream never takes it, because a stream its consumer dropped
        without closing is finalized by the garbage collector on whatever thread it runs on, possibly one in
        the middle of a decoding step that holds the lock (taking a non-reentrant lock there again would
        wedge every later request).
        """
        tok = self.tokenizer
        eos = tok.eos_id
        streams = [TextStream(tok, params.stop) for _ in ids]
        counts = [0] * len(ids)
        done: list[str | None] = [None] * len(ids)
        constraint = None
        if params.grammar is not None:
            from unimask.structured import GrammarConstraint, GrammarError

            try:
                constraint = GrammarConstraint(tok, params.grammar, batch=len(ids))
            except GrammarError as exc:
                raise RequestError(str(exc), param="response_format") from None
        pending: list[list[TokenLogprob]] = [[] for _ in ids]
        steps = generate_stream(self.model, ids, config=params.generation_config(eos), logits_processor=constraint)
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    return
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeLimitError("the request ran past its time limit", code="request_timeout")
                with self._lock:
                    step = next(steps, None)
                if step is None:
                    break
                wanted = params.logprobs is not None
                logp = step.logits.float().log_softmax(-1) if wanted else None
                for i, token in enumerate(step.tokens.tolist()):
                    if done[i] is not None:
                        continue
                    counts[i] += 1
                    if token == eos:
                        done[i] = "stop"
                    else:
                        if logp is not None:
                            pending[i].append(self._logprob(logp[i], token, params.logprobs or 0))
                        piece = streams[i].push(token)
                        if streams[i].stopped:
                            done[i] = "stop"
                        if piece:
                            yield Chunk(index=i, text=piece, logprobs=self._take(pending, i, wanted))
                    if done[i] is not None:
                        yield self._last(i, streams[i], done[i], len(ids[i]), counts[i], self._take(pending, i, wanted))
                if all(d is not None for d in done):
                    break
        finally:  # no lock here (see above): closing the decoder touches no shared state
            steps.close()
        wanted = params.logprobs is not None
        for i, reason in enumerate(done):
            if reason is None:  # ran out of new tokens
                yield self._last(i, streams[i], "length", len(ids[i]), counts[i], self._take(pending, i, wanted))

    @staticmethod
    def _take(pending: list[list[TokenLogprob]], i: int, wanted: bool) -> list[TokenLogprob] | None:
        if not wanted:
            return None
        out, pending[i] = pending[i], []
        return out

    @property
    def _special_ids(self) -> frozenset[int]:
        """Tokens that decoding leaves out of the text (special tokens), found once when first needed."""
        if self._specials is None:
            tok = self.tokenizer
            self._specials = frozenset(i for i in range(tok.vocab_size)
                                       if tok.decode([i]) == "" and tok.decode([i], skip_special=False))
        return self._specials

    def token_bytes(self, token: int) -> bytes:
        """The exact bytes of one token (byte-level pieces of a character included)."""
        try:
            from unimask.structured import _ll_tokenizer

            return bytes(_ll_tokenizer(self.tokenizer).decode_bytes([token]))
        except Exception:  # no llguidance: the decoded text (a partial character becomes U+FFFD)
            return self.tokenizer.decode([token], skip_special=False).encode("utf-8")

    def _logprob(self, logp: torch.Tensor, token: int, top: int) -> TokenLogprob:
        def entry(t: int, chosen: bool = False) -> tuple[str, tuple[int, ...]]:
            if t in self._special_ids:  # not in the text (decoding skips it): chosen, it adds nothing; among
                if chosen:              # the alternatives it goes by its name
                    return "", ()
                name = self.tokenizer.id_to_token(t) or f"<{t}>"
                return name, tuple(name.encode())
            raw = self.token_bytes(t)
            return raw.decode("utf-8", errors="replace"), tuple(raw)

        text, raw = entry(token, chosen=True)
        tops: tuple[tuple[str, tuple[int, ...], float], ...] = ()
        if top:
            values, idx = logp.topk(min(top, logp.shape[-1]))
            tops = tuple((*entry(int(t)), float(v)) for v, t in zip(values.tolist(), idx.tolist()))
        return TokenLogprob(token=text, bytes=raw, logprob=float(logp[token]), top=tops)

    @staticmethod
    def _last(i: int, stream: TextStream, reason: str, prompt_tokens: int, completion_tokens: int,
              logprobs: list[TokenLogprob] | None = None) -> Chunk:
        rest = stream.finish()
        if stream.stopped:
            reason = "stop"
        return Chunk(index=i, text=rest, finish_reason=reason, prompt_tokens=prompt_tokens,
                     completion_tokens=completion_tokens, logprobs=logprobs)

    def complete(self, prompts: str | Sequence[str], params: SamplingParams | None = None) -> list[Completion]:
        """``stream`` collected: one ``Completion`` per prompt, in order."""
        n = 1 if isinstance(prompts, str) else len(prompts)
        texts = [""] * n
        logprobs: list[list[TokenLogprob] | None] = [None] * n
        out: list[Completion | None] = [None] * n
        for c in self.stream(prompts, params):
            texts[c.index] += c.text
            if c.logprobs is not None:
                logprobs[c.index] = (logprobs[c.index] or []) + c.logprobs
            if c.finish_reason is not None:
                out[c.index] = Completion(texts[c.index], c.finish_reason, c.prompt_tokens, c.completion_tokens,
                                          logprobs[c.index])
        return [c for c in out if c is not None]

    def embed_ids(self, rows: list[list[int]]) -> torch.Tensor:
        """``(N, d)`` embeddings (``unimask.embeddings``), under the step lock like decoding."""
        from unimask.embeddings import embed_ids

        with self._lock:
            return embed_ids(self.model, rows)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N, d)`` embeddings of ``texts``."""
        return self.embed_ids(self.tokenizer.encode_batch(list(texts)))

    # Chat ------------------------------------------------------------------------------------------------
    def chat_params(self, params: SamplingParams) -> SamplingParams:
        """``params`` plus the chat template's stop strings."""
        return replace(params, stop=tuple(dict.fromkeys((*params.stop, *CHAT_STOP))))

    @staticmethod
    def chat_prompt(messages: Sequence[dict[str, str]]) -> str:
        """The prompt for ``messages`` (``RequestError`` when they are malformed)."""
        try:
            return render_chat(messages)
        except ValueError as exc:
            raise RequestError(str(exc), param="messages") from None

    @staticmethod
    def strip_reply(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        """Drop whitespace before a chat reply's first character (the template ends with ``Assistant:``)."""
        started = False
        for chunk in chunks:
            if not started:
                chunk.text = chunk.text.lstrip()
                started = bool(chunk.text)
            if chunk.text or chunk.finish_reason is not None or chunk.logprobs:
                yield chunk

    def chat_stream(self, messages: Sequence[dict[str, str]], params: SamplingParams | None = None) -> Iterator[Chunk]:
        """Stream the assistant's reply to ``messages`` (``{"role", "content"}``, see ``serving.chat``);
        whitespace before the reply's first character is dropped."""
        prompt = self.chat_prompt(messages)
        yield from self.strip_reply(self.stream(prompt, self.chat_params(params or SamplingParams())))

    def chat(self, messages: Sequence[dict[str, str]], params: SamplingParams | None = None) -> Completion:
        """The assistant's reply to ``messages``."""
        text, last, logprobs = "", None, None
        for chunk in self.chat_stream(messages, params):
            text += chunk.text
            if chunk.logprobs is not None:
                logprobs = (logprobs or []) + chunk.logprobs
            last = chunk
        assert last is not None and last.finish_reason is not None
        return Completion(text, last.finish_reason, last.prompt_tokens, last.completion_tokens, logprobs)

    # Infilling -------------------------------------------------------------------------------------------
    def can_infill(self, text: str) -> bool:
        """Whether ``text`` asks this model for infilling: GLM masks for a prefix decoder, sentinels for an
        encoder-decoder."""
        arch = self.model.config.arch
        return (arch == "prefix" and has_glm_blank(text)) or (arch == "encoder_decoder" and has_sentinel(text))

    def infill(self, text: str, params: SamplingParams | None = None) -> Infilled:
        """Fill the blanks of ``text`` (``[MASK]``/``[gMASK]`` for a prefix decoder, ``<extra_id_N>`` for an
        encoder-decoder); stop strings do not apply."""
        cfg = (params or SamplingParams()).generation_config(None)
        valid_text(text)
        if self.model.config.arch == "causal":
            raise RequestError("infilling needs a prefix decoder ([MASK], [gMASK]) or an encoder-decoder "
                               "(<extra_id_N>); this model is a causal decoder", param="prompt")
        with self._lock:
            if self.model.config.arch == "encoder_decoder":
                return t5_infill(self.model, self.tokenizer, text, cfg, append_eos=self.append_eos)
            return glm_infill(self.model, self.tokenizer, text, cfg)


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def valid_text(text: str, param: str = "prompt") -> str:
    """``text`` itself, or ``RequestError`` when it cannot be encoded as UTF-8 (an unpaired surrogate, e.g.
    from undecodable bytes on a command line), which the tokenizer would choke on."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(f"the {param} is not valid Unicode text (character {exc.start} is an unpaired "
                           "surrogate); send UTF-8 text", param=param) from None
    return text


def check_device(device: str) -> str:
    """``device`` if torch can put a tensor there, else ``UnimaskError`` in one line (not a CUDA traceback)."""
    try:
        torch.empty(1, device=torch.device(device))
    except (RuntimeError, TypeError, AssertionError) as exc:  # no CUDA build / no GPU / bad name or ordinal
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise UnimaskError(f"--device {device!r} cannot be used here ({reason}); use --device cpu") from None
    return device


__all__ = ["MAX_STOP", "Chunk", "Completion", "LoadedModel", "RequestError", "SamplingParams", "TimeLimitError",
           "check_device", "valid_text"]
