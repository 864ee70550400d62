"""An OpenAI-compatible HTTP API (FastAPI) around a ``LoadedModel``.

Endpoints: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (chat template in
``unimask.serving.chat``), ``GET /health`` (liveness: the process answers), ``GET /ready`` (readiness: 200
when a new request would be admitted now, else 429 as a completion would get) and ``GET /openapi.json``
(FastAPI's OpenAPI schema, request bodies included). ``"stream": true`` answers with server-sent events,
one ``data: {json}`` chunk per piece of text and ``data: [DONE]`` at the end, as OpenAI's API does.

Every limit is a ``ServerLimits`` field: body size (413), ``max_tokens`` and prompt length against the
context (400), requests running at once plus a bounded queue (429 beyond), a time limit per request (408,
or an error event in a stream). Anything malformed gets a 4xx with OpenAI's error body
``{"error": {"message", "type", "param", "code"}}``; the server keeps serving. Generation settings are
checked by ``SamplingParams`` (the same check as ``unimask generate``). Generation runs in worker threads,
so the event loop stays free; the model takes one decoding step at a time (see ``LoadedModel``). A slot is
released however a request ends: finished, refused, timed out, failed, or the client gone (a non-streamed
request notices within a step or two, then stops decoding). Extensions to OpenAI's parameters: ``top_k``
and ``repetition_penalty``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from unimask.serving.engine import (
    MAX_STOP,
    MAX_TOP_LOGPROBS,
    PENALTY_RANGE,
    REPETITION_PENALTY_RANGE,
    TEMPERATURE_MAX,
    Chunk,
    LoadedModel,
    RequestError,
    SamplingParams,
    TimeLimitError,
)
from unimask.serving.metrics import CountRequests, ServerMetrics
from unimask.serving.page import add_chat_page

log = logging.getLogger(__name__)
MAX_N = 8  # choices per request
MAX_COMPLETION_LOGPROBS = 5  # OpenAI's limit for /v1/completions
MAX_EMBED_INPUTS = 64


@dataclass(frozen=True)
class ServerLimits:
    """Limits of one server; requests beyond them get a 4xx, never a crash."""

    max_body_bytes: int = 1 << 20
    max_tokens: int = 512
    max_concurrent: int = 4
    max_queue: int = 64
    max_prompts: int = 16
    max_stop: int = MAX_STOP
    time_limit_s: float = 300.0  # per request, from its arrival to its last token (checked between steps)
    api_key: str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.time_limit_s, (int, float)) and math.isfinite(self.time_limit_s)
                and self.time_limit_s > 0):
            raise ValueError(f"time_limit_s must be a positive number of seconds, got {self.time_limit_s}")


class APIError(Exception):
    """An error answered with ``status`` and OpenAI's JSON error body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def _refusal(exc: RequestError, limits: ServerLimits) -> APIError:
    """The HTTP answer to a ``RequestError``: 408 for the time limit, else 400."""
    if isinstance(exc, TimeLimitError):
        return APIError(408, f"{exc} of {limits.time_limit_s:g} s; ask for fewer tokens or retry later",
                        type_="timeout_error", code=exc.code)
    return APIError(400, str(exc), param=exc.param, code=exc.code)


# Requests -------------------------------------------------------------------------------------------------
class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    # examples: the edges (tiny and largest values), which the schema's users and fuzzers should try
    temperature: float = Field(1.0, ge=0, le=TEMPERATURE_MAX, examples=[1e-300, TEMPERATURE_MAX])
    top_p: float = Field(1.0, gt=0, le=1, examples=[1e-300, 1])
    top_k: int = Field(0, ge=0, examples=[1])
    repetition_penalty: float = Field(1.0, ge=REPETITION_PENALTY_RANGE[0], le=REPETITION_PENALTY_RANGE[1],
                                      examples=list(REPETITION_PENALTY_RANGE))
    n: int = Field(1, ge=1, le=MAX_N, examples=[MAX_N])
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = Field(0.0, ge=PENALTY_RANGE[0], le=PENALTY_RANGE[1], examples=list(PENALTY_RANGE))
    frequency_penalty: float = Field(0.0, ge=PENALTY_RANGE[0], le=PENALTY_RANGE[1], examples=list(PENALTY_RANGE))
    user: str | None = None  # accepted and ignored (OpenAI uses it for abuse monitoring)
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Request):
    prompt: str | list[str] = Field(examples=["The quick brown fox"])
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = ""
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1, examples=[[{"role": "user", "content": "What is a fox?"}]])
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = Field(None)
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None  # one call per reply here


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]] = Field(examples=["a fox", ["a fox", "a dog"]])
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


