"""How-to: a LangChain chat model whose calls, streams and chains survive an expired token."""

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


async def renew(model: RefreshingChatOpenAI) -> None:
    """Fetch a token and give the model a client that sends it; the model stays the same."""
    async with httpx.AsyncClient() as http:
        response = await http.post(model.token_url, data={"grant_type": "client_credentials"})
    key = response.json()["access_token"]
    # with_options shares the stale client's connections, so streams still running on it
    # are not cut off.
    model.root_async_client = model.root_async_client.with_options(api_key=key)
    model.async_client = model.root_async_client.chat.completions


@refresh_on_401(refresh=renew, calls=("_agenerate",), streams=("_astream",))
class RefreshingChatOpenAI(ChatOpenAI):
    """ChatOpenAI whose requests refresh their token on a 401 and are retried once."""

    token_url: str
    """Where fresh tokens come from (an OAuth client-credentials endpoint)."""


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def run(server: LoopbackLLMServer) -> None:
    async with httpx.AsyncClient() as http_client:
        model = RefreshingChatOpenAI(
            model="gpt-4o-mini",
            base_url=server.openai_base_url,
            api_key=server.issue_token(),
            token_url=server.token_url,
            max_retries=0,
            http_async_client=http_client,
        )

        server.expire_all()
        print("ainvoke:", (await model.ainvoke("hello")).content)

        server.expire_all()
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
