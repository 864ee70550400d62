"""Output constrained to a grammar: a JSON Schema, any JSON object, or a call of one of the given tools.

The grammar engine is llguidance (Microsoft's low-level guidance library, Rust): it reads any Hugging
Face ``tokenizer.json`` as it is (byte-level BPE as unimask trains it, Metaspace and byte fallback as
imported models bring), so the constraint works over unimask's own tokenizer and every imported one
alike. ``benchmarks/bench_grammar.py`` measured it against xgrammar on unimask's default tokenizer: both
compute a token mask in microseconds (median: llguidance 9-11 us, xgrammar 2-3 us) against milliseconds for a
decoding step; xgrammar needs the vocabulary rebuilt by hand for each tokenizer kind, llguidance none.

``GrammarConstraint`` is a logits processor for ``unimask.generation.generate_stream``: before each step
it sets every token the grammar forbids to -inf (row by row), after it the chosen tokens advance each
row's matcher; once a row's grammar is complete only EOS remains. Sampling, temperature and penalties
then act on the allowed tokens only, so what comes out parses, unless ``max_new_tokens`` cuts it short.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unimask.errors import UnimaskError


class GrammarError(UnimaskError):
    """A schema or tool definition the grammar engine cannot compile (the message says why)."""


def _engine() -> Any:
    try:
        import llguidance
    except ImportError:  # pragma: no cover - llguidance is in the serve extra
        raise GrammarError("structured output needs llguidance: pip install 'unimask[serve]'") from None
    return llguidance


_TOKENIZERS: dict[tuple[str, int], Any] = {}


def _ll_tokenizer(tokenizer: Any) -> Any:
    """llguidance's view of a unimask ``Tokenizer`` (built once per tokenizer and EOS)."""
    key = (tokenizer.fingerprint(), tokenizer.eos_id)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = _engine().LLTokenizer(tokenizer.backend.to_str(), n_vocab=tokenizer.vocab_size,
                                                 eos_token=tokenizer.eos_id)
    return _TOKENIZERS[key]


#: JSON as ``json.dumps`` writes it, no other whitespace, and no \\uXXXX escapes (every other escape stays):
#: a small model cannot wander into endless blanks or spend six tokens on one character (a schema's own
#: ``x-guidance`` options still override this)
COMPACT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ",
           "json_allowed_escapes": "\"\\bfnrt"}


def json_grammar(schema: dict[str, Any] | None = None) -> str:
    """The grammar of JSON text valid under ``schema``; ``None``: any JSON object (OpenAI's ``json_object``)."""
    llg = _engine()
    if schema is None:
        schema = {"type": "object"}
    if not isinstance(schema, dict):
        raise GrammarError(f"a JSON schema must be an object, got {type(schema).__name__}")
    try:
        grammar = llg.LLMatcher.grammar_from_json_schema(schema, defaults=COMPACT)
    except Exception as exc:  # the engine raises ValueError/RuntimeError with its own message
        raise GrammarError(f"invalid JSON schema: {_first_line(exc)}") from None
    problem = llg.LLMatcher.validate_grammar(grammar)
    if problem and not problem.startswith("WARNING"):
        raise GrammarError(f"invalid JSON schema: {_first_line(problem)}")
    return grammar


def _first_line(value: Any) -> str:
    text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text.strip().splitlines()[0] if text.strip() else "rejected by the grammar engine"


