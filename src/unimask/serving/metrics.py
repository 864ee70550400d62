"""Prometheus metrics of one server (``GET /metrics``), named as vLLM and TGI users expect to find them.

* ``unimask_requests_total{endpoint, status}``: every answered HTTP request, by path and status code;
* ``unimask_generated_tokens_total`` and ``unimask_prompt_tokens_total``;
* ``unimask_time_to_first_token_seconds`` and ``unimask_time_per_output_token_seconds`` (histograms);
* ``unimask_requests_running`` and ``unimask_requests_waiting`` (gauges read from the admission queue).

Each app has its own registry, so two servers in one process (the tests) never mix their counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    """The counters of one app; ``track`` wraps a chunk iterator to time its tokens."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, running: Callable[[], float], waiting: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("unimask_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.generated = Counter("unimask_generated_tokens", "tokens generated", registry=r)
        self.prompt = Counter("unimask_prompt_tokens", "prompt tokens read", registry=r)
        self.ttft = Histogram("unimask_time_to_first_token_seconds", "from admission to the first generated text",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram("unimask_time_per_output_token_seconds", "mean time between generated tokens",
                              buckets=_LATENCY_BUCKETS, registry=r)
        Gauge("unimask_requests_running", "requests decoding now", registry=r).set_function(running)
        Gauge("unimask_requests_waiting", "requests in the queue", registry=r).set_function(waiting)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def track(self, chunks: Iterator[Any]) -> Iterator[Any]:
        """Pass ``chunks`` through, observing time to first text, time per token and token counts."""
        start = time.monotonic()
        first: float | None = None
        prompt = generated = 0
        try:
            for c in chunks:
                if first is None and (c.text or c.finish_reason is not None):
                    first = time.monotonic()
                    self.ttft.observe(first - start)
                if c.finish_reason is not None:
                    prompt += c.prompt_tokens
                    generated += c.completion_tokens
                yield c
        finally:
            if generated:
                self.generated.inc(generated)
                self.prompt.inc(prompt)
                if first is not None and generated > 1:
                    self.tpot.observe((time.monotonic() - first) / (generated - 1))


class CountRequests:
    """ASGI middleware counting every HTTP answer by path and status (unknown paths count as ``other``)."""

    def __init__(self, app: Any, metrics: ServerMetrics, known: Callable[[], set[str]]) -> None:
        self.app, self.metrics, self.known = app, metrics, known

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            path = scope["path"] if scope["path"] in self.known() else "other"
            self.metrics.requests.labels(endpoint=path, status=str(status["code"])).inc()
