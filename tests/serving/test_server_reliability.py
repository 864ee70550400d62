"""The server cannot be wedged: closing a stream never needs the engine's step lock (the garbage collector may
finalize an abandoned stream on a thread inside a locked decoding step), many abandoned streams from a real
client leave every slot free, a request past its time limit is answered 408 (or an error event in a stream)
and frees its slot, a client that leaves a non-streamed request stops its decoding; /ready, /openapi.json."""

from __future__ import annotations

import gc
import threading
import time

import httpx
import openai
import pytest

from unimask.serving import LoadedModel, SamplingParams
from unimask.serving.app import ServerLimits, create_app

Server = object  # annotation only: the fixtures hand out conftest.Server


def test_closing_a_stream_never_waits_for_the_step_lock(engine: LoadedModel) -> None:
    params = SamplingParams(max_new_tokens=8, temperature=0.8, seed=1)
    it = engine.stream_ids(engine.prepare(["The quick"], params), params)
    next(it)  # decoding has started
    closed = threading.Event()

    def finalize() -> None:
        it.close()
        closed.set()

    with engine._lock:  # as a worker thread inside a decoding step holds it when the GC finalizes a stream
        threading.Thread(target=finalize, daemon=True).start()
        assert closed.wait(2), "closing a stream waited for the step lock: a GC finalization there wedges"


def _wait_idle(url: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = httpx.get(url + "/ready", timeout=5).json()
        if state["running"] == 0 or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_abandoned_streams_free_their_slots(engine: LoadedModel, server_class: type) -> None:
    app = create_app(engine, ServerLimits(max_tokens=64, max_concurrent=2, max_queue=2))
    old = gc.get_threshold()
    gc.set_threshold(20, 1, 1)  # collect often, so abandoned generators are finalized inside decoding steps
    try:
        with server_class(app) as s:
            client = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0, timeout=30)
            for i in range(40):
                kind = client.completions if i % 2 else client.chat.completions
                args = {"prompt": f"Prompt {i}"} if i % 2 else {"messages": [{"role": "user", "content": str(i)}]}
                stream = kind.create(model="tiny", max_tokens=48, temperature=0.9, seed=i, stream=True, **args)
                next(iter(stream))  # read one event, then leave
                stream.response.close()
            state = _wait_idle(s.url)
            assert state["running"] == 0 and state["waiting"] == 0, state
            start = time.monotonic()
            r = client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0)
            assert r.choices[0].finish_reason in ("stop", "length")
            assert time.monotonic() - start < 1.0
    finally:
        gc.set_threshold(*old)


def _post_while_decoding_is_held(engine: LoadedModel, http: httpx.Client, body: dict, hold: float = 0.3,
                                 **kw: object) -> httpx.Response | BaseException:
    """POST ``body`` while this thread holds the engine's step lock for ``hold`` seconds (no step can run)."""
    out: list = []

    def post() -> None:
        try:
            out.append(http.post("/v1/completions", json=body, **kw))  # type: ignore[arg-type]
        except BaseException as exc:
            out.append(exc)

    with engine._lock:
        worker = threading.Thread(target=post)
        worker.start()
        time.sleep(hold)
    worker.join(30)
    return out[0]


def test_time_limit_is_408_or_an_error_event_and_frees_the_slot(engine: LoadedModel, server_class: type) -> None:
    app = create_app(engine, ServerLimits(max_tokens=64, max_concurrent=1, max_queue=1, time_limit_s=0.1))
    slow = {"model": "tiny", "prompt": "x", "max_tokens": 64, "temperature": 0}
    with server_class(app) as s, httpx.Client(base_url=s.url, timeout=30) as http:
        r = _post_while_decoding_is_held(engine, http, slow)
        assert isinstance(r, httpx.Response) and r.status_code == 408, r
        err = r.json()["error"]
        assert err["code"] == "request_timeout" and "0.1 s" in err["message"]
        r = _post_while_decoding_is_held(engine, http, {**slow, "stream": True})
        assert isinstance(r, httpx.Response) and r.status_code == 200
        assert '"code": "request_timeout"' in r.text and "[DONE]" not in r.text
        assert _wait_idle(s.url)["running"] == 0
        ok = http.post("/v1/completions", json={**slow, "max_tokens": 2})  # fast enough: served
        assert ok.status_code == 200, ok.text


def test_a_client_that_leaves_stops_its_non_streamed_request(engine: LoadedModel, server_class: type) -> None:
    app = create_app(engine, ServerLimits(max_tokens=64, max_concurrent=1, max_queue=0))
    steps: list[int] = []
    hook = engine.model.register_forward_hook(lambda *_: steps.append(1))
    try:
        with server_class(app) as s, httpx.Client(base_url=s.url) as http:
            body = {"model": "tiny", "prompt": "x", "max_tokens": 64, "temperature": 0}
            r = _post_while_decoding_is_held(engine, http, body, hold=1.0, timeout=0.3)  # gives up, leaves
            assert isinstance(r, httpx.TimeoutException), r
            state = _wait_idle(s.url, timeout=5)
            assert state["running"] == 0, state
    finally:
        hook.remove()
    assert 0 < len(steps) <= 3  # it stopped after a step or two instead of decoding 64 tokens for nobody


def test_ready_health_and_openapi(server: Server) -> None:
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/ready").json()
    assert ready["status"] == "ready" and ready["model"] == "tiny" and ready["running"] == 0
    schema = httpx.get(server.url + "/openapi.json").json()
    body = schema["paths"]["/v1/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CompletionRequest"}
    assert {"CompletionRequest", "ChatRequest", "ChatMessage"} <= set(schema["components"]["schemas"])
    assert {"/health", "/ready", "/v1/models", "/v1/chat/completions"} <= set(schema["paths"])


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_serve_time_limit_flag_is_checked(value: str, causal_dir: object, capsys: pytest.CaptureFixture) -> None:
    from unimask.cli import main

    assert main(["serve", "--model", str(causal_dir), "--port", "0", f"--time-limit={value}"]) == 2
    err = capsys.readouterr().err
    assert "--time-limit" in err and len(err.strip().splitlines()) == 1
