"""LangChain's standard integration suite for ``langchain-openai``'s ``ChatOpenAI`` pointed at a live
``unimask serve`` (uvicorn on a loopback port), with each capability flag set to what the server truly
supports. The model is the tiny chat model the ChatUnimask suite trains (``test_langchain_standard``);
what stays beyond such a model is xfailed narrowly with the reason."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytest.importorskip("langchain_openai")

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests
from test_langchain_standard import Capabilities, TinyModelLimits, train_chat_model

from unimask.serving import LoadedModel
from unimask.serving.app import ServerLimits, create_app

pytestmark = [pytest.mark.asyncio,
              pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'")]
_URL: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def live_server(tmp_path_factory: pytest.TempPathFactory, server_class: type) -> Any:
    # a longer context (RoPE): ChatOpenAI's few-shot and tool prompts run to a few hundred of its tokens
    directory = train_chat_model(tmp_path_factory.mktemp("openai-standard") / "tiny-chat", max_seq_len=1024)
    engine = LoadedModel.load(directory, name="tiny-chat")
    with server_class(create_app(engine, ServerLimits(max_tokens=128, max_concurrent=4, max_queue=64))) as s:
        _URL["url"] = s.url
        yield s


class TestChatOpenAIAgainstUnimask(TinyModelLimits, Capabilities, ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # a fresh async client per model: langchain-openai's shared default one outlives each test's event loop
        return {"model": "tiny-chat", "base_url": _URL["url"] + "/v1", "api_key": "unused", "max_retries": 0,
                "timeout": 60, "max_tokens": 128, "temperature": 0, "stream_usage": True,
                "http_async_client": httpx.AsyncClient(timeout=60)}

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "json_schema"}
