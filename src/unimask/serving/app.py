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
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from unimask.serving.engine import (
    MAX_STOP,
    REPETITION_PENALTY_RANGE,
    TEMPERATURE_MAX,
    Chunk,
    LoadedModel,
    RequestError,
    SamplingParams,
    TimeLimitError,
)

log = logging.getLogger(__name__)


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
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = Field(0.0, ge=0, le=0)
    frequency_penalty: float = Field(0.0, ge=0, le=0)
    user: str | None = None


class CompletionRequest(_Request):
    prompt: str | list[str] = Field(examples=["The quick brown fox"])
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=0)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]] | None = ""


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1, examples=[[{"role": "user", "content": "What is a fox?"}]])
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = Field(None)


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
_OPEN_PATHS = ("/health", "/ready", "/openapi.json")  # answered without the API key (probes, discovery)


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

    if limits.api_key is not None:
        app.add_middleware(_APIKey, key=limits.api_key)

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
        if not prompts or len(prompts) > limits.max_prompts:
            raise APIError(400, f"prompt must hold 1 to {limits.max_prompts} texts", param="prompt")
        params = _params(req, req.max_tokens or 16, engine, limits)
        ids = await _prepare(engine, prompts, params)
        rid = f"cmpl-{secrets.token_hex(12)}"
        meta = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": engine.name}
        release = await _admit(admission, deadline, limits)
        if req.stream:
            def chunk_body(c: Chunk) -> dict[str, Any]:
                return {**meta, "choices": [{"index": c.index, "text": c.text, "logprobs": None,
                                             "finish_reason": c.finish_reason}]}

            head = [chunk_body(Chunk(index=i, text=p)) for i, p in enumerate(prompts)] if req.echo else []
            return _sse(lambda: engine.stream_ids(ids, params, deadline=deadline), chunk_body, head, meta,
                        _usage_wanted(req), release, limits)
        out = await _run(request, lambda cancel: engine.stream_ids(ids, params, deadline=deadline, cancel=cancel),
                         len(ids), release)
        choices = [{"index": i, "text": (prompts[i] if req.echo else "") + c.text, "logprobs": None,
                    "finish_reason": c.finish_reason} for i, c in enumerate(out)]
        return {**meta, "choices": choices, "usage": _usage(out)}

    @app.post("/v1/chat/completions", openapi_extra=_body_schema(ChatRequest))
    async def chat_completions(request: Request) -> Any:
        deadline = time.monotonic() + limits.time_limit_s
        req = await _parse(request, ChatRequest, limits)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": _text(m.content, i)}
                    for i, m in enumerate(req.messages)]
        if req.logprobs:
            raise APIError(400, "logprobs are not supported", param="logprobs")
        try:
            prompt = engine.chat_prompt(messages)
        except RequestError as exc:
            raise APIError(400, str(exc), param=exc.param) from None
        asked = req.max_completion_tokens or req.max_tokens
        if asked is None:  # as much as the context leaves, within the server's limit
            prompt_len = len(await anyio.to_thread.run_sync(engine.encode_prompt, prompt))
            room = engine.context_length if engine.is_encoder_decoder else engine.context_length - prompt_len
            asked = max(1, min(limits.max_tokens, room))
        params = engine.chat_params(_params(req, asked, engine, limits))
        ids = await _prepare(engine, [prompt], params)
        rid = f"chatcmpl-{secrets.token_hex(12)}"
        meta = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": engine.name}
        release = await _admit(admission, deadline, limits)
        if req.stream:
            def chunk_body(c: Chunk) -> dict[str, Any]:
                delta = {"content": c.text} if c.text or c.finish_reason is None else {}
                return {**meta, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": c.finish_reason}]}

            head = [{**meta, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                          "logprobs": None, "finish_reason": None}]}]
            return _sse(lambda: engine.strip_reply(engine.stream_ids(ids, params, deadline=deadline)), chunk_body,
                        head, meta, _usage_wanted(req), release, limits)
        out = await _run(request, lambda cancel: engine.strip_reply(
            engine.stream_ids(ids, params, deadline=deadline, cancel=cancel)), 1, release)
        c = out[0]
        return {**meta, "object": "chat.completion", "usage": _usage(out),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
                             "finish_reason": c.finish_reason}]}

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
    engine: LoadedModel = request.app.state.engine
    if req.model is not None and req.model != engine.name:
        raise APIError(404, f"model '{req.model}' not found; this server has '{engine.name}'", param="model",
                       code="model_not_found")
    return req


def _params(req: _Request, max_tokens: int, engine: LoadedModel, limits: ServerLimits) -> SamplingParams:
    cap = min(limits.max_tokens, engine.context_length)
    if max_tokens > cap:
        raise APIError(400, f"max_tokens {max_tokens} is over this server's limit of {cap}", param="max_tokens",
                       code="max_tokens_too_large")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    try:
        return SamplingParams.from_user(max_new_tokens=max_tokens, temperature=req.temperature, top_k=req.top_k,
                                        top_p=req.top_p, repetition_penalty=req.repetition_penalty,
                                        stop=tuple(stop), seed=req.seed, max_stop=limits.max_stop)
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
    """Chunks -> one final Chunk per prompt with the whole text."""
    texts = [""] * n
    out: list[Chunk | None] = [None] * n
    for c in chunks:
        texts[c.index] += c.text
        if c.finish_reason is not None:
            out[c.index] = Chunk(c.index, texts[c.index], c.finish_reason, c.prompt_tokens, c.completion_tokens)
    return [c for c in out if c is not None]


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
        for kind in (CompletionRequest, ChatRequest):
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
