"""LangChain models around a loaded unimask model, offline: ``UnimaskLLM`` (text in, text out),
``ChatUnimask`` (messages in, an AI message out, through the chat template of ``unimask.serving.chat``) and
``UnimaskEmbeddings`` (mean-pooled final hidden states, ``unimask.embeddings``).

Each is built from a loaded engine (``engine=LoadedModel``) or from a model directory (``model="runs/x"``,
loaded once per process and shared). The models support ``invoke``, ``stream`` (the last chunk carries the
token usage), ``batch`` (one batched decode for ``UnimaskLLM``) and the async forms (LangChain runs the
sync code in an executor). Needs the ``langchain`` extra (``pip install 'unimask[langchain]'``)::

    from unimask.integrations.langchain import ChatUnimask, UnimaskLLM
    llm = UnimaskLLM(model="runs/x/checkpoint-1000/model", max_tokens=64)
    chain = PromptTemplate.from_template("Q: {q}\\nA:") | llm | StrOutputParser()

Tools and structured output are decoded under a grammar (``unimask.structured``, llguidance), so a tool
call or a structured reply always parses, however small the model (unless ``max_tokens`` cuts it short):

- ``ChatUnimask.bind_tools(tools, tool_choice=...)``: the reply is one call ``{"name", "arguments"}`` of one
  of the tools, returned as ``AIMessage.tool_calls`` (ids ``call_<hex>``). ``tool_choice``: ``"any"``,
  ``"required"`` or ``True`` force a call of any tool; a tool's name (or OpenAI's
  ``{"type": "function", "function": {"name": ...}}``) forces that one; ``"none"`` gives text. ``"auto"``
  (and no choice) cannot be left to the model, which under a grammar does not really choose: it calls a
  tool unless the last message is a tool's result, which it answers in text. An agent loop thus makes one
  call per user turn and then answers.
- ``ChatUnimask.with_structured_output(schema, method=...)``: ``"json_schema"`` (the default: decode under
  the schema itself), ``"function_calling"`` (through ``bind_tools``) or ``"json_mode"`` (any JSON object,
  parsed into the schema); Pydantic classes, TypedDicts and JSON schemas. Objects the schema leaves open
  (no ``additionalProperties``) are closed, as in OpenAI's strict mode, unless ``strict=False``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import LangSmithParams, LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.llms import LLM
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.output_parsers import (
    JsonOutputKeyToolsParser,
    JsonOutputParser,
    PydanticOutputParser,
    PydanticToolsParser,
)
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    Generation,
    GenerationChunk,
    LLMResult,
)
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ConfigDict, Field, model_validator

from unimask.serving.engine import Chunk, LoadedModel, SamplingParams
from unimask.structured import closed_schema

_ROLE = {"system": "system", "human": "user", "user": "user", "ai": "assistant", "assistant": "assistant",
         "tool": "tool"}
_MEDIA = {"image", "image_url", "audio", "input_audio", "file", "video", "document"}

_ENGINES: dict[tuple[str, str, int], LoadedModel] = {}
_ENGINES_LOCK = threading.Lock()


def load_engine(directory: str | Path, device: str = "cpu") -> LoadedModel:
    """``LoadedModel.load(directory)``, once per process for the same directory, device and weights file."""
    from unimask.checkpoint import find_model_dir

    found = find_model_dir(directory)
    weights = found / "model.safetensors"
    key = (str(Path(directory).resolve()), device, weights.stat().st_mtime_ns if weights.is_file() else 0)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = LoadedModel.load(directory, device=device)
        return _ENGINES[key]


class _UnimaskEngine(BaseModel):
    """The engine, given (``engine``) or loaded from a model directory (``model``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: LoadedModel | None = Field(default=None, exclude=True)
    model: str | None = None
    """A model directory (config.json, model.safetensors, tokenizer.json), loaded when no engine is given."""
    device: str = "cpu"

    @model_validator(mode="after")
    def _load(self) -> _UnimaskEngine:
        if self.engine is None:
            if self.model is None:
                raise ValueError("give engine= (a unimask LoadedModel) or model= (a model directory)")
            self.engine = load_engine(self.model, self.device)
        return self

    @property
    def _engine(self) -> LoadedModel:
        assert self.engine is not None  # set by the validator
        return self.engine

    @property
    def model_name(self) -> str:
        """The engine's name (the model directory's name unless given)."""
        return self._engine.name


class _UnimaskParams(_UnimaskEngine):
    """Sampling fields and helpers shared by the LLM and the chat model."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] | None = None

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any], grammar: str | None = None) -> SamplingParams:
        """Sampling parameters from the fields, overridden by call-time keyword arguments."""
        get = lambda name: kwargs.get(name, getattr(self, name))
        stops = tuple(dict.fromkeys([*(get("stop") or []), *(stop or [])]))
        return SamplingParams(max_new_tokens=get("max_tokens"), temperature=get("temperature"), top_k=get("top_k"),
                              top_p=get("top_p"), repetition_penalty=get("repetition_penalty"), stop=stops,
                              seed=get("seed"), presence_penalty=get("presence_penalty"),
                              frequency_penalty=get("frequency_penalty"), grammar=grammar)

    def _ls(self, kind: Literal["chat", "llm"], stop: list[str] | None, kwargs: dict[str, Any]) -> LangSmithParams:
        params = LangSmithParams(ls_provider="unimask", ls_model_name=kwargs.get("model") or self.model_name,
                                 ls_model_type=kind, ls_temperature=kwargs.get("temperature", self.temperature),
                                 ls_max_tokens=kwargs.get("max_tokens", self.max_tokens))
        if stops := stop or kwargs.get("stop") or self.stop:
            params["ls_stop"] = list(stops)
        return params

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` under the model's own tokenizer (LangChain's token counting)."""
        return self._engine.tokenizer.encode(text)


def _usage(chunk: Chunk) -> dict[str, int]:
    return {"input_tokens": chunk.prompt_tokens, "output_tokens": chunk.completion_tokens,
            "total_tokens": chunk.prompt_tokens + chunk.completion_tokens}


class UnimaskLLM(_UnimaskParams, LLM):
    """A LangChain LLM: a prompt string in, the completion string out (``temperature=0`` is greedy)."""

    @classmethod
    def from_dir(cls, directory: str | Path, **fields: Any) -> UnimaskLLM:
        """Load a model directory (config.json, model.safetensors, tokenizer.json)."""
        return cls(engine=LoadedModel.load(directory), **fields)

    @property
    def _llm_type(self) -> str:
        return "unimask"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model_name, "max_tokens": self.max_tokens, "temperature": self.temperature,
                "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self._ls("llm", stop, kwargs)

    def _call(self, prompt: str, stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None,
              **kwargs: Any) -> str:
        return "".join(c.text for c in self._stream(prompt, stop, run_manager, **kwargs))

    def _generate(self, prompts: list[str], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> LLMResult:
        """All prompts in one batched decode."""
        outs = self._engine.complete(prompts, self._params(stop, kwargs))
        gens = [[Generation(text=c.text, generation_info={"finish_reason": c.finish_reason})] for c in outs]
        prompt_tokens = sum(c.prompt_tokens for c in outs)
        completion_tokens = sum(c.completion_tokens for c in outs)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        return LLMResult(generations=gens, llm_output={"token_usage": usage, "model_name": self.model_name})

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        """Text chunks; the last one's ``generation_info`` has ``finish_reason``, ``usage_metadata`` and
        ``model_name``."""
        for c in self._engine.stream(prompt, self._params(stop, kwargs)):
            info = None
            if c.finish_reason:
                info = {"finish_reason": c.finish_reason, "usage_metadata": _usage(c), "model_name": self.model_name}
            chunk = GenerationChunk(text=c.text, generation_info=info)
            if run_manager and c.text:
                run_manager.on_llm_new_token(c.text, chunk=chunk)
            yield chunk


# Messages ------------------------------------------------------------------------------------------------
def _text(m: BaseMessage, i: int) -> str:
    if isinstance(m.content, list):
        for block in m.content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind in _MEDIA:
                raise ValueError(f"messages[{i}]: unimask models read text only, not '{kind}' content")
    return m.text


def _messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages -> the chat template's (OpenAI-shaped) dicts; tool calls and results included."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m.role if isinstance(m, ChatMessage) else m.type
        if role not in _ROLE:
            raise ValueError(f"unimask chat supports system, human, ai and tool messages, not '{role}'")
        entry: dict[str, Any] = {"role": _ROLE[role], "content": _text(m, i)}
        if isinstance(m, AIMessage) and m.tool_calls:
            entry["tool_calls"] = [{"id": c.get("id"), "type": "function",
                                    "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
                                   for c in m.tool_calls]
        if isinstance(m, ToolMessage):
            entry["tool_call_id"] = m.tool_call_id
        out.append(entry)
    return out


# Grammars ------------------------------------------------------------------------------------------------
def _tool_name(choice: Any) -> str | None:
    if isinstance(choice, dict):
        return (choice.get("function") or {}).get("name") or choice.get("name")
    return None


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


_CALL_START = re.compile(r'\{"name": ("(?:[^"\\]|\\.)*"), "arguments": ')


class _ToolCallStream:
    """Turns the text of a decoded call ``{"name": ..., "arguments": ...}`` into tool-call chunks as it grows:
    the name once known, then the arguments' JSON text (the call's closing brace held back)."""

    def __init__(self) -> None:
        self.text = ""
        self.id = _call_id()
        self.start: int | None = None  # where the arguments begin in ``text``
        self.sent = 0

    def push(self, piece: str, last: bool = False) -> list[Any]:
        self.text += piece
        out = []
        if self.start is None and (m := _CALL_START.match(self.text)):
            self.start = self.sent = m.end()
            out.append(tool_call_chunk(name=json.loads(m.group(1)), args="", id=self.id, index=0))
        if self.start is not None:
            end = len(self.text) - 1 if last and self.text.endswith("}") else len(self.text) - (not last)
            if end > self.sent:
                out.append(tool_call_chunk(name=None, args=self.text[self.sent:end], id=None, index=0))
                self.sent = end
        elif last:  # cut short before the name was complete
            out.append(tool_call_chunk(name=None, args=self.text, id=self.id, index=0))
        return out


def _is_call(text: str) -> bool:
    """Whether ``text`` is a complete tool call."""
    return bool(_parse_call(text)[0])


def _parse_call(text: str) -> tuple[list[Any], list[Any]]:
    """``(tool_calls, invalid_tool_calls)`` from a decoded call's text."""
    try:
        call = json.loads(text)
        if not isinstance(call, dict) or not isinstance(call.get("arguments"), dict):
            raise ValueError("not a call {'name': ..., 'arguments': {...}}")
        return [tool_call(name=call["name"], args=call["arguments"], id=_call_id())], []
    except (ValueError, KeyError) as exc:  # only when max_tokens cut the call short
        return [], [invalid_tool_call(name=None, args=text, id=_call_id(), error=f"unfinished tool call: {exc}")]


class ChatUnimask(_UnimaskParams, BaseChatModel):
    """A LangChain chat model: messages in, an ``AIMessage`` out (template: ``unimask.serving.chat``);
    tools and structured output under a grammar (see the module's docstring)."""

    @classmethod
    def from_dir(cls, directory: str | Path, **fields: Any) -> ChatUnimask:
        """Load a model directory (config.json, model.safetensors, tokenizer.json)."""
        return cls(engine=LoadedModel.load(directory), **fields)

    @property
    def _llm_type(self) -> str:
        return "unimask-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model_name, "max_tokens": self.max_tokens, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self._ls("chat", stop, kwargs)

    # Tools and structured output -----------------------------------------------------------------------
    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any], *,
                   tool_choice: str | bool | dict[str, Any] | None = None, strict: bool | None = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (LangChain tools, functions, Pydantic classes, OpenAI tool dicts); see the module's
        docstring for ``tool_choice``. ``strict=False`` keeps objects the schemas leave open open."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        names = [t["function"]["name"] for t in formatted]
        if isinstance(tool_choice, str) and tool_choice not in ("auto", "any", "required", "none"):
            tool_choice = {"type": "function", "function": {"name": tool_choice}}
        if (wanted := _tool_name(tool_choice)) is not None and wanted not in names:
            raise ValueError(f"tool_choice names '{wanted}', which is not among the tools ({', '.join(names)})")
        if tool_choice is True:
            tool_choice = "required"
        elif tool_choice is False:
            tool_choice = "none"
        return super().bind(tools=formatted, tool_choice=tool_choice, strict=strict, **kwargs)

    def with_structured_output(self, schema: dict[str, Any] | type, *,
                               method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
                               include_raw: bool = False, strict: bool | None = None,
                               **kwargs: Any) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A runnable whose output is ``schema``'s instance (Pydantic) or a dict (TypedDict, JSON schema)."""
        if kwargs:
            raise ValueError(f"unsupported arguments {sorted(kwargs)}")
        pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        trace = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name, strict=strict, ls_structured_output_format=trace)
            parser = (PydanticToolsParser(tools=[schema], first_tool_only=True) if pydantic  # type: ignore[list-item]
                      else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True))
        elif method in ("json_schema", "json_mode"):
            if method == "json_schema":
                response_format: dict[str, Any] = {"type": "json_schema", "json_schema": {
                    "name": convert_to_openai_tool(schema)["function"]["name"],
                    "schema": convert_to_json_schema(schema), "strict": strict}}
            else:
                response_format = {"type": "json_object"}
                trace = {"kwargs": {"method": method}, "schema": schema}
            llm = self.bind(response_format=response_format, ls_structured_output_format=trace)
            parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()  # type: ignore[arg-type,type-var]
        else:
            raise ValueError(f"method must be 'json_schema', 'function_calling' or 'json_mode', got {method!r}")
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")

    def _plan(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> tuple[str | None, bool]:
        """``(grammar, is_tool_call)`` for this call, from the bound tools or response format."""
        from unimask.structured import json_grammar, tool_call_schema

        kwargs.pop("ls_structured_output_format", None)
        if kwargs.pop("model", None) not in (None, self.model, self.model_name):
            raise ValueError("ChatUnimask holds one model; give another as ChatUnimask(model=...)")
        tools = kwargs.pop("tools", None)
        choice = kwargs.pop("tool_choice", None)
        strict = kwargs.pop("strict", None)
        kwargs.pop("parallel_tool_calls", None)  # one call per reply
        response_format = kwargs.pop("response_format", None)
        close = (lambda s: s) if strict is False else closed_schema
        if tools and choice != "none":
            if choice in (None, "auto") and messages and isinstance(messages[-1], ToolMessage):
                return None, False  # "auto": a tool's result is answered in text
            named = {"type": "function", "function": {"name": _tool_name(choice)}} if _tool_name(choice) else None
            return json_grammar(close(tool_call_schema(tools, named or "required"))), True
        if response_format is None or response_format.get("type") == "text":
            return None, False
        if response_format.get("type") == "json_object":
            return json_grammar(None), False
        if response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema") or {}
            schema = spec.get("schema", spec)
            return json_grammar(schema if spec.get("strict") is False else close(schema)), False
        raise ValueError(f"response_format type must be text, json_object or json_schema: {response_format}")

    # Generation ----------------------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        grammar, is_call = self._plan(messages, kwargs)
        reply = self._engine.chat(_messages(messages), self._params(stop, kwargs, grammar))
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens,
                 "total_tokens": reply.prompt_tokens + reply.completion_tokens}
        meta = {"finish_reason": reply.finish_reason, "model_name": self.model_name}
        if is_call:
            calls, invalid = _parse_call(reply.text)
            meta["finish_reason"] = "tool_calls" if calls else reply.finish_reason
            message = AIMessage(content="", tool_calls=calls, invalid_tool_calls=invalid,
                                usage_metadata=usage, response_metadata=meta)  # type: ignore[arg-type]
        else:
            message = AIMessage(content=reply.text, usage_metadata=usage,  # type: ignore[arg-type]
                                response_metadata=meta)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """Text (or tool-call) chunks; the last has the finish reason, the model's name and the token usage."""
        grammar, is_call = self._plan(messages, kwargs)
        calls = _ToolCallStream() if is_call else None
        for c in self._engine.chat_stream(_messages(messages), self._params(stop, kwargs, grammar)):
            last = c.finish_reason is not None
            fields: dict[str, Any] = {}
            if last:
                reason = "tool_calls" if calls is not None and _is_call(calls.text + c.text) else c.finish_reason
                fields = {"usage_metadata": _usage(c), "chunk_position": "last",
                          "response_metadata": {"finish_reason": reason, "model_name": self.model_name}}
            if calls is not None:
                message = AIMessageChunk(content="", tool_call_chunks=calls.push(c.text, last), **fields)
            else:
                message = AIMessageChunk(content=c.text, **fields)
            chunk = ChatGenerationChunk(message=message)
            if run_manager and c.text:
                run_manager.on_llm_new_token(c.text, chunk=chunk)
            yield chunk


# Embeddings ----------------------------------------------------------------------------------------------
class UnimaskEmbeddings(_UnimaskEngine, Embeddings):
    """LangChain embeddings: the mean of the model's final hidden states over each text's tokens (a causal
    decoder's, a prefix decoder's with the whole text as prefix, an encoder-decoder's encoder; see
    ``unimask.embeddings``). ``normalize=True`` scales each vector to unit length. The async forms run the
    sync ones in the default executor (LangChain's ``Embeddings`` defaults)."""

    batch_size: int = 16
    normalize: bool = False

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        from unimask.embeddings import embed_texts

        if not texts:
            return []
        engine = self._engine
        out = embed_texts(engine.model, engine.tokenizer, texts, batch_size=self.batch_size, normalize=self.normalize)
        return out.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


__all__ = ["ChatUnimask", "UnimaskEmbeddings", "UnimaskLLM", "load_engine"]
