"""The rest of the OpenAI surface, through the official client against the live server: log-probabilities,
n > 1 with a seed, presence/frequency penalties, JSON-schema output and tool calls under a grammar,
embeddings, Prometheus metrics, the API key on every endpoint but health, and their bad inputs."""

from __future__ import annotations

import base64
import json

import httpx
import jsonschema
import numpy as np
import openai
import pytest
import torch

from unimask.generation.sampling import apply_presence_frequency
from unimask.serving import LoadedModel
from unimask.serving.app import ServerLimits, create_app

Server = object  # annotation only: the fixtures hand out conftest.Server

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                                           "population": {"type": "integer", "minimum": 0, "maximum": 999}},
          "required": ["city", "population"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather of a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string", "maxLength": 8}},
                                                          "required": ["city"], "additionalProperties": False}}},
         {"type": "function", "function": {"name": "add", "description": "a + b",
                                           "parameters": {"type": "object",
                                                          "properties": {"a": {"type": "integer", "maximum": 99},
                                                                         "b": {"type": "integer", "maximum": 99}},
                                                          "required": ["a", "b"], "additionalProperties": False}}}]


@pytest.fixture(scope="module")
def roomy(engine: LoadedModel, server_class: type):
    """A server that allows long enough replies for JSON from a random model (the shared one caps 64)."""
    with server_class(create_app(engine, ServerLimits(max_tokens=200, max_concurrent=4, max_queue=16))) as s:
        yield s


@pytest.fixture(scope="module")
def client(roomy: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=roomy.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def _teacher_forced_logprobs(engine: LoadedModel, prompt_ids: list[int], new_ids: list[int]) -> torch.Tensor:
    """log p of each generated token from one forward pass over prompt + generated tokens."""
    model = engine.model
    with torch.no_grad():
        if model.config.arch == "encoder_decoder":
            dec = torch.tensor([[model.config.start_token_id, *new_ids[:-1]]])
            logits = model(torch.tensor([prompt_ids]), decoder_input_ids=dec).logits[0]
        else:
            logits = model(torch.tensor([prompt_ids + new_ids[:-1]])).logits[0, len(prompt_ids) - 1:]
    logp = logits.float().log_softmax(-1)
    return logp[torch.arange(len(new_ids)), torch.tensor(new_ids)]


def test_completion_logprobs_equal_log_softmax_of_the_logits(client: openai.OpenAI, engine: LoadedModel) -> None:
    r = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=8, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    prompt_ids = engine.encode_prompt("The quick brown")
    new_ids = engine.model.generate([prompt_ids], max_new_tokens=8, eos_token_id=engine.tokenizer.eos_id)[0].tolist()
    new_ids = new_ids[: len(lp.token_logprobs)]
    want = _teacher_forced_logprobs(engine, prompt_ids, new_ids)
    assert lp.token_logprobs == pytest.approx(want.tolist(), abs=1e-5)
    assert "".join(lp.tokens) == r.choices[0].text
    for top, value in zip(lp.top_logprobs, lp.token_logprobs):
        # greedy: the chosen token is the top one (tokens that print alike share a key, as in OpenAI's format)
        assert 1 <= len(top) <= 3 and max(top.values()) == pytest.approx(value, abs=1e-6)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)


def test_chat_logprobs_streamed_and_not(client: openai.OpenAI) -> None:
    args = dict(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=6, temperature=0.7,
                seed=3, logprobs=True, top_logprobs=2)
    r = client.chat.completions.create(**args)
    content = r.choices[0].logprobs.content
    assert content and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    assert all(bytes(t.bytes).decode("utf-8", "replace") == t.token for t in content)
    streamed = [t for c in client.chat.completions.create(**args, stream=True)
                for t in ((c.choices[0].logprobs.content or []) if c.choices and c.choices[0].logprobs else [])]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in content], abs=1e-6)