# Admission: bounded concurrency with a bounded queue --------------------------------------------------------
class Admission:
    """At most ``limit`` requests run; at most ``queue`` more wait; the rest are refused (429)."""

    def __init__(self, limit: int, queue: int) -> None:
        self.limit, self.queue = limit, queue
        self._sem: asyncio.Semaphore | None = None
        self.waiting = 0
        self.running = 0

    @property
    def full(self) -> bool:
        """Whether a request arriving now would be refused."""
        return self.running >= self.limit and self.waiting >= self.queue

    async def enter(self) -> Callable[[], None]:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.limit)
        if self._sem.locked() and self.waiting >= self.queue:
            raise APIError(429, f"the server is busy ({self.limit} requests running, {self.waiting} waiting); "
                           "retry later", type_="rate_limit_error", code="server_busy")
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        released = False
        sem = self._sem

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.running -= 1
                sem.release()

        return release


# The app --------------------------------------------------------------------------------------------------
_OPEN_PATHS = ("/health", "/")  # answered without the API key: liveness, and the chat page (it holds no data;
# its own API calls carry the key)


def create_app(engine: LoadedModel, limits: ServerLimits | None = None) -> FastAPI:
    """A FastAPI app serving ``engine`` under ``limits``."""
    limits = limits or ServerLimits()
    app = FastAPI(title="unimask", description="OpenAI-compatible API for a unimask model", docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json")
    admission = Admission(limits.max_concurrent, limits.max_queue)
    created = int(time.time())
    app.state.engine, app.state.limits, app.state.admission = engine, limits, admission
    app.openapi = lambda: _openapi_schema(app)  # type: ignore[method-assign]

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return _refusal(exc, limits).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return APIError(exc.status_code, str(exc.detail), code=_code(exc.status_code)).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return APIError(500, f"internal error: {type(exc).__name__}", type_="server_error").response()

    metrics = ServerMetrics(running=lambda: admission.running, waiting=lambda: admission.waiting)
    app.state.metrics = metrics
    if limits.api_key is not None:
        app.add_middleware(_APIKey, key=limits.api_key)
    known = lambda: {r.path for r in app.routes if "{" not in getattr(r, "path", "{")}
    app.add_middleware(CountRequests, metrics=metrics, known=known)  # outermost: refusals count too

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={429: {"description": "busy: every slot taken and the queue full"}})
    async def ready() -> Any:
        """Readiness: the model is loaded and a request arriving now would be admitted (a slot is free or
        the queue has room); otherwise 429, as that request would get."""
        state = {"running": admission.running, "waiting": admission.waiting, "max_concurrent": admission.limit,
                 "max_queue": admission.queue}
        if admission.full:
            return JSONResponse({**APIError(429, "the server is busy; retry later", type_="rate_limit_error",
                                            code="server_busy").body(), **state}, status_code=429)
        return {"status": "ready", "model": engine.name, **state}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(engine, created)]}

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        if name != engine.name:
            raise APIError(404, f"model '{name}' not found; this server has '{engine.name}'",
                           code="model_not_found", param="model")
        return _model_card(engine, created)

    @app.post("/v1/completions", openapi_extra=_body_schema(CompletionRequest))
    async def completions(request: Request) -> Any:
        deadline = time.monotonic() + limits.time_limit_s
        req = await _parse(request, CompletionRequest, limits)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts or len(prompts) * req.n > limits.max_prompts:
            raise APIError(400, f"prompt x n must be 1 to {limits.max_prompts} completions", param="prompt")
        params = _params(req, req.max_tokens or 16, engine, limits, logprobs=req.logprobs,
                         grammar=_format_grammar(req.response_format))
        ids = [row for row in await _prepare(engine, prompts, params) for _ in range(req.n)]
        rid = f"cmpl-{secrets.token_hex(12)}"
        meta = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": engine.name}
        release = await _admit(admission, deadline, limits)
        offsets = [0] * len(ids)

        def lp(c: Chunk) -> dict[str, Any] | None:
            if c.logprobs is None:
                return None
            out = _completion_logprobs(c.logprobs, offsets[c.index])
            offsets[c.index] += sum(len(e.token) for e in c.logprobs)
            return out

        def make(cancel: threading.Event | None = None) -> Iterator[Chunk]:
            return metrics.track(engine.stream_ids(ids, params, deadline=deadline, cancel=cancel))

        if req.stream:
            def chunk_body(c: Chunk) -> dict[str, Any]:
                return {**meta, "choices": [{"index": c.index, "text": c.text, "logprobs": lp(c),
                                             "finish_reason": c.finish_reason}]}

            head = ([chunk_body(Chunk(index=i, text=prompts[i // req.n])) for i in range(len(ids))]
                    if req.echo else [])
            return _sse(make, chunk_body, head, meta, _usage_wanted(req), release, limits)
        out = await _run(request, make, len(ids), release)
        choices = [{"index": i, "text": (prompts[i // req.n] if req.echo else "") + c.text, "logprobs": lp(c),
                    "finish_reason": c.finish_reason} for i, c in enumerate(out)]
        return {**meta, "choices": choices, "usage": _usage(out)}

    @app.post("/v1/chat/completions", openapi_extra=_body_schema(ChatRequest))
    async def chat_completions(request: Request) -> Any:
        deadline = time.monotonic() + limits.time_limit_s
        req = await _parse(request, ChatRequest, limits)
        messages = _chat_messages(req)
        grammar, tool_mode = _format_grammar(req.response_format), False
        if _calls_tools(req):
            if grammar is not None:
                raise APIError(400, "give either tools or a JSON response_format, not both", param="tools")
            grammar, tool_mode = _tool_grammar(req.tools, req.tool_choice), True
            messages = [{"role": "system", "content": _tools_prompt(req.tools)}, *messages]
        if req.n > limits.max_prompts:
            raise APIError(400, f"n must be at most {limits.max_prompts}", param="n")
        try:
            prompt = engine.chat_prompt(messages)
        except RequestError as exc:
            raise APIError(400, str(exc), param=exc.param) from None
        asked = req.max_completion_tokens or req.max_tokens
        if asked is None:  # as much as the context leaves, within the server's limit
            prompt_len = len(await anyio.to_thread.run_sync(engine.encode_prompt, prompt))
            room = engine.context_length if engine.is_encoder_decoder else engine.context_length - prompt_len
            asked = max(1, min(limits.max_tokens, room))
        top = (req.top_logprobs or 0) if req.logprobs else None
        if req.top_logprobs and not req.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        params = engine.chat_params(_params(req, asked, engine, limits, logprobs=top, grammar=grammar))
        ids = (await _prepare(engine, [prompt], params)) * req.n
        rid = f"chatcmpl-{secrets.token_hex(12)}"
        meta = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": engine.name}
        release = await _admit(admission, deadline, limits)

        def make(cancel: threading.Event | None = None) -> Iterator[Chunk]:
            return metrics.track(engine.strip_reply(engine.stream_ids(ids, params, deadline=deadline,
                                                                      cancel=cancel)))

        def lp(c: Chunk) -> dict[str, Any] | None:
            return None if c.logprobs is None else {"content": [_chat_logprob(e) for e in c.logprobs]}

        if req.stream:
            texts = [""] * len(ids)

            def chunk_body(c: Chunk) -> dict[str, Any]:
                if tool_mode:  # the call is sent whole once its JSON is complete
                    texts[c.index] += c.text
                    if c.finish_reason is None:
                        delta: dict[str, Any] = {}
                    else:
                        message, reason = _reply(texts[c.index], c.finish_reason, True)
                        delta = {k: v for k, v in message.items() if k != "role" and v is not None}
                        if "tool_calls" in delta:
                            delta["tool_calls"] = [{"index": 0, **t} for t in delta["tool_calls"]]
                        return {**meta, "choices": [{"index": c.index, "delta": delta, "logprobs": lp(c),
                                                     "finish_reason": reason}]}
                else:
                    delta = {"content": c.text} if c.text or c.finish_reason is None else {}
                return {**meta, "choices": [{"index": c.index, "delta": delta, "logprobs": lp(c),
                                             "finish_reason": c.finish_reason}]}

            head = [{**meta, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                          "logprobs": None, "finish_reason": None}]} for i in range(len(ids))]
            return _sse(make, chunk_body, head, meta, _usage_wanted(req), release, limits)
        out = await _run(request, make, len(ids), release)
        choices = []
        for i, c in enumerate(out):
            message, reason = _reply(c.text, c.finish_reason or "stop", tool_mode)
            choices.append({"index": i, "message": message, "logprobs": lp(c), "finish_reason": reason})
        return {**meta, "object": "chat.completion", "usage": _usage(out), "choices": choices}

    @app.post("/v1/embeddings", openapi_extra=_body_schema(EmbeddingRequest))
    async def embeddings(request: Request) -> Any:
        raw = await _read_body(request, limits.max_body_bytes)
        req = _validate(raw, EmbeddingRequest)
        if req.model is not None and req.model != engine.name:
            raise APIError(404, f"model '{req.model}' not found; this server has '{engine.name}'", param="model",
                           code="model_not_found")
        if req.dimensions is not None and req.dimensions != engine.model.config.d_model:
            raise APIError(400, f"dimensions: this model's embeddings have {engine.model.config.d_model}",
                           param="dimensions")
        rows = _embedding_rows(req.input, engine)
        deadline = time.monotonic() + limits.time_limit_s
        release = await _admit(admission, deadline, limits)
        try:
            vectors = await anyio.to_thread.run_sync(engine.embed_ids, rows)
        finally:
            release()
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, req.encoding_format)}
                for i, v in enumerate(vectors.tolist())]
        n = sum(len(r) for r in rows)
        return {"object": "list", "data": data, "model": engine.name,
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus' text format (see ``unimask.serving.metrics``)."""
        return Response(metrics.render(), media_type=metrics.content_type)

    add_chat_page(app, engine)
    return app


class _APIKey:
    """ASGI middleware: 401 without ``Authorization: Bearer <key>`` (except on ``_OPEN_PATHS``). Plain ASGI,
    not ``BaseHTTPMiddleware``, so handlers still see the client's disconnect through ``receive``."""

    def __init__(self, app: Any, key: str) -> None:
        self.app, self.expected = app, f"Bearer {key}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in _OPEN_PATHS:
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not secrets.compare_digest(given, self.expected):
                response = APIError(401, "missing or wrong API key (Authorization: Bearer ...)",
                                    type_="authentication_error", code="invalid_api_key").response()
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _admit(admission: Admission, deadline: float, limits: ServerLimits) -> Callable[[], None]:
    """A slot (``release`` to give it back), or 408 when the wait in the queue used up the time limit."""
    release = await admission.enter()
    if time.monotonic() > deadline:
        release()
        raise _refusal(TimeLimitError("the request waited past its time limit", code="request_timeout"), limits)
    return release


async def _run(request: Request, make: Callable[[threading.Event], Iterator[Chunk]], n: int,
               release: Callable[[], None]) -> list[Chunk]:
    """Collect a non-streamed generation in a worker thread, then ``release`` its slot (also on errors and
    cancellation). A watcher stops the generation once the client has disconnected."""
    cancel = threading.Event()
    out: list[Chunk] = []
    error: Exception | None = None

    async def watch() -> None:
        while not await request.is_disconnected():
            await anyio.sleep(0.25)
        cancel.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:
                out = await anyio.to_thread.run_sync(lambda: _collect(make(cancel), n))
            except Exception as exc:  # raised below, outside the task group (not as an ExceptionGroup)
                error = exc
            finally:
                tg.cancel_scope.cancel()
    finally:
        cancel.set()
        release()
    if error is not None:
        raise error
    return out


# Helpers --------------------------------------------------------------------------------------------------
def _code(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed"}.get(status, f"http_{status}")


def _model_card(engine: LoadedModel, created: int) -> dict[str, Any]:
    return {"id": engine.name, "object": "model", "created": created, "owned_by": "unimask",
            "context_length": engine.context_length, "arch": engine.model.config.arch}


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise APIError(413, f"request body too large (limit {limit} bytes)", code="request_too_large")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise APIError(413, f"request body too large (limit {limit} bytes)", code="request_too_large")
    return bytes(body)


async def _parse(request: Request, kind: type[_Request], limits: ServerLimits) -> Any:
    raw = await _read_body(request, limits.max_body_bytes)
    req = _validate(raw, kind)
    engine: LoadedModel = request.app.state.engine
    if req.model is not None and req.model != engine.name:
        raise APIError(404, f"model '{req.model}' not found; this server has '{engine.name}'", param="model",
                       code="model_not_found")
    return req


def _validate(raw: bytes, kind: type[BaseModel]) -> Any:
    """A JSON body as ``kind``, or a 400 naming the first problem."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the body is not valid JSON ({exc})", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "the body is nested too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "the body must be a JSON object", code="invalid_json")
    try:
        req = kind.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise APIError(400, f"{where}: {err['msg']}", param=where or None, code="invalid_value") from None
    return req


def _params(req: _Request, max_tokens: int, engine: LoadedModel, limits: ServerLimits, *,
            logprobs: int | None = None, grammar: str | None = None) -> SamplingParams:
    cap = min(limits.max_tokens, engine.context_length)
    if max_tokens > cap:
        raise APIError(400, f"max_tokens {max_tokens} is over this server's limit of {cap}", param="max_tokens",
                       code="max_tokens_too_large")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    try:
        return SamplingParams.from_user(max_new_tokens=max_tokens, temperature=req.temperature, top_k=req.top_k,
                                        top_p=req.top_p, repetition_penalty=req.repetition_penalty,
                                        stop=tuple(stop), seed=req.seed, max_stop=limits.max_stop,
                                        presence_penalty=req.presence_penalty,
                                        frequency_penalty=req.frequency_penalty, logprobs=logprobs, grammar=grammar)
    except RequestError as exc:
        raise APIError(400, str(exc), param=exc.param) from None


async def _prepare(engine: LoadedModel, prompts: list[str], params: SamplingParams) -> list[list[int]]:
    try:
        return await anyio.to_thread.run_sync(engine.prepare, prompts, params)
    except RequestError as exc:
        raise APIError(400, str(exc), param=exc.param or "prompt", code=exc.code) from None


def _text(content: str | list[dict[str, Any]] | None, i: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise APIError(400, f"messages[{i}].content: only text parts are supported", param=f"messages.{i}")
        parts.append(part["text"])
    return "".join(parts)


def _collect(chunks: Iterator[Chunk], n: int) -> list[Chunk]:
    """Chunks -> one final Chunk per prompt with the whole text (and every token's log-probabilities)."""
    texts = [""] * n
    logprobs: list[list[Any] | None] = [None] * n
    out: list[Chunk | None] = [None] * n
    for c in chunks:
        texts[c.index] += c.text
        if c.logprobs is not None:
            logprobs[c.index] = (logprobs[c.index] or []) + c.logprobs
        if c.finish_reason is not None:
            out[c.index] = Chunk(c.index, texts[c.index], c.finish_reason, c.prompt_tokens, c.completion_tokens,
                                 logprobs[c.index])
    return [c for c in out if c is not None]


# Structured output, tools, log-probabilities, embeddings ----------------------------------------------------
def _format_grammar(response_format: dict[str, Any] | None) -> str | None:
    """The grammar of OpenAI's ``response_format`` (``text``: none; ``json_object``; ``json_schema``)."""
    from unimask.structured import GrammarError, closed_schema, json_grammar

    if not response_format or response_format.get("type", "text") == "text":
        return None
    kind = response_format.get("type")
    try:
        if kind == "json_object":
            return json_grammar(None)
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
                raise APIError(400, "response_format.json_schema must be {'name': ..., 'schema': {...}}",
                               param="response_format")
            schema = spec.get("schema") or {}
            return json_grammar(closed_schema(schema))  # closed even when not strict: still valid under it
    except GrammarError as exc:
        raise APIError(400, f"response_format: {exc}", param="response_format") from None
    raise APIError(400, f"response_format.type must be text, json_object or json_schema, got {kind!r}",
                   param="response_format")


def _tool_grammar(tools: list[dict[str, Any]], choice: str | dict[str, Any] | None) -> str:
    from unimask.structured import GrammarError, closed_schema, json_grammar, tool_call_schema

    if isinstance(choice, str) and choice not in ("auto", "required", "none"):
        raise APIError(400, f"tool_choice must be auto, required, none or a function, got {choice!r}",
                       param="tool_choice")
    try:  # "auto" decodes a call too (see _calls_tools): a grammar-bound small model cannot judge when
        schema = tool_call_schema(tools, choice if isinstance(choice, dict) else "required")
        return json_grammar(closed_schema(schema))  # closed objects (OpenAI's strict mode), always valid
    except GrammarError as exc:
        raise APIError(400, str(exc), param="tools") from None


def _tools_prompt(tools: list[dict[str, Any]]) -> str:
    """A short system message naming the tools and their arguments (the grammar enforces the full schemas;
    small models have small contexts)."""
    lines = ["Answer with one tool call as JSON {\"name\": ..., \"arguments\": {...}}. Tools:"]
    for tool in tools:
        fn = tool.get("function") or {}
        args = ", ".join(((fn.get("parameters") or {}).get("properties") or {}).keys())
        lines.append(f"- {fn.get('name')}({args}): {fn.get('description', '')}".rstrip(": "))
    return "\n".join(lines)


def _chat_messages(req: ChatRequest) -> list[dict[str, Any]]:
    """The request's messages as the chat template reads them (``serving.chat``: tool calls and tool
    results included)."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        message: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role,
                                   "content": _text(m.content, i)}
        if m.role == "assistant" and m.tool_calls:
            message["tool_calls"] = m.tool_calls
        out.append(message)
    return out


def _calls_tools(req: ChatRequest) -> bool:
    """Whether this reply is a tool call: tools given and not ``"none"``; with ``"auto"`` (or no choice)
    the reply after a tool's result is text, so an agent loop calls once per user turn, then answers (the
    same rule as ``ChatUnimask``)."""
    if not req.tools or req.tool_choice == "none":
        return False
    return not (req.tool_choice in (None, "auto") and req.messages[-1].role == "tool")


def _reply(text: str, reason: str, tool_mode: bool) -> tuple[dict[str, Any], str]:
    """The assistant message (a tool call when its JSON is complete) and the finish reason."""
    if tool_mode:
        try:
            call = json.loads(text)
        except json.JSONDecodeError:  # cut short by max_tokens: the text as it is
            return {"role": "assistant", "content": text}, reason
        tool_call = {"id": f"call_{secrets.token_hex(12)}", "type": "function",
                     "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}
        return {"role": "assistant", "content": None, "tool_calls": [tool_call]}, "tool_calls"
    return {"role": "assistant", "content": text}, reason


def _chat_logprob(e: Any) -> dict[str, Any]:
    return {"token": e.token, "logprob": e.logprob, "bytes": list(e.bytes),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(b)} for t, b, v in e.top]}


def _completion_logprobs(entries: list[Any], offset: int) -> dict[str, Any]:
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e.token)
    return {"tokens": [e.token for e in entries], "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{t: v for t, _, v in e.top} for e in entries], "text_offset": offsets}


def _embedding_rows(value: Any, engine: LoadedModel) -> list[list[int]]:
    if isinstance(value, str):
        value = [value]
    if not value:
        raise APIError(400, "input must hold at least one text", param="input")
    if len(value) > MAX_EMBED_INPUTS:
        raise APIError(400, f"input holds {len(value)} items; at most {MAX_EMBED_INPUTS}", param="input")
    if all(isinstance(v, int) for v in value):
        value = [value]
    rows = []
    vocab = engine.model.config.vocab_size
    for i, item in enumerate(value):
        row = engine.tokenizer.encode(item) if isinstance(item, str) else list(item)
        if not row:
            raise APIError(400, f"input[{i}] has no tokens", param="input")
        if any(not isinstance(t, int) or not 0 <= t < vocab for t in row):
            raise APIError(400, f"input[{i}]: token ids must be in [0, {vocab})", param="input")
        if len(row) > engine.context_length:
            raise APIError(400, f"input[{i}] has {len(row)} tokens; the context is {engine.context_length}",
                           param="input")
        rows.append(row)
    return rows


def _encode_vector(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        import base64

        import numpy as np

        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


def _usage(chunks: list[Chunk]) -> dict[str, int]:
    p = sum(c.prompt_tokens for c in chunks)
    g = sum(c.completion_tokens for c in chunks)
    return {"prompt_tokens": p, "completion_tokens": g, "total_tokens": p + g}


def _usage_wanted(req: _Request) -> bool:
    return bool(req.stream_options and req.stream_options.get("include_usage"))


_DONE = object()


def _sse_error(message: str, type_: str, param: str | None, code: str | None) -> str:
    return f"data: {json.dumps({'error': {'message': message, 'type': type_, 'param': param, 'code': code}})}\n\n"


def _sse(make: Callable[[], Iterator[Chunk]], body: Callable[[Chunk], dict[str, Any]], head: list[dict[str, Any]],
         meta: dict[str, Any], with_usage: bool, release: Callable[[], None],
         limits: ServerLimits) -> StreamingResponse:
    """Server-sent events: ``head`` events, one per chunk from ``make()`` (run in worker threads), optionally
    a usage event, then ``[DONE]``. An error after the 200 header (time limit, failure) is one error event.
    The admission slot is released however the stream ends."""

    async def events() -> AsyncIterator[str]:
        it: Iterator[Chunk] | None = None
        finals: list[Chunk] = []
        try:
            for h in head:
                yield f"data: {json.dumps(h)}\n\n"
            it = await anyio.to_thread.run_sync(make)
            while True:
                c = await anyio.to_thread.run_sync(next, it, _DONE)
                if c is _DONE:
                    break
                if c.finish_reason is not None:
                    finals.append(c)
                yield f"data: {json.dumps(body(c))}\n\n"
            if with_usage:
                yield f"data: {json.dumps({**meta, 'choices': [], 'usage': _usage(finals)})}\n\n"
            yield "data: [DONE]\n\n"
        except RequestError as exc:
            err = _refusal(exc, limits)
            yield _sse_error(err.message, err.type, err.param, err.code)
        except Exception as exc:  # an error after the 200 header: report it in the stream
            log.exception("error while streaming")
            yield _sse_error(f"internal error: {type(exc).__name__}", "server_error", None, None)
        finally:  # also when the client went away and the task is cancelled
            with anyio.CancelScope(shield=True):
                try:
                    if it is not None and hasattr(it, "close"):
                        await anyio.to_thread.run_sync(it.close)
                finally:
                    release()

    return _EventStream(events(), release)


class _EventStream(StreamingResponse):
    """A server-sent-event response that releases its admission slot however it ends, even when the body
    was never started (the client left before the first byte)."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # a client that left mid-stream leaves the body suspended at a yield: close it here, so its
            with anyio.CancelScope(shield=True):  # generation is closed now, not whenever the GC gets to it
                try:
                    await self.body_iterator.aclose()  # type: ignore[attr-defined]
                finally:
                    self._release()


# OpenAPI --------------------------------------------------------------------------------------------------
def _body_schema(kind: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that parses its own body (to answer with OpenAI's errors)."""
    ref = {"$ref": f"#/components/schemas/{kind.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request models (with their nested models) under ``components``."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=_version(), description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for kind in (CompletionRequest, ChatRequest, EmbeddingRequest):
            model = kind.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model.pop("$defs", {}))
            components[kind.__name__] = model
        app.openapi_schema = schema
    return app.openapi_schema


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unimask")
    except PackageNotFoundError:
        return "0"


__all__ = ["APIError", "Admission", "ServerLimits", "create_app"]
