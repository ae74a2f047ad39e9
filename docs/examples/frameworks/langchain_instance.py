"""How-to: a LangChain chat model wrapped as an instance, with the methods that hand it out."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

import asyncio

import httpx
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import LoopbackLLMServer, run_loopback_server_in_thread

# Runnable methods that hand the model out: they build a binding, a sequence or a batch around
# it, or stream through it. Run with the proxy as `self`, what they build calls the proxy.
HANDS_OUT = (
    "__or__",
    "pipe",
    "bind",
    "bind_tools",
    "with_config",
    "with_retry",
    "with_fallbacks",
    "with_listeners",
    "with_types",
    "with_structured_output",
    "batch",
    "abatch",
    "batch_as_completed",
    "abatch_as_completed",
    "transform",
    "atransform",
    "astream_events",
    # What astream_events runs on in LangChain 1.x: with the proxy as `self`, it streams
    # through the proxy's astream.
    "_astream_events_v1_v2",
    "astream_log",
)


def wrap(model: ChatOpenAI, token_url: str) -> ChatOpenAI:
    """The model, refreshing on `ainvoke` and `astream`, whichever door a request comes through."""

    async def renew(stale: ChatOpenAI) -> None:
        # Renewed in place, so the model keeps every setting: a client that sends a fresh key.
        async with httpx.AsyncClient() as http:
            response = await http.post(token_url, data={"grant_type": "client_credentials"})
        key = response.json()["access_token"]
        stale.root_async_client = stale.root_async_client.with_options(api_key=key)
        stale.async_client = stale.root_async_client.chat.completions

    return refresh_on_401(
        model, refresh=renew, calls=("ainvoke",), streams=("astream",), hands_out=HANDS_OUT
    )


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def run(server: LoopbackLLMServer) -> None:
    async with httpx.AsyncClient() as http_client:
        model = wrap(
            ChatOpenAI(
                model="gpt-4o-mini",
                base_url=server.openai_base_url,
                api_key=server.issue_token(),
                max_retries=0,
                http_async_client=http_client,
            ),
            server.token_url,
        )

        server.expire_all()
        print("ainvoke:", (await model.ainvoke("hello")).content)

        server.inject_stream_error("before_content", api="openai")
        chain = ChatPromptTemplate.from_template("{question}") | model | StrOutputParser()
        texts = [text async for text in chain.astream({"question": "hello"})]
        print("prompt | model | parser, streamed:", "".join(texts))

        server.expire_all()
        print("bind_tools:", (await model.bind_tools([add]).ainvoke("hello")).content)

        print("refreshes:", server.stats.token_requests)


def main() -> None:
    # LangChain gathers asyncio tasks: run it on asyncio, the server on a thread of its own.
    with run_loopback_server_in_thread() as server:
        asyncio.run(run(server))


if __name__ == "__main__":
    main()
