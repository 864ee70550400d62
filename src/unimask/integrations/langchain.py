"""LangChain models around a loaded unimask model, offline: ``UnimaskLLM`` (text in, text out) and
``ChatUnimask`` (messages in, an AI message out, through the chat template of ``unimask.serving.chat``).

Both support ``invoke``, ``stream``, ``batch`` (one batched decode for ``UnimaskLLM``) and the async
``ainvoke``/``astream``/``abatch`` (LangChain runs the sync code in an executor). Needs the ``langchain``
extra (``pip install 'unimask[langchain]'``)::

    from unimask.integrations.langchain import UnimaskLLM
    llm = UnimaskLLM.from_dir("runs/x/checkpoint-1000/model", max_tokens=64)
    chain = PromptTemplate.from_template("Q: {q}\\nA:") | llm | StrOutputParser()
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.llms import LLM
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ChatMessage
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    Generation,
    GenerationChunk,
    LLMResult,
)
from pydantic import BaseModel, ConfigDict, Field

from unimask.serving.engine import LoadedModel, SamplingParams

_ROLE = {"system": "system", "human": "user", "user": "user", "ai": "assistant", "assistant": "assistant"}


class _UnimaskParams(BaseModel):
    """Fields and helpers shared by the LLM and the chat model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: LoadedModel = Field(exclude=True)
    max_tokens: int = 64
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> SamplingParams:
        """Sampling parameters from the fields, overridden by call-time keyword arguments."""
        get = lambda name: kwargs.get(name, getattr(self, name))
        stops = tuple(dict.fromkeys([*(get("stop") or []), *(stop or [])]))
        return SamplingParams(max_new_tokens=get("max_tokens"), temperature=get("temperature"), top_k=get("top_k"),
                              top_p=get("top_p"), repetition_penalty=get("repetition_penalty"), stop=stops,
                              seed=get("seed"))


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
        return {"model": self.engine.name, "max_tokens": self.max_tokens, "temperature": self.temperature,
                "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}

    def _call(self, prompt: str, stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None,
              **kwargs: Any) -> str:
        return "".join(c.text for c in self._stream(prompt, stop, run_manager, **kwargs))

    def _generate(self, prompts: list[str], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> LLMResult:
        """All prompts in one batched decode."""
        outs = self.engine.complete(prompts, self._params(stop, kwargs))
        gens = [[Generation(text=c.text, generation_info={"finish_reason": c.finish_reason})] for c in outs]
        usage = {"prompt_tokens": sum(c.prompt_tokens for c in outs),
                 "completion_tokens": sum(c.completion_tokens for c in outs)}
        return LLMResult(generations=gens, llm_output={"token_usage": usage, "model_name": self.engine.name})

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        for c in self.engine.stream(prompt, self._params(stop, kwargs)):
            info = {"finish_reason": c.finish_reason} if c.finish_reason else None
            chunk = GenerationChunk(text=c.text, generation_info=info)
            if run_manager and c.text:
                run_manager.on_llm_new_token(c.text, chunk=chunk)
            yield chunk


def _messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
    out = []
    for m in messages:
        role = m.role if isinstance(m, ChatMessage) else m.type
        if role not in _ROLE:
            raise ValueError(f"unimask chat supports system, human and ai messages, not '{role}'")
        out.append({"role": _ROLE[role], "content": m.text if hasattr(m, "text") else str(m.content)})
    return out


class ChatUnimask(_UnimaskParams, BaseChatModel):
    """A LangChain chat model: messages in, an ``AIMessage`` out (template: ``unimask.serving.chat``)."""

    @classmethod
    def from_dir(cls, directory: str | Path, **fields: Any) -> ChatUnimask:
        """Load a model directory (config.json, model.safetensors, tokenizer.json)."""
        return cls(engine=LoadedModel.load(directory), **fields)

    @property
    def _llm_type(self) -> str:
        return "unimask-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.engine.name, "max_tokens": self.max_tokens, "temperature": self.temperature}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        reply = self.engine.chat(_messages(messages), self._params(stop, kwargs))
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens,
                 "total_tokens": reply.prompt_tokens + reply.completion_tokens}
        message = AIMessage(content=reply.text, usage_metadata=usage,  # type: ignore[arg-type]
                            response_metadata={"finish_reason": reply.finish_reason, "model_name": self.engine.name})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for c in self.engine.chat_stream(_messages(messages), self._params(stop, kwargs)):
            meta = {"finish_reason": c.finish_reason} if c.finish_reason else {}
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=c.text, response_metadata=meta))
            if run_manager and c.text:
                run_manager.on_llm_new_token(c.text, chunk=chunk)
            yield chunk


__all__ = ["ChatUnimask", "UnimaskLLM"]
