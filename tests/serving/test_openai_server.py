"""The OpenAI-compatible server, started on a free loopback port, spoken to with the official ``openai``
client: completions and chat, streamed and not, give the model's own text; 20 concurrent streaming clients
all finish; malformed and over-limit requests get a 4xx JSON error and the server keeps serving."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from unimask.serving import LoadedModel, SamplingParams
from unimask.serving.app import ServerLimits, create_app

Server = object  # annotation only: the fixtures hand out conftest.Server


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_lists_the_model(client: openai.OpenAI, engine: LoadedModel) -> None:
    assert [m.id for m in client.models.list()] == [engine.name]


def test_completion_streamed_and_not_is_the_engines_text(client: openai.OpenAI, engine: LoadedModel) -> None:
    args = dict(model="tiny", prompt="The quick brown", max_tokens=12, temperature=0.9, seed=5)
    expected = engine.complete("The quick brown", SamplingParams(max_new_tokens=12, temperature=0.9, seed=5))[0]
    r = client.completions.create(**args)
    assert r.choices[0].text == expected.text and r.choices[0].finish_reason == expected.finish_reason
    assert r.usage.completion_tokens == expected.completion_tokens
    assert r.usage.prompt_tokens == len(engine.encode_prompt("The quick brown"))
    chunks = list(client.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == expected.text
    assert sum(1 for c in chunks if c.choices and c.choices[0].text) > 1  # several pieces, not one blob
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == expected.finish_reason
    assert chunks[-1].usage.completion_tokens == expected.completion_tokens


def test_completion_batch_and_stop(client: openai.OpenAI, engine: LoadedModel) -> None:
    prompts = ["Hello", "A language model"]
    r = client.completions.create(model="tiny", prompt=prompts, max_tokens=8, temperature=0)
    greedy = engine.complete(prompts, SamplingParams(max_new_tokens=8))
    assert [c.text for c in sorted(r.choices, key=lambda c: c.index)] == [c.text for c in greedy]
    stop = greedy[0].text[2:4]
    r = client.completions.create(model="tiny", prompt="Hello", max_tokens=8, temperature=0, stop=[stop])
    assert r.choices[0].text == greedy[0].text[: greedy[0].text.find(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_chat_streamed_and_not(client: openai.OpenAI, engine: LoadedModel) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a fox?"}]
    expected = engine.chat(messages, SamplingParams(max_new_tokens=10, temperature=0.8, seed=1))
    args = dict(model="tiny", messages=messages, max_tokens=10, temperature=0.8, seed=1)
    r = client.chat.completions.create(**args)
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == expected.text
    assert r.choices[0].finish_reason == expected.finish_reason
    chunks = list(client.chat.completions.create(**args, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected.text
    assert chunks[-1].choices[0].finish_reason == expected.finish_reason


def test_twenty_concurrent_streams_all_finish(server: Server, engine: LoadedModel) -> None:
    def one(i: int) -> tuple[str, str | None]:
        c = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)
        text, reason = "", None
        for chunk in c.completions.create(model="tiny", prompt=f"Prompt {i}", max_tokens=6, temperature=0.7,
                                          seed=i, stream=True):
            text += chunk.choices[0].text
            reason = chunk.choices[0].finish_reason or reason
        return text, reason

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20), timeout=180))
    assert all(reason in ("stop", "length") for _, reason in results)
    for i in (0, 7, 19):  # interleaved decoding did not mix requests up
        expected = engine.complete(f"Prompt {i}", SamplingParams(max_new_tokens=6, temperature=0.7, seed=i))[0]
        assert results[i][0] == expected.text


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"prompt": 5}).encode(), 400, "prompt"),
    (json.dumps({"prompt": "x", "max_tokens": 10_000}).encode(), 400, "max_tokens"),
    (json.dumps({"prompt": "x", "temperature": -1}).encode(), 400, "temperature"),
    (json.dumps({"prompt": "word " * 250, "max_tokens": 8}).encode(), 400, "context"),
    (json.dumps({"prompt": "x", "model": "gpt-4"}).encode(), 404, "not found"),
    (json.dumps({"prompt": "x" * 70_000}).encode(), 413, "too large"),
    (b"[" * 30_000 + b"]" * 30_000, 400, "nested too deeply"),  # json.loads would hit RecursionError
    (json.dumps({"prompt": "x", "seed": 2**70, "temperature": 1}).encode(), 400, "seed"),
    (json.dumps({"prompt": "x", "seed": 2**70, "temperature": 1, "stream": True}).encode(), 400, "seed"),
    (b'{"prompt": "a\\ud800b", "max_tokens": 2}', 400, "not valid Unicode"),  # an unpaired surrogate
    (json.dumps({"prompt": ["ok", "\ud800"], "max_tokens": 2}).encode(), 400, "not valid Unicode"),
])
def test_bad_requests_get_4xx_json_and_the_server_keeps_serving(server: Server, body: bytes, status: int,
                                                                needle: str) -> None:
    r = httpx.post(server.url + "/v1/completions", content=body, headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == status
    error = r.json()["error"]
    assert needle in error["message"] and error["type"]
    ok = httpx.post(server.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=30)
    assert ok.status_code == 200 and ok.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_bad_chat_and_unknown_routes(server: Server) -> None:
    image = [{"role": "user", "content": [{"type": "image"}]}]
    for messages in ([], [{"role": "wizard", "content": "x"}], "hello", image):
        r = httpx.post(server.url + "/v1/chat/completions", json={"messages": messages}, timeout=30)
        assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    surrogate = b'{"messages": [{"role": "user", "content": "\\udfff"}]}'  # no max_tokens: sized from the prompt
    r = httpx.post(server.url + "/v1/chat/completions", content=surrogate, timeout=30)
    assert r.status_code == 400 and "not valid Unicode" in r.json()["error"]["message"]
    r = httpx.get(server.url + "/v1/nothing", timeout=30)
    assert r.status_code == 404 and "error" in r.json()
    chunked = httpx.post(server.url + "/v1/completions", content=iter([b'{"prompt": "', b"y" * 70_000, b'"}']),
                         timeout=30)  # no Content-Length: the limit is enforced while reading
    assert chunked.status_code == 413


def test_busy_server_answers_429_and_api_key(engine: LoadedModel, server_class: type) -> None:
    app = create_app(engine, ServerLimits(max_concurrent=1, max_queue=0, max_tokens=240, api_key="k"))
    with server_class(app) as s:
        headers = {"Authorization": "Bearer k"}
        assert httpx.get(s.url + "/v1/models", timeout=30).status_code == 401
        assert httpx.get(s.url + "/v1/models", headers=headers, timeout=30).status_code == 200
        barrier = threading.Barrier(6)

        def one(i: int) -> httpx.Response:
            barrier.wait()
            return httpx.post(s.url + "/v1/completions", headers=headers, timeout=120,
                              json={"prompt": "a", "max_tokens": 240, "temperature": 0, "stream": i % 2 == 0})

        with ThreadPoolExecutor(max_workers=6) as pool:
            responses = list(pool.map(one, range(6)))
        codes = sorted(r.status_code for r in responses)
        assert codes[0] == 200 and codes[-1] == 429  # one runs, the rest find no room (no queue)
        assert all(r.json()["error"]["type"] == "rate_limit_error" for r in responses if r.status_code == 429)
        # slots come back: the server answers again
        r = httpx.post(s.url + "/v1/completions", headers=headers, json={"prompt": "c", "max_tokens": 2}, timeout=30)
        assert r.status_code == 200


def test_the_servers_own_max_tokens_limit(server: Server, engine: LoadedModel) -> None:
    """The server's limit (64 here) is below the model's context: above it is refused even though it would fit,
    up to it is served; a chat without max_tokens is sized within it."""
    assert engine.context_length > 65
    for route, body in (("/v1/completions", {"prompt": "Hi"}),
                        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]})):
        r = httpx.post(server.url + route, json={**body, "max_tokens": 65}, timeout=30)
        assert r.status_code == 400, route
        error = r.json()["error"]
        assert "over this server's limit of 64" in error["message"] and error["param"] == "max_tokens"
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 64, "temperature": 0},
                   timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 64
    r = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                   json={"messages": [{"role": "user", "content": "Hi"}], "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 64