def tool_call_schema(tools: list[dict[str, Any]], choice: str | dict[str, Any] = "required") -> dict[str, Any]:
    """The JSON Schema of one call ``{"name": ..., "arguments": {...}}`` of one of OpenAI-style ``tools``
    (``[{"type": "function", "function": {"name", "description", "parameters"}}]``); ``choice`` is
    ``"required"``/``"auto"`` (any tool) or ``{"type": "function", "function": {"name": ...}}`` (that one)."""
    options = []
    names = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise GrammarError(f"tools[{i}]: a tool is {{'type': 'function', 'function': {{'name': ..., "
                               "'parameters': {...}}}}")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise GrammarError(f"tools[{i}] ({fn['name']}): 'parameters' must be a JSON schema object")
        names.append(fn["name"])
        options.append({"type": "object", "properties": {"name": {"const": fn["name"]}, "arguments": params},
                        "required": ["name", "arguments"], "additionalProperties": False})
    if not options:
        raise GrammarError("tools: at least one tool is needed for a tool call")
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        if wanted not in names:
            raise GrammarError(f"tool_choice names '{wanted}', which is not among the tools ({', '.join(names)})")
        return options[names.index(wanted)]
    return options[0] if len(options) == 1 else {"anyOf": options}


def closed_schema(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that leaves it unsaid (OpenAI's strict
    mode): what validates under the result validates under ``schema``, and a small model cannot wander
    into keys nobody asked for."""
    if isinstance(schema, list):
        return [closed_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed_schema(v) if k not in ("const", "enum", "default", "examples") else v for k, v in schema.items()}
    if (out.get("type") == "object" or "properties" in out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def validate_json_schema(instance: Any, schema: dict[str, Any]) -> None:
    """Raise ``GrammarError`` when ``instance`` does not satisfy ``schema`` (jsonschema, for tests and checks)."""
    import jsonschema

    try:
        jsonschema.validate(instance, schema)
    except jsonschema.ValidationError as exc:
        raise GrammarError(f"output does not match the schema: {exc.message}") from None


class GrammarConstraint:
    """Per-row grammar matchers over a batch; call it on the logits ``(B, V)``, then ``commit`` the tokens."""

    def __init__(self, tokenizer: Any, grammar: str, batch: int) -> None:
        llg = _engine()
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_id
        lt = _ll_tokenizer(tokenizer)
        self.matchers = [llg.LLMatcher(lt, grammar) for _ in range(batch)]
        for m in self.matchers:
            if m.is_error():
                raise GrammarError(f"grammar rejected: {_first_line(m.get_error())}")
        self.done = [False] * batch
        self.n_vocab = tokenizer.vocab_size

    def allowed(self, row: int) -> np.ndarray:
        """Boolean ``(n_vocab,)`` of the tokens row ``row`` may take next."""
        m = self.matchers[row]
        if m.is_stopped():
            out = np.zeros(self.n_vocab, dtype=bool)
            out[self.eos] = True
            return out
        bits = np.frombuffer(m.compute_bitmask(), dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little")[: self.n_vocab].astype(bool)

    def __call__(self, logits: Tensor) -> Tensor:
        keep = torch.zeros(logits.shape, dtype=torch.bool)
        for row in range(logits.shape[0]):
            if self.done[row]:
                keep[row] = True  # a finished row's token is replaced by padding anyway
                continue
            allowed = torch.from_numpy(self.allowed(row))
            n = min(allowed.shape[0], logits.shape[1])
            keep[row, :n] = allowed[:n]
        return logits.masked_fill(~keep.to(logits.device), float("-inf"))

    def commit(self, tokens: Tensor) -> None:
        for row, token in enumerate(tokens.tolist()):
            if self.done[row] or token < 0:
                continue
            if token == self.eos:
                self.done[row] = True
                continue
            if not self.matchers[row].consume_token(int(token)):
                raise GrammarError(f"row {row}: token {token} breaks the grammar "
                                   f"({_first_line(self.matchers[row].get_error())})")

    def complete(self, row: int) -> bool:
        """Whether row ``row`` ended where its grammar accepts (its text parses)."""
        return bool(self.matchers[row].is_accepting())


def parse_json(text: str) -> Any:
    """``json.loads`` with a ``GrammarError`` naming the position instead of a traceback."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GrammarError(f"not JSON at character {exc.pos}: {exc.msg}") from None
