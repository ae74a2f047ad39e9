"""`kind_of` on the real stream items of LangChain, pydantic-ai and google-genai.

`tests/test_kinds.py` pins every rule on look-alikes; this file checks that the real types, as
the installed versions build and stream them, get the same kinds. It needs the frameworks
(the `integrations` session installs them) and is skipped without them.
"""

from __future__ import annotations

import asyncio

import pytest

langchain_core = pytest.importorskip("langchain_core")
pydantic_ai = pytest.importorskip("pydantic_ai")
genai = pytest.importorskip("google.genai")

from google.genai import types as genai_types  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk  # noqa: E402
from langchain_core.outputs import ChatGenerationChunk  # noqa: E402
from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.messages import (  # noqa: E402
    FinalResultEvent,
    ModelRequest,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters  # noqa: E402
from pydantic_ai.models.test import TestModel  # noqa: E402

from refresh_middleware.classify import ItemKind, kind_of  # noqa: E402

OUTPUT, METADATA, DONE = ItemKind.OUTPUT, ItemKind.METADATA, ItemKind.DONE

# --------------------------------------------------------------------------------------------------
# LangChain


@pytest.mark.parametrize(
    "chunk",
    [
        AIMessageChunk(content="", response_metadata={"model_provider": "openai"}),
        AIMessageChunk(
            content=[], usage_metadata={"input_tokens": 3, "output_tokens": 0, "total_tokens": 3}
        ),
        AIMessageChunk(content="", chunk_position="last"),
    ],
)
def test_empty_ai_message_chunks_are_metadata(chunk):
    """The role-only first AIMessageChunk, a usage-only one and the closing one commit nothing."""
    assert METADATA == kind_of(chunk)


@pytest.mark.parametrize(
    "chunk",
    [
        AIMessageChunk(content="Hi"),
        AIMessageChunk(content=[{"type": "text", "text": "Hi", "index": 0}]),
        AIMessageChunk(
            content="", tool_call_chunks=[{"name": "f", "args": "", "id": "c", "index": 0}]
        ),
    ],
)
def test_ai_message_chunks_with_content_or_tool_calls_are_output(chunk):
    """An AIMessageChunk with text, a content block or a tool call chunk commits."""
    assert OUTPUT == kind_of(chunk)


def test_chat_generation_chunk_takes_its_message_kind():
    """A ChatGenerationChunk, as a chat model's `_astream` yields, is its message's kind."""
    assert (METADATA, OUTPUT) == (
        kind_of(ChatGenerationChunk(message=AIMessageChunk(content=""))),
        kind_of(ChatGenerationChunk(message=AIMessageChunk(content="Hi"))),
    )


def test_a_chat_model_stream_is_output_chunk_by_chunk():
    """What `BaseChatModel.stream` yields (AIMessageChunks with text) commits."""
    model = GenericFakeChatModel(messages=iter([AIMessage(content="hello world")]))
    assert {OUTPUT} == {kind_of(chunk) for chunk in model.stream("hi")}


def test_astream_events_announce_the_run_as_metadata():
    """`astream_events`: the start is metadata, streamed chunks commit, the end is output."""

    async def kinds():
        model = GenericFakeChatModel(messages=iter([AIMessage(content="hello world")]))
        return [
            (event["event"], kind_of(event))
            async for event in model.astream_events("hi", version="v2")
        ]

    expected = [
        ("on_chat_model_start", METADATA),
        ("on_chat_model_stream", OUTPUT),
        ("on_chat_model_stream", OUTPUT),
        ("on_chat_model_stream", OUTPUT),
        ("on_chat_model_end", OUTPUT),
    ]
    assert expected == asyncio.run(kinds())


# --------------------------------------------------------------------------------------------------
# pydantic-ai


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (PartStartEvent(index=0, part=TextPart(content="")), METADATA),
        (PartStartEvent(index=0, part=ThinkingPart(content="")), METADATA),
        (PartStartEvent(index=0, part=TextPart(content="Hi")), OUTPUT),
        (PartStartEvent(index=0, part=ToolCallPart(tool_name="f")), OUTPUT),
        (PartDeltaEvent(index=0, delta=TextPartDelta(content_delta="Hi")), OUTPUT),
        (FinalResultEvent(tool_name=None, tool_call_id=None), METADATA),
    ],
)
def test_pydantic_ai_events(event, expected):
    """Empty text or thinking parts and the final-result marker are metadata; content commits."""
    assert expected == kind_of(event)


async def test_a_model_stream_commits_at_its_first_text():
    """`request_stream` of pydantic-ai's TestModel: the empty part start and marker, then text."""
    model = TestModel(custom_output_text="Hello world")
    messages = [ModelRequest(parts=[UserPromptPart(content="hi")])]
    async with model.request_stream(messages, None, ModelRequestParameters()) as stream:
        kinds = [kind_of(event) async for event in stream]

    assert [METADATA, METADATA, OUTPUT, OUTPUT, OUTPUT] == kinds


def test_an_agent_run_ends_with_done():
    """`Agent.run_stream_events` ends with its AgentRunResultEvent, which is done."""

    async def kinds():
        agent = Agent(TestModel(custom_output_text="Hi there"))
        async with agent.run_stream_events("hi") as events:
            return [kind_of(event) async for event in events]

    assert DONE == asyncio.run(kinds())[-1]


# --------------------------------------------------------------------------------------------------
# google-genai


def response(payload):
    return genai_types.GenerateContentResponse.model_validate(payload)


def candidate(*parts, **fields):
    return {"content": {"role": "model", "parts": list(parts)}, **fields}


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        (response({"candidates": [candidate({"text": "Hi"})]}), OUTPUT),
        (
            response({"candidates": [candidate({"functionCall": {"name": "f", "args": {}}})]}),
            OUTPUT,
        ),
        (response({"candidates": [candidate({"text": "Bye"}, finishReason="STOP")]}), OUTPUT),
        (response({"candidates": [candidate({"text": ""}, finishReason="STOP")]}), DONE),
        (response({"candidates": [candidate({"thoughtSignature": "c2ln"})]}), METADATA),
        (response({"usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}), METADATA),
    ],
)
def test_gemini_response_chunks(chunk, expected):
    """Text or a function call commits; a finish with nothing new is done; the rest is metadata."""
    assert expected == kind_of(chunk)