def test_n_three_with_a_seed_is_reproducible_and_different(client: openai.OpenAI) -> None:
    args = dict(model="tiny", prompt="Once upon a time", max_tokens=10, temperature=1.0, n=3, seed=11)
    a = [c.text for c in sorted(client.completions.create(**args).choices, key=lambda c: c.index)]
    b = [c.text for c in sorted(client.completions.create(**args).choices, key=lambda c: c.index)]
    assert a == b and len(a) == 3 and len(set(a)) == 3
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], n=3,
                                          temperature=1.0, seed=11, max_tokens=8)
    assert sorted(c.index for c in chat.choices) == [0, 1, 2]


def test_presence_and_frequency_penalties() -> None:
    logits = torch.zeros(2, 5)
    generated = torch.tensor([[1, 1, 3], [-1, -1, -1]])  # the second row: all padding of a finished row
    out = apply_presence_frequency(logits, generated, presence=0.5, frequency=0.25)
    assert out[0].tolist() == [0.0, -1.0, 0.0, -0.75, 0.0] and out[1].tolist() == [0.0] * 5


def _greedy_by_hand(engine: LoadedModel, prompt: str, n: int, presence: float, frequency: float) -> list[int]:
    ids = engine.encode_prompt(prompt)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            logits = engine.model(torch.tensor([ids + new])).logits[:, -1].float()
            logits = apply_presence_frequency(logits, torch.tensor([new], dtype=torch.long), presence, frequency)
            new.append(int(logits.argmax(-1)))
    return new


def test_the_server_applies_presence_and_frequency_penalties(client: openai.OpenAI, engine: LoadedModel) -> None:
    prompt = "the the the the"
    plain = _greedy_by_hand(engine, prompt, 24, 0.0, 0.0)
    assert len(set(plain)) < len(plain)  # the unpenalised greedy text repeats tokens: something to act on
    want = _greedy_by_hand(engine, prompt, 24, 1.5, 0.5)
    assert want != plain
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=24, temperature=0, logprobs=0,
                                  presence_penalty=1.5, frequency_penalty=0.5)
    eos = engine.tokenizer.eos_id
    expected = engine.tokenizer.decode(want[: want.index(eos)] if eos in want else want)
    assert r.choices[0].text == expected


def test_json_schema_output_always_validates(client: openai.OpenAI) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}
    for seed in range(10):
        r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "A city?"}],
                                           response_format=fmt, temperature=1.0, seed=seed, max_tokens=120)
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
    finished = 0
    for seed in range(4):  # any object: unbounded, so max_tokens may cut one; every finished one parses
        r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "JSON please"}],
                                           response_format={"type": "json_object"}, temperature=0.8, seed=seed,
                                           max_tokens=190)
        if r.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(r.choices[0].message.content), dict)
            finished += 1
    assert finished >= 2


def test_tool_calls_streamed_and_not(client: openai.OpenAI) -> None:
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for seed in range(4):
        r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Weather?"}],
                                           tools=TOOLS, temperature=1.0, seed=seed, max_tokens=100)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        call = choice.message.tool_calls[0]
        assert call.id.startswith("call_") and call.function.name in by_name
        jsonschema.validate(json.loads(call.function.arguments), by_name[call.function.name])
    forced = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Sum"}], tools=TOOLS, max_tokens=100,
        tool_choice={"type": "function", "function": {"name": "add"}}, temperature=0.9, seed=2)
    assert forced.choices[0].message.tool_calls[0].function.name == "add"
    chunks = list(client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS, temperature=1.0, seed=0,
        max_tokens=100, stream=True))
    calls = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name in by_name
    jsonschema.validate(json.loads(calls[0].function.arguments), by_name[calls[0].function.name])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # after a tool's result, "auto" answers in text (one call per user turn); "required" calls again
    history = [{"role": "user", "content": "Weather?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                     "arguments": "{\"city\": \"Oslo\"}"}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "cold"}]
    again = client.chat.completions.create(model="tiny", messages=history, tools=TOOLS[:1], max_tokens=24)
    assert again.choices[0].message.tool_calls is None and isinstance(again.choices[0].message.content, str)
    forced = client.chat.completions.create(model="tiny", messages=history, tools=TOOLS[:1], max_tokens=24,
                                            tool_choice="required")
    assert forced.choices[0].finish_reason in ("tool_calls", "length")  # the tiny context leaves few tokens


