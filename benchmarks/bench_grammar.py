"""Grammar engines for structured output, measured on unimask's own tokenizer: llguidance against xgrammar.

    .venv/bin/python benchmarks/bench_grammar.py              # the default tokenizer, a JSON schema
    .venv/bin/python benchmarks/bench_grammar.py --repeats 50

For each engine: the time to build its view of the tokenizer and to compile the schema, then the time to
compute one token mask, teacher-forcing the tokens of a valid JSON text through the matcher (median and
maximum over every step and repeat). It also checks that every token of the text is allowed at its step and
that EOS is allowed at the end. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "age"], "additionalProperties": False}
TEXT = json.dumps({"name": "Ada Lovelace", "age": 36, "tags": ["math", "poetry"]})


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def bench_llguidance(tok, ids: list[int], repeats: int) -> dict:
    import llguidance as llg

    from unimask.structured import COMPACT

    t0 = time.perf_counter()
    lt = llg.LLTokenizer(tok.backend.to_str(), n_vocab=tok.vocab_size, eos_token=tok.eos_id)
    grammar = llg.LLMatcher.grammar_from_json_schema(SCHEMA, defaults=COMPACT)
    setup = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        m = llg.LLMatcher(lt, grammar)
        for i in ids:
            a = time.perf_counter()
            bits = m.compute_bitmask()
            times.append(time.perf_counter() - a)
            assert bits[i // 8] >> (i % 8) & 1, f"llguidance refused token {i}"
            m.consume_token(i)
        assert m.compute_bitmask()[tok.eos_id // 8] >> (tok.eos_id % 8) & 1
    return {"engine": f"llguidance {_version('llguidance')}",
            "setup_ms": setup * 1e3, "times": times, "tokenizer": "reads tokenizer.json as it is"}


def bench_xgrammar(tok, ids: list[int], repeats: int) -> dict:
    import xgrammar as xgr

    t0 = time.perf_counter()
    vocab = json.loads(tok.backend.to_str())  # xgrammar needs the raw token strings and the vocabulary kind
    encoded = [""] * tok.vocab_size
    for s, i in vocab["model"]["vocab"].items():
        encoded[i] = s
    for added in vocab.get("added_tokens", []):
        encoded[added["id"]] = added["content"]
    info = xgr.TokenizerInfo(encoded, vocab_type=xgr.VocabType.BYTE_LEVEL, vocab_size=tok.vocab_size,
                             stop_token_ids=[tok.eos_id])
    compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(SCHEMA), any_whitespace=False)
    setup = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        m = xgr.GrammarMatcher(compiled)
        mask = xgr.allocate_token_bitmask(1, tok.vocab_size)
        for i in ids:
            a = time.perf_counter()
            m.fill_next_token_bitmask(mask)
            times.append(time.perf_counter() - a)
            assert m.accept_token(i), f"xgrammar refused token {i}"
    return {"engine": f"xgrammar {_version('xgrammar')}", "setup_ms": setup * 1e3, "times": times,
            "tokenizer": "vocabulary rebuilt by hand per tokenizer kind (byte-level here)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    from unimask.data.tokenizer import default_tokenizer

    tok = default_tokenizer()
    ids = tok.encode(TEXT)
    print(f"tokenizer: unimask default, {tok.vocab_size} tokens; text: {len(ids)} tokens; {args.repeats} repeats\n")
    print("| engine | setup ms | mask median us | mask max us | tokenizer support |")
    print("|---|---:|---:|---:|---|")
    for fn in (bench_llguidance, bench_xgrammar):
        try:
            r = fn(tok, ids, args.repeats)
        except ImportError as exc:
            print(f"| {fn.__name__[6:]} | not installed ({exc.name}) | | | |")
            continue
        print(f"| {r['engine']} | {r['setup_ms']:.1f} | {statistics.median(r['times']) * 1e6:.1f} | "
              f"{max(r['times']) * 1e6:.0f} | {r['tokenizer']} |")


if __name__ == "__main__":
    main()
