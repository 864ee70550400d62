"""LangChain, offline: a PromptTemplate | UnimaskLLM | StrOutputParser chain and the chat model, through
invoke, stream, batch and their async forms, all giving the model's own text."""

from __future__ import annotations

import asyncio

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate

from unimask.integrations.langchain import ChatUnimask, UnimaskLLM
from unimask.serving import LoadedModel, SamplingParams


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
