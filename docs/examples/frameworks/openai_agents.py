"""How-to: an OpenAI Agents SDK model whose runs survive an expired token."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

import asyncio

import openai
from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import LoopbackLLMServer, run_loopback_server_in_thread

# The loopback server is not OpenAI: keep the SDK from exporting traces there.
set_tracing_disabled(disabled=True)


async def run(server: LoopbackLLMServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key=server.issue_token(), max_retries=0
    ) as client:

        async def renew(stale: OpenAIChatCompletionsModel) -> OpenAIChatCompletionsModel:
            # Ask your token endpoint here; with_options shares the client's connections.
            fresh = client.with_options(api_key=server.issue_token())
            return OpenAIChatCompletionsModel(model=stale.model, openai_client=fresh)

        model = refresh_on_401(
            OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client), refresh=renew
        )
        agent = Agent(name="assistant", model=model)

        # The token expired between two runs: the 401 arrives at the model's request.
        server.expire_all()
        result = await Runner.run(agent, "hello")
        print("expired before the run:", result.final_output)

        # The token is revoked mid-stream, before any text: the stream is retried.
        server.inject_stream_error("before_content", api="openai")
        streamed = Runner.run_streamed(agent, "hello")
        texts = [
            event.data.delta
            async for event in streamed.stream_events()
            if event.type == "raw_response_event"
            and event.data.type == "response.output_text.delta"
        ]
        print("error before any text:", "".join(texts))

        print("refreshes:", server.stats.tokens_issued - 1)


def main() -> None:
    # Runner starts asyncio tasks: run it on asyncio, the server on a thread of its own.
    with run_loopback_server_in_thread() as server:
        asyncio.run(run(server))


if __name__ == "__main__":
    main()