def test_embeddings_same_across_batches_and_encodings(client: openai.OpenAI, engine: LoadedModel) -> None:
    texts = ["a fox", "a much longer sentence about a dog", "x"]
    together = [d.embedding for d in client.embeddings.create(model="tiny", input=texts).data]
    alone = [client.embeddings.create(model="tiny", input=t).data[0].embedding for t in texts]
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    assert len(together[0]) == engine.model.config.d_model
    assert np.abs(np.array(together[0]) - np.array(together[1])).max() > 1e-3
    raw = httpx.post(client.base_url.join("embeddings").__str__(),
                     json={"input": texts[0], "encoding_format": "base64"}, timeout=30).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, alone[0], rtol=1e-6, atol=1e-7)
    ids = engine.tokenizer.encode(texts[0])
    by_ids = client.embeddings.create(model="tiny", input=[ids]).data[0].embedding
    np.testing.assert_allclose(by_ids, alone[0], rtol=1e-6, atol=1e-7)


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + ("{" + want + "}" if want else " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_what_was_sent(server: Server) -> None:
    url = server.url  # type: ignore[attr-defined]
    before = httpx.get(url + "/metrics", timeout=10).text
    total = 0
    for _ in range(3):
        r = httpx.post(url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 4}, timeout=30)
        total += r.json()["usage"]["completion_tokens"]
    assert httpx.post(url + "/v1/completions", json={"prompt": "Hi", "n": 99}, timeout=30).status_code == 400
    after = httpx.get(url + "/metrics", timeout=10).text
    ok = dict(endpoint="/v1/completions", status="200")
    bad = dict(endpoint="/v1/completions", status="400")
    assert _metric(after, "unimask_requests_total", **ok) - _metric(before, "unimask_requests_total", **ok) == 3
    assert _metric(after, "unimask_requests_total", **bad) - _metric(before, "unimask_requests_total", **bad) == 1
    gained = _metric(after, "unimask_generated_tokens_total") - _metric(before, "unimask_generated_tokens_total")
    assert gained == total
    ttft = _metric(after, "unimask_time_to_first_token_seconds_count")
    assert ttft - _metric(before, "unimask_time_to_first_token_seconds_count") == 3
    assert "unimask_requests_running" in after and "unimask_time_per_output_token_seconds_bucket" in after


def test_api_key_guards_every_endpoint_but_health(engine: LoadedModel, server_class: type) -> None:
    app = create_app(engine, ServerLimits(api_key="s3cret", max_tokens=8))
    with server_class(app) as s:
        assert httpx.get(s.url + "/health", timeout=10).status_code == 200
        for method, path in [("GET", "/metrics"), ("GET", "/ready"), ("GET", "/v1/models"),
                             ("POST", "/v1/embeddings"), ("POST", "/v1/completions"), ("GET", "/openapi.json")]:
            r = httpx.request(method, s.url + path, json={"input": "x", "prompt": "x"}, timeout=10)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", path
        wrong = openai.OpenAI(base_url=s.url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.embeddings.create(model="tiny", input="x")
        right = openai.OpenAI(base_url=s.url + "/v1", api_key="s3cret", max_retries=0)
        assert right.embeddings.create(model="tiny", input="x").data
        metrics = httpx.get(s.url + "/metrics", headers={"Authorization": "Bearer s3cret"}, timeout=10).text
        assert _metric(metrics, "unimask_requests_total", endpoint="/metrics", status="401") == 1


@pytest.mark.parametrize("body, param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
     "response_format"),
    ({"response_format": {"type": "yaml"}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "not a schema"}}]}, "tools"),
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tools"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"n": 99}, "n"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
], ids=lambda v: json.dumps(v)[:40] if isinstance(v, dict) else v)
def test_bad_structured_requests_are_400(server: Server, body: dict, param: str) -> None:
    url = server.url  # type: ignore[attr-defined]
    r = httpx.post(url + "/v1/chat/completions",
                   json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 4, **body}, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["message"] and err["param"] == param and "\n" not in err["message"]
    assert httpx.get(url + "/health", timeout=10).status_code == 200
