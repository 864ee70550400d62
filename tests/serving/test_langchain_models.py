"""LangChain, offline: a PromptTemplate | UnimaskLLM | StrOutputParser chain and the chat model, through
invoke, stream, batch and their async forms, all giving the model's own text; tool calls and structured
output under a grammar (schemas the grammar closes by itself, so a random model's output is exact); the
embeddings class."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Literal

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from pydantic import BaseModel

from unimask.integrations.langchain import ChatUnimask, UnimaskEmbeddings, UnimaskLLM
from unimask.serving import LoadedModel, SamplingParams, render_chat


def test_chain_invoke_stream_batch_async(engine: LoadedModel) -> None:
    llm = UnimaskLLM(engine=engine, max_tokens=10, temperature=0.8, seed=4)
    chain = PromptTemplate.from_template("Question: {q}\nAnswer:") | llm | StrOutputParser()
    params = SamplingParams(max_new_tokens=10, temperature=0.8, seed=4)
    expected = engine.complete("Question: what?\nAnswer:", params)[0].text
    assert chain.invoke({"q": "what?"}) == expected
    pieces = list(chain.stream({"q": "what?"}))
    assert "".join(pieces) == expected and len([p for p in pieces if p]) > 1
    greedy = UnimaskLLM(engine=engine, max_tokens=6)
    both = (PromptTemplate.from_template("{q}") | greedy | StrOutputParser()).batch([{"q": "Hello"}, {"q": "Fox"}])
    assert both == [c.text for c in engine.complete(["Hello", "Fox"], SamplingParams(max_new_tokens=6))]

    async def run_async() -> tuple[str, list[str]]:
        return await chain.ainvoke({"q": "what?"}), [p async for p in chain.astream({"q": "what?"})]

    text, apieces = asyncio.run(run_async())
    assert text == expected and "".join(apieces) == expected
    hello = llm.invoke("Hello")
    assert llm.invoke("Hello", stop=[hello[2:4]]) == hello[: hello.find(hello[2:4])]  # stop strings pass through


def test_chat_model(engine: LoadedModel) -> None:
    chat = ChatUnimask(engine=engine, max_tokens=8, temperature=0.8, seed=2)
    messages = [SystemMessage("Be brief."), HumanMessage("Hi"), AIMessage("Hello."), HumanMessage("And?")]
    expected = engine.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And?"}],
                           SamplingParams(max_new_tokens=8, temperature=0.8, seed=2))
    reply = chat.invoke(messages)
    assert isinstance(reply, AIMessage) and reply.content == expected.text
    assert reply.usage_metadata["output_tokens"] == expected.completion_tokens
    assert "".join(c.content for c in chat.stream(messages)) == expected.text
    chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | chat | StrOutputParser()
    assert asyncio.run(chain.ainvoke({"q": "Hi"})) == chain.invoke({"q": "Hi"})
    replies = chain.batch([{"q": "a"}, {"q": "b"}])
    params = SamplingParams(max_new_tokens=8, temperature=0.8, seed=2)
    assert replies == [engine.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}],
                                   params).text for q in ("a", "b")]


def _flag_tool() -> dict:
    """A tool whose call the grammar closes by itself (a boolean argument), whatever the model."""
    return {"type": "function", "function": {"name": "set_flag", "description": "Set the flag.",
                                             "parameters": {"type": "object", "properties": {"on": {"type": "boolean"}},
                                                            "required": ["on"]}}}


def test_ls_params_usage_and_model_dir(engine: LoadedModel, causal_dir) -> None:
    chat = ChatUnimask(engine=engine, max_tokens=5, stop=["x"])
    assert chat._get_ls_params() == {"ls_provider": "unimask", "ls_model_name": "tiny", "ls_model_type": "chat",
                                     "ls_temperature": 0.0, "ls_max_tokens": 5, "ls_stop": ["x"]}
    assert UnimaskLLM(engine=engine)._get_ls_params(model="other")["ls_model_type"] == "llm"
    from_dir = ChatUnimask(model=str(causal_dir), max_tokens=5)
    assert from_dir.engine is ChatUnimask(model=str(causal_dir)).engine  # loaded once per process
    chunks = list(chat.stream("Hi"))
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1] and chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata == chat.invoke("Hi").usage_metadata
    assert chunks[-1].response_metadata["model_name"] == "tiny"
    last = list(UnimaskLLM(engine=engine, max_tokens=5)._stream("Hi"))[-1]
    assert last.generation_info["usage_metadata"]["output_tokens"] == 5


def test_tool_calls_and_history(engine: LoadedModel) -> None:
    from unimask.structured import json_grammar, tool_call_schema

    chat = ChatUnimask(engine=engine, max_tokens=80)
    bound = chat.bind_tools([_flag_tool()], tool_choice="auto")
    reply = bound.invoke("Turn it on")
    grammar = json_grammar({**tool_call_schema([_flag_tool()]), "additionalProperties": False} | {
        "properties": {"name": {"const": "set_flag"}, "arguments": {**_flag_tool()["function"]["parameters"],
                                                                     "additionalProperties": False}}})
    expected = engine.chat([{"role": "user", "content": "Turn it on"}],
                           SamplingParams(max_new_tokens=80, grammar=grammar))
    call = json.loads(expected.text)
    assert reply.content == "" and len(reply.tool_calls) == 1
    assert reply.tool_calls[0]["name"] == "set_flag" and reply.tool_calls[0]["args"] == call["arguments"]
    assert re.fullmatch(r"call_[0-9a-f]{24}", reply.tool_calls[0]["id"])
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    streamed = None
    for chunk in bound.stream("Turn it on"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed.tool_calls[0]["args"] == call["arguments"] and streamed.usage_metadata is not None
    # "auto" after a tool's result: a text answer, from the transcript with the call and the result in it
    history = [HumanMessage("Turn it on"), reply, ToolMessage("done", tool_call_id=reply.tool_calls[0]["id"])]
    answer = bound.invoke(history)
    turns = [{"role": "user", "content": "Turn it on"},
             {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
                 "name": "set_flag", "arguments": json.dumps(call["arguments"])}}]},
             {"role": "tool", "content": "done"}]
    assert render_chat(turns) == f"User: Turn it on\n\nAssistant: {expected.text}\n\nTool: done\n\nAssistant:"
    assert answer.tool_calls == [] and answer.content == engine.chat(turns, SamplingParams(max_new_tokens=80)).text
    assert chat.bind_tools([_flag_tool()], tool_choice="required").invoke(history).tool_calls  # forced: a call
    with pytest.raises(ValueError, match="not among the tools"):
        chat.bind_tools([_flag_tool()], tool_choice="other")


def test_structured_output_methods(engine: LoadedModel) -> None:
    class Mood(BaseModel):
        mood: Literal["happy", "sad"]
        sure: bool

    chat = ChatUnimask(engine=engine, max_tokens=80)
    for method in ("json_schema", "function_calling"):
        out = chat.with_structured_output(Mood, method=method).invoke("How are you?")
        assert isinstance(out, Mood)
    raw = chat.with_structured_output(Mood.model_json_schema(), include_raw=True).invoke("How are you?")
    assert raw["parsing_error"] is None and set(raw["parsed"]) == {"mood", "sure"}
    text = json.loads(chat.bind(response_format={"type": "json_object"}).invoke("Hi").content)
    assert isinstance(text, dict)
    with pytest.raises(ValueError, match="text only"):
        chat.invoke([HumanMessage([{"type": "image_url", "image_url": {"url": "data:,"}}])])


def test_embeddings(engine: LoadedModel, causal_dir) -> None:
    from unimask.embeddings import embed_texts

    emb = UnimaskEmbeddings(model=str(causal_dir), batch_size=1)
    docs = ["The quick fox", "A dog", "two plus two"]
    want = embed_texts(engine.model, engine.tokenizer, docs)
    assert torch.allclose(torch.tensor(emb.embed_documents(docs)), want, atol=1e-5)
    assert emb.embed_query("A dog") == pytest.approx(want[1].tolist(), abs=1e-5)
    assert asyncio.run(emb.aembed_documents(docs[:1])) == emb.embed_documents(docs[:1])
    unit = UnimaskEmbeddings(engine=engine, normalize=True).embed_query("A dog")
    assert sum(x * x for x in unit) == pytest.approx(1.0, abs=1e-5)
