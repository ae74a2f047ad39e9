"""LangGraph's message streaming: a wrapped LangChain model's tokens go out through callbacks.

The node awaits the model's `ainvoke` (a call to the wrapper) while LangGraph streams the
model's tokens to the user: once one went out, the call is committed, and a 401 after it is
raised rather than retried, or the text would be streamed twice.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph

from frameworks.support import FULL_TEXT, Keys, expected, outcome, together
from refresh_middleware import is_unauthorized_error, refresh_on_401

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning"
)


def wrapped_model(server, keys, http_client):
    """ChatOpenAI wrapped with no names (the preset's); an async refresh builds it anew."""

    def build(key):
        return ChatOpenAI(
            model="m",
            base_url=server.openai_base_url,
            api_key=key,
            max_retries=0,
            http_async_client=http_client,
        )

    async def renew(stale):
        return build(await keys.fetch())

    return refresh_on_401(build(server.issue_token()), refresh=renew)


def graph_of(model):
    """One node that awaits the model, as LangGraph's chat examples do."""

    async def call_model(state):
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_edge(START, "model")
    builder.add_edge("model", END)
    return builder.compile()


async def streamed_messages(graph, seen):
    """The graph's text, token by token, as `stream_mode="messages"` sends it; kept in `seen`."""
    async for chunk, _metadata in graph.astream(
        {"messages": [("user", "hi")]}, stream_mode="messages"
    ):
        seen.append(chunk.content)
    return "".join(seen)


def run(server, main):
    """`main(keys, graph)` under asyncio, with the graph around a wrapped model; keys, result."""
    keys = Keys(server)

    async def go():
        async with httpx.AsyncClient() as http_client:
            return await main(graph_of(wrapped_model(server, keys, http_client)))

    return keys, asyncio.run(go())


def test_a_401_after_text_is_raised_and_no_text_repeats(threaded):
    """An auth error event after the first tokens went out: raised, not retried, none repeated."""
    threaded.inject_stream_error("after_content", api="openai")
    seen = []

    async def main(graph):
        try:
            await streamed_messages(graph, seen)
        except Exception as error:
            return is_unauthorized_error(error)
        return False

    keys, unauthorized = run(threaded, main)
    assert (0, 0, True, ["", "chunk-0 "]) == (
        threaded.stats.token_requests,
        keys.fetches,
        unauthorized,
        seen,
    )


def test_a_401_before_text_is_retried(threaded):
    """An auth error event after the role-only chunk, before text, is retried: text once."""
    threaded.inject_stream_error("before_content", api="openai")

    async def main(graph):
        return [await streamed_messages(graph, [])]

    keys, texts = run(threaded, main)
    assert expected(1) == outcome(threaded, keys, texts)


def test_herd_on_an_expired_token(threaded):
    """Twenty graphs streaming messages on an expired token: one refresh, each text once."""

    async def main(graph):
        threaded.expire_all()
        return await together(lambda: streamed_messages(graph, []))

    keys, texts = run(threaded, main)
    assert expected() == outcome(threaded, keys, texts)
    assert FULL_TEXT == texts[0]
