"""Schemathesis against the live server (uvicorn on loopback, the tiny random model): requests generated from
the server's own /openapi.json (its examples, then valid and invalid bodies), a bounded number per
operation; no answer may be a 5xx (nor a stream carry a server error event), and afterwards every slot is
free and a normal request is answered within a second (no wedge).

Run alone: ``.venv/bin/python -m pytest -q tests/serving/test_server_fuzz.py``; ``UNIMASK_FUZZ_EXAMPLES``
sets the examples per operation (default 50).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from unimask.serving import LoadedModel  # noqa: E402
from unimask.serving.app import ServerLimits, create_app  # noqa: E402

EXAMPLES = int(os.environ.get("UNIMASK_FUZZ_EXAMPLES", "50"))
SEEN: dict[str, int] = {"requests": 0, "5xx": 0}


@pytest.fixture(scope="module")
def fuzz_server(engine: LoadedModel, server_class: type) -> Iterator[object]:
    # small limits: generation stays fast, and the queue and the token cap are reachable
    app = create_app(engine, ServerLimits(max_tokens=16, max_concurrent=2, max_queue=4, max_body_bytes=16 * 1024,
                                          time_limit_s=10))
    with server_class(app) as s:
        yield s


@pytest.mark.parametrize("mode", ["examples", GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_no_request_gets_a_5xx(fuzz_server: object, mode: GenerationMode | str) -> None:
    """``examples``: the schema's own examples (its edge values: temperature 1e-300, the penalty's bounds);
    ``positive``: bodies the schema allows; ``negative``: bodies it does not."""
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")  # type: ignore[attr-defined]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6  # health, ready, models, model, completions, chat completions
    failures: list[str] = []
    for operation in operations:
        if mode == "examples":
            found = schema.get_strategies_from_examples(operation)
            if not found:
                continue
            strategy = st.one_of(found)
        else:
            strategy = operation.as_strategy(generation_mode=mode)

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def fuzz(case: object) -> None:
            response = case.call(timeout=30)  # type: ignore[attr-defined]
            SEEN["requests"] += 1
            broken = response.status_code >= 500 or '"type": "server_error"' in response.text  # also mid-stream
            if broken:
                SEEN["5xx"] += 1
                failures.append(f"{response.status_code} {case.method} {case.path} "  # type: ignore[attr-defined]
                                f"{case.body!r:.300} -> {response.text[:200]}")  # type: ignore[attr-defined]

        try:
            fuzz()
        except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
            assert mode != GenerationMode.POSITIVE
    summary = f"{len(failures)} responses with a 5xx (or a server error event), e.g.\n"
    assert not failures, summary + "\n".join(failures[:5])


def test_after_the_fuzz_the_server_is_not_wedged(fuzz_server: object) -> None:
    url = fuzz_server.url  # type: ignore[attr-defined]
    assert SEEN["requests"] > 0 and SEEN["5xx"] == 0, SEEN
    deadline = time.monotonic() + 10  # a request the fuzz abandoned may still be finishing its tokens
    while httpx.get(url + "/ready", timeout=5).json().get("running") and time.monotonic() < deadline:
        time.sleep(0.05)
    state = httpx.get(url + "/ready", timeout=5)
    assert state.status_code == 200 and state.json()["running"] == 0, state.text
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=5)
    start = time.monotonic()
    r = client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert time.monotonic() - start < 1.0
    print(f"schemathesis: {SEEN['requests']} requests, {SEEN['5xx']} with a 5xx")
