"""Embeddings (mean-pooled final states, every family) and grammar-constrained token choice."""

from __future__ import annotations

import json

import pytest
import torch

from unimask.data.tokenizer import default_tokenizer
from unimask.embeddings import embed_ids, embed_texts
from unimask.errors import UnimaskError
from unimask.serving.tiny import tiny_model
from unimask.structured import GrammarConstraint, GrammarError, json_grammar, tool_call_schema, validate_json_schema

FAMILIES = ["tiny-causal", "tiny-prefix", "tiny-encdec"]


@pytest.fixture(scope="module")
def tok():
    return default_tokenizer()


def _model(name, tok):
    return tiny_model(name, tok)


@pytest.mark.parametrize("name", FAMILIES)
def test_embeddings_do_not_depend_on_the_batch(name, tok):
    model = _model(name, tok)
    texts = ["a short one", "a much longer text about attention masks and families", "x", "the same words"]
    together = embed_texts(model, tok, texts, batch_size=4)
    alone = torch.cat([embed_texts(model, tok, [t]) for t in texts])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    assert together.shape == (4, model.config.d_model)
    assert (together[0] - together[1]).abs().max() > 1e-3  # different texts, different vectors


def test_embedding_is_the_mean_of_the_final_states(tok):
    """By hand: a prefix decoder's final states with the whole text as prefix, averaged."""
    model = _model("tiny-prefix", tok)
    ids = tok.encode("mean pooling by hand")
    out = model(torch.tensor([ids]), prefix_lengths=torch.tensor([len(ids)]))
    want = out.hidden[0].mean(0)
    got = embed_ids(model, [ids, ids[:2]])[0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    enc = _model("tiny-encdec", tok)
    want = enc.encode(torch.tensor([ids]))[0][0].mean(0)
    torch.testing.assert_close(embed_ids(enc, [ids])[0], want, rtol=1e-5, atol=1e-6)


def test_empty_input_is_refused(tok):
    with pytest.raises(UnimaskError, match="input 1"):
        embed_texts(_model("tiny-causal", tok), tok, ["fine", ""])


SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 8},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "kind": {"enum": ["causal", "prefix", "encdec"]},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2}},
    "required": ["name", "age", "kind"], "additionalProperties": False}


def _sample_under(constraint, tok, vocab, seed, steps=400):
    """Random logits, masked by the constraint, sampled until EOS: the worst model there is."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        logits = torch.randn(1, vocab, generator=g) * 3
        token = torch.multinomial(constraint(logits).softmax(-1), 1, generator=g)[:, 0]
        constraint.commit(token)
        if int(token) == tok.eos_id:
            return tok.decode(out)
        out.append(int(token))
    raise AssertionError("no EOS within the step budget")


def test_random_logits_under_a_schema_always_give_valid_json(tok):
    grammar = json_grammar(SCHEMA)
    vocab = tok.vocab_size + 7  # a model vocabulary larger than the tokenizer's
    for seed in range(30):
        text = _sample_under(GrammarConstraint(tok, grammar, batch=1), tok, vocab, seed)
        validate_json_schema(json.loads(text), SCHEMA)


def test_without_the_constraint_random_logits_are_not_json(tok):
    """The check above can fail: unconstrained samples do not parse."""
    g = torch.Generator().manual_seed(0)
    text = tok.decode(torch.multinomial(torch.randn(40, tok.vocab_size, generator=g).softmax(-1), 1,
                                        generator=g)[:, 0].tolist())
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_tool_call_schema_and_bad_schemas(tok):
    tools = [{"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"], "additionalProperties": False}}},
        {"type": "function", "function": {"name": "echo", "parameters": {
            "type": "object", "properties": {"text": {"type": "string", "maxLength": 5}}, "required": ["text"],
            "additionalProperties": False}}}]
    schema = tool_call_schema(tools)
    grammar = json_grammar(schema)
    names = set()
    for seed in range(12):
        call = json.loads(_sample_under(GrammarConstraint(tok, grammar, batch=1), tok, tok.vocab_size, seed))
        validate_json_schema(call, schema)
        names.add(call["name"])
    assert names == {"add", "echo"}
    only = tool_call_schema(tools, {"type": "function", "function": {"name": "echo"}})
    assert only["properties"]["name"] == {"const": "echo"}
    with pytest.raises(GrammarError, match="not among the tools"):
        tool_call_schema(tools, {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(GrammarError, match="tools\\[0\\]"):
        tool_call_schema([{"type": "function"}])
    with pytest.raises(GrammarError, match="invalid JSON schema"):
        json_grammar({"type": "no-such-type"})
    with pytest.raises(GrammarError, match="does not match"):
        validate_json_schema({"name": "x"}, SCHEMA)


@pytest.mark.parametrize("name", FAMILIES)
def test_one_hundred_generations_per_family_validate(name, tok):
    """Real models, sampled at temperature 1 under the grammar through generate_stream: all 100 parse and
    validate, and they are not all the same."""
    from unimask.generation import generate_stream

    model = _model(name, tok)
    grammar = json_grammar(SCHEMA)
    prompt = tok.encode("Describe a model as JSON:")
    texts = []
    for seed in range(4):
        rows = [prompt] * 25
        constraint = GrammarConstraint(tok, grammar, batch=len(rows))
        outs = [[] for _ in rows]
        for step in generate_stream(model, rows, max_new_tokens=160, do_sample=True, temperature=1.0, seed=seed,
                                    eos_token_id=tok.eos_id, logits_processor=constraint):
            for i, t in enumerate(step.tokens.tolist()):
                if not step.finished[i] and t != tok.eos_id:
                    outs[i].append(t)
        assert all(constraint.done), "a row ran out of tokens before its JSON was complete"
        texts += [tok.decode(o) for o in outs]
    assert len(texts) == 100
    for text in texts:
        validate_json_schema(json.loads(text), SCHEMA)
    assert len(set(texts)) > 50
