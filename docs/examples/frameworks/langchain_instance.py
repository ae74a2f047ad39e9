"""How-to: a LangChain chat model wrapped as an instance, in one line."""

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


def wrap(model: ChatOpenAI, token_url: str) -> ChatOpenAI:
    """The model, refreshing whichever door a request comes through."""

    async def renew(stale: ChatOpenAI) -> None:
        # Renewed in place, so the model keeps every setting: a client that sends a fresh key.
        async with httpx.AsyncClient() as http:
            response = await http.post(token_url, data={"grant_type": "client_credentials"})
        key = response.json()["access_token"]
        stale.root_async_client = stale.root_async_client.with_options(api_key=key)
        stale.async_client = stale.root_async_client.chat.completions

    # No names: the LangChain preset intercepts ainvoke, invoke, astream and stream, and
    # hands the model out through |, bind_tools, with_config, abatch, astream_events, ...
    return refresh_on_401(model, refresh=renew)


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
