"""`kind_of` on the stream items of frameworks and APIs, and how it reads each class.

The frameworks are optional, so their items are played here by look-alikes with the same class
names and fields (pydantic models and dataclasses, as the real ones are); the real types are
checked in `tests/frameworks/test_kinds_real.py`. The OpenAI Responses API's events are the
openai SDK's own types, a test dependency.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import inspect
import types
from typing import Any, Literal

import httpx2
import openai
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseCreatedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseQueuedEvent,
    ResponseReasoningSummaryPartAddedEvent,
    ResponseTextDeltaEvent,
)

from refresh_middleware._kinds import _engine
from refresh_middleware.classify import GateAction, ItemKind, StreamGate, kind_of

OUTPUT, METADATA, ERROR, DONE = ItemKind.OUTPUT, ItemKind.METADATA, ItemKind.ERROR, ItemKind.DONE

# --------------------------------------------------------------------------------------------------
# OpenAI Responses API (the openai SDK's types, built as its stream builds them)

RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 0,
    "model": "gpt",
    "output": [],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "status": "in_progress",
}


def response_event(cls: Any, kind: str, **fields: Any) -> Any:
    return cls.model_construct(type=kind, sequence_number=0, **fields)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (response_event(ResponseCreatedEvent, "response.created", response=RESPONSE), METADATA),
        (response_event(ResponseQueuedEvent, "response.queued", response=RESPONSE), METADATA),
        (
            response_event(ResponseInProgressEvent, "response.in_progress", response=RESPONSE),
            METADATA,
        ),
        (response_event(ResponseCompletedEvent, "response.completed", response=RESPONSE), DONE),
        (response_event(ResponseIncompleteEvent, "response.incomplete", response=RESPONSE), DONE),
        (response_event(ResponseFailedEvent, "response.failed", response=RESPONSE), ERROR),
        (
            response_event(ResponseErrorEvent, "error", code="invalid_api_key", message="no"),
            ERROR,
        ),
        (
            response_event(
                ResponseTextDeltaEvent,
                "response.output_text.delta",
                delta="Hi",
                item_id="m",
                output_index=0,
                content_index=0,
                logprobs=[],
            ),
            OUTPUT,
        ),
    ],
)
def test_responses_events_by_name(item, expected):
    """Responses API lifecycle events are metadata, its end is done, failures are errors."""
    assert expected == kind_of(item)


def item_added(item: dict[str, Any]) -> Any:
    return response_event(
        ResponseOutputItemAddedEvent, "response.output_item.added", item=item, output_index=0
    )


MESSAGE_ITEM = {"id": "m", "type": "message", "role": "assistant", "status": "in_progress"}
REASONING_ITEM = {"id": "r", "type": "reasoning"}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (item_added({**MESSAGE_ITEM, "content": []}), METADATA),
        (item_added({**REASONING_ITEM, "summary": []}), METADATA),
        (
            item_added({**MESSAGE_ITEM, "content": [{"type": "output_text", "text": "Hi"}]}),
            OUTPUT,
        ),
        (
            item_added({"type": "function_call", "name": "f", "call_id": "c", "arguments": ""}),
            OUTPUT,
        ),
    ],
)
def test_responses_output_item_added_commits_only_with_something_in_it(item, expected):
    """An added message or reasoning item with nothing in it is metadata; a tool call commits."""
    assert expected == kind_of(item)


def part_added(cls: Any, kind: str, part: dict[str, Any]) -> Any:
    return response_event(cls, kind, part=part, item_id="m", output_index=0, content_index=0)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            part_added(
                ResponseContentPartAddedEvent,
                "response.content_part.added",
                {"type": "output_text", "text": "", "annotations": []},
            ),
            METADATA,
        ),
        (
            part_added(
                ResponseContentPartAddedEvent,
                "response.content_part.added",
                {"type": "output_text", "text": "Hi", "annotations": []},
            ),
            OUTPUT,
        ),
        (
            part_added(
                ResponseReasoningSummaryPartAddedEvent,
                "response.reasoning_summary_part.added",
                {"type": "summary_text", "text": ""},
            ),
            METADATA,
        ),
        (
            {"type": "response.content_part.added", "part": {"type": "image", "url": "x"}},
            OUTPUT,
        ),
    ],
)
def test_responses_part_added_commits_only_with_something_in_it(item, expected):
    """An added text part still empty is metadata; one with text, or of another kind, commits."""
    assert expected == kind_of(item)


def test_an_unknown_responses_event_is_output():
    """A Responses API event this library does not know commits, like any unknown item."""
    assert OUTPUT == kind_of({"type": "response.web_search_call.searching", "item_id": "w"})


# --------------------------------------------------------------------------------------------------
# OpenAI chat completions' `stream()` helper (the SDK's own events, made by its own stream state)


def chat_stream_events(*deltas: dict[str, Any]) -> list[Any]:
    """The events `client.chat.completions.stream()` yields for chunks carrying `deltas`."""
    state = ChatCompletionStreamState()
    events: list[Any] = []
    for delta in deltas:
        chunk = ChatCompletionChunk.model_validate(
            {
                "id": "c",
                "created": 0,
                "model": "gpt",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
        )
        events.extend(state.handle_chunk(chunk))
    return events


ROLE_ONLY = {"role": "assistant", "content": ""}


def test_chat_stream_opening_events_are_metadata():
    """The ChunkEvent of a role-only chunk and its ContentDeltaEvent(delta="") commit nothing."""
    events = chat_stream_events(ROLE_ONLY)
    assert [("ChunkEvent", METADATA), ("ContentDeltaEvent", METADATA)] == [
        (type(event).__name__, kind_of(event)) for event in events
    ]


def test_chat_stream_events_with_text_are_output():
    """Once text arrives, its ChunkEvent and ContentDeltaEvent commit."""
    events = chat_stream_events(ROLE_ONLY, {"content": "Hi"})[2:]
    assert [("ChunkEvent", OUTPUT), ("ContentDeltaEvent", OUTPUT)] == [
        (type(event).__name__, kind_of(event)) for event in events
    ]


def test_a_chat_stream_tool_call_event_is_output():
    """A chunk starting a tool call commits, and so does its arguments event."""
    call = {"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": ""}}
    events = chat_stream_events(ROLE_ONLY, {"tool_calls": [call]})[2:]
    assert {OUTPUT} == {kind_of(event) for event in events}


def test_an_auth_error_after_the_chat_stream_opening_is_retried():
    """The gate retries an auth error that follows the `stream()` helper's opening events."""
    gate = StreamGate()
    actions = [gate.on_item(event)[0] for event in chat_stream_events(ROLE_ONLY)]
    response = httpx2.Response(401, request=httpx2.Request("POST", "http://127.0.0.1/"))
    error = openai.AuthenticationError("Error code: 401", response=response, body=None)
    assert ([GateAction.FORWARD] * 2, GateAction.RETRY) == (actions, gate.on_exception(error))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"type": "content.delta", "delta": ""}, METADATA),
        ({"type": "content.delta", "delta": "Hi"}, OUTPUT),
        ({"type": "refusal.delta", "delta": ""}, METADATA),
        ({"type": "content.delta", "text": "Hi"}, OUTPUT),
        ({"type": "chunk"}, OUTPUT),
    ],
)
def test_chat_stream_events_as_mappings(item, expected):
    """Dumped events read alike; only an empty text delta is metadata, a chunkless chunk commits."""
    assert expected == kind_of(item)


# --------------------------------------------------------------------------------------------------
# LlamaIndex (look-alikes of llama_index.core.base.llms.types, pydantic models as the real ones)


class TextBlock(pydantic.BaseModel):
    block_type: Literal["text"] = "text"
    text: str


class ThinkingBlock(pydantic.BaseModel):
    block_type: Literal["thinking"] = "thinking"
    content: str | None = None


class ChatMessage(pydantic.BaseModel):
    role: str = "user"
    additional_kwargs: dict[str, Any] = pydantic.Field(default_factory=dict)
    blocks: list[TextBlock | ThinkingBlock] = pydantic.Field(default_factory=list)

    @property
    def content(self) -> str | None:
        """The text blocks joined, as the real property computes it."""
        texts = [block.text for block in self.blocks if isinstance(block, TextBlock)]
        joined = "\n".join(texts) or None
        return "" if joined is None and len(texts) == 1 else joined


class ChatResponse(pydantic.BaseModel):
    message: ChatMessage
    raw: Any | None = None
    delta: str | None = None
    logprobs: list[Any] | None = None
    additional_kwargs: dict[str, Any] = pydantic.Field(default_factory=dict)


def llama_response(delta: str | None, *blocks: Any, **message_kwargs: Any) -> ChatResponse:
    """A ChatResponse as LlamaIndex's OpenAI LLM streams it: the delta and the message so far."""
    message = ChatMessage(role="assistant", blocks=list(blocks), **message_kwargs)
    return ChatResponse(message=message, delta=delta, raw={"object": "chat.completion.chunk"})


def test_llamaindex_opening_chat_response_is_metadata():
    """The first streamed ChatResponse (delta "", an empty text block) commits nothing."""
    assert METADATA == kind_of(llama_response("", TextBlock(text="")))


@pytest.mark.parametrize(
    "item",
    [
        llama_response("Hi", TextBlock(text="Hi")),
        llama_response("", TextBlock(text="Hi")),
        llama_response("", ThinkingBlock(content="hmm"), TextBlock(text="")),
        llama_response("", TextBlock(text=""), additional_kwargs={"tool_calls": [{"id": "t"}]}),
        ChatResponse(
            message=ChatMessage(role="assistant"),
            delta="",
            additional_kwargs={"thinking_delta": "hmm"},
        ),
        llama_response(None, TextBlock(text="")),
    ],
    ids=["text", "text so far", "thinking", "tool call", "thinking delta", "not streamed"],
)
def test_llamaindex_chat_responses_with_something_in_them_are_output(item):
    """Text, thinking, a tool call, or a response that is no stream's (no delta) commits."""
    assert OUTPUT == kind_of(item)


class OllamaMessage(pydantic.BaseModel):
    role: str
    content: str | None = None


def test_another_librarys_chat_response_still_commits():
    """A ChatResponse of another shape (Ollama's: no delta) commits, as unknown items do."""

    class ChatResponse(pydantic.BaseModel):
        model: str = "llama"
        done: bool = False
        message: OllamaMessage

    assert OUTPUT == kind_of(ChatResponse(message=OllamaMessage(role="assistant", content="")))


def test_an_auth_error_after_the_llamaindex_opening_is_retried():
    """The gate retries an auth error that follows LlamaIndex's opening ChatResponse."""
    gate = StreamGate()
    action, _ = gate.on_item(llama_response("", TextBlock(text="")))
    assert (GateAction.FORWARD, GateAction.RETRY) == (
        action,
        gate.on_exception(RuntimeError("HTTP 401")),
    )


# --------------------------------------------------------------------------------------------------
# LangChain (look-alikes of langchain_core's pydantic models)


class AIMessageChunk(pydantic.BaseModel, extra="allow"):
    content: str | list[Any] = ""
    additional_kwargs: dict[str, Any] = pydantic.Field(default_factory=dict)
    response_metadata: dict[str, Any] = pydantic.Field(default_factory=dict)
    type: Literal["AIMessageChunk"] = "AIMessageChunk"
    id: str | None = None
    tool_calls: list[Any] = pydantic.Field(default_factory=list)
    invalid_tool_calls: list[Any] = pydantic.Field(default_factory=list)
    usage_metadata: dict[str, int] | None = None
    tool_call_chunks: list[Any] = pydantic.Field(default_factory=list)
    chunk_position: str | None = None

    @property
    def text(self) -> str:  # as LangChain's: a class attribute of a name kind_of reads
        return self.content if isinstance(self.content, str) else ""


class ChatGenerationChunk(pydantic.BaseModel):
    text: str = ""
    generation_info: dict[str, Any] | None = None
    type: Literal["ChatGenerationChunk"] = "ChatGenerationChunk"
    message: AIMessageChunk


@pytest.mark.parametrize(
    "item",
    [
        AIMessageChunk(),
        AIMessageChunk(content=[], response_metadata={"model_name": "claude"}),
        AIMessageChunk(usage_metadata={"input_tokens": 3, "output_tokens": 5}),
        AIMessageChunk(chunk_position="last"),
    ],
)
def test_empty_langchain_chunks_are_metadata(item):
    """The role-only first AIMessageChunk, usage-only and closing ones commit nothing."""
    assert METADATA == kind_of(item)


@pytest.mark.parametrize(
    "item",
    [
        AIMessageChunk(content="Hi"),
        AIMessageChunk(content=[{"type": "thinking", "thinking": "hm", "index": 0}]),
        AIMessageChunk(tool_call_chunks=[{"name": "f", "args": "", "id": "c", "index": 0}]),
        AIMessageChunk(additional_kwargs={"function_call": {"name": "f", "arguments": ""}}),
    ],
)
def test_langchain_chunks_with_content_or_tool_calls_are_output(item):
    """An AIMessageChunk carrying text, content blocks or a tool call commits."""
    assert OUTPUT == kind_of(item)


def test_serialised_langchain_chunks_are_read_alike():
    """A dumped AIMessageChunk (a mapping) is read like the object."""
    assert (METADATA, OUTPUT) == (
        kind_of(AIMessageChunk().model_dump()),
        kind_of(AIMessageChunk(content="Hi").model_dump()),
    )


@pytest.mark.parametrize(("content", "expected"), [("", METADATA), ("Hi", OUTPUT)])
def test_chat_generation_chunks_take_their_message_kind(content, expected):
    """A ChatGenerationChunk (what a chat model's `_astream` yields) is its message's kind."""
    item = ChatGenerationChunk(text=content, message=AIMessageChunk(content=content))
    assert expected == kind_of(item)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"event": "on_chat_model_start", "data": {"input": "hi"}}, METADATA),
        ({"event": "on_chain_start", "data": {}}, METADATA),
        ({"event": "on_chat_model_stream", "data": {"chunk": AIMessageChunk()}}, METADATA),
        (
            {"event": "on_chat_model_stream", "data": {"chunk": AIMessageChunk(content="Hi")}},
            OUTPUT,
        ),
        ({"event": "on_chain_stream", "data": {"chunk": "Hi"}}, OUTPUT),
        ({"event": "on_chat_model_stream"}, OUTPUT),
        ({"event": "on_chat_model_end", "data": {"output": AIMessageChunk()}}, OUTPUT),
        ({"event": "on_custom_event", "data": {}}, OUTPUT),
    ],
)
def test_langchain_stream_events(event, expected):
    """`astream_events`: starts are metadata, stream events their chunk's kind, the rest output."""
    assert expected == kind_of(event)


def test_a_name_of_two_words_starting_with_on_is_no_run_event():
    """Only `on_<run>_start` names are run starts: `on_start` alone is unknown output."""
    assert OUTPUT == kind_of({"type": "on_start"})


# --------------------------------------------------------------------------------------------------
# pydantic-ai (look-alikes of pydantic_ai.messages' dataclasses)


@dataclasses.dataclass(kw_only=True)
class TextPart:
    content: str
    id: str | None = None
    part_kind: Literal["text"] = "text"


@dataclasses.dataclass(kw_only=True)
class ThinkingPart:
    content: str
    signature: str | None = None
    part_kind: Literal["thinking"] = "thinking"


@dataclasses.dataclass(kw_only=True)
class ToolCallPart:
    tool_name: str
    args: str | None = None
    part_kind: Literal["tool-call"] = "tool-call"


@dataclasses.dataclass(kw_only=True)
class TextPartDelta:
    content_delta: str
    part_delta_kind: Literal["text"] = "text"


@dataclasses.dataclass(kw_only=True)
class ThinkingPartDelta:
    content_delta: str | None = None
    signature_delta: str | None = None
    part_delta_kind: Literal["thinking"] = "thinking"


@dataclasses.dataclass(kw_only=True)
class ToolCallPartDelta:
    args_delta: str | None = None
    part_delta_kind: Literal["tool_call"] = "tool_call"


@dataclasses.dataclass(kw_only=True)
class PartStartEvent:
    index: int
    part: Any
    event_kind: Literal["part_start"] = "part_start"


@dataclasses.dataclass(kw_only=True)
class PartDeltaEvent:
    index: int
    delta: Any
    event_kind: Literal["part_delta"] = "part_delta"


@dataclasses.dataclass(kw_only=True)
class PartEndEvent:
    index: int
    part: Any
    event_kind: Literal["part_end"] = "part_end"


@dataclasses.dataclass(kw_only=True)
class FinalResultEvent:
    tool_name: str | None
    tool_call_id: str | None
    event_kind: Literal["final_result"] = "final_result"


@dataclasses.dataclass(kw_only=True)
class FunctionToolCallEvent:
    part: Any
    event_kind: Literal["function_tool_call"] = "function_tool_call"


@dataclasses.dataclass(kw_only=True)
class AgentRunResultEvent:
    result: Any
    event_kind: Literal["agent_run_result"] = "agent_run_result"


@pytest.mark.parametrize(
    "item",
    [
        PartStartEvent(index=0, part=TextPart(content="")),
        PartStartEvent(index=0, part=ThinkingPart(content="")),
        PartDeltaEvent(index=0, delta=TextPartDelta(content_delta="")),
        PartDeltaEvent(index=0, delta=ThinkingPartDelta()),
        PartEndEvent(index=0, part=TextPart(content="")),
    ],
)
def test_pydantic_ai_part_events_of_empty_text_are_metadata(item):
    """A part start, delta or end of text or thinking with nothing in it commits nothing."""
    assert METADATA == kind_of(item)


@pytest.mark.parametrize(
    "item",
    [
        PartStartEvent(index=0, part=TextPart(content="Hi")),
        PartStartEvent(index=0, part=ThinkingPart(content="", signature="sig")),
        PartStartEvent(index=0, part=ToolCallPart(tool_name="f")),
        PartDeltaEvent(index=0, delta=TextPartDelta(content_delta="Hi")),
        PartDeltaEvent(index=0, delta=ThinkingPartDelta(signature_delta="sig")),
        PartDeltaEvent(index=0, delta=ToolCallPartDelta()),
        PartEndEvent(index=0, part=TextPart(content="Hi")),
        FunctionToolCallEvent(part=ToolCallPart(tool_name="f")),
    ],
)
def test_pydantic_ai_events_with_output_commit(item):
    """Text, a signature, a tool call part or a tool call event commits."""
    assert OUTPUT == kind_of(item)


def test_pydantic_ai_final_result_is_metadata():
    """FinalResultEvent marks where the result begins; its text follows, so it is no end."""
    assert METADATA == kind_of(FinalResultEvent(tool_name=None, tool_call_id=None))


def test_pydantic_ai_agent_run_result_is_done():
    """AgentRunResultEvent is the last event of an agent run."""
    assert DONE == kind_of(AgentRunResultEvent(result="Hi"))


def test_pydantic_ai_events_as_mappings_are_read_alike():
    """A dumped pydantic-ai event (a mapping with `event_kind`) is read like the object."""
    event = {"event_kind": "part_start", "part": {"part_kind": "text", "content": ""}}
    assert METADATA == kind_of(event)


# --------------------------------------------------------------------------------------------------
# google-genai (look-alikes of google.genai.types' pydantic models, and the wire's JSON)


class FinishReason(enum.StrEnum):
    FINISH_REASON_UNSPECIFIED = "FINISH_REASON_UNSPECIFIED"
    STOP = "STOP"


class Part(pydantic.BaseModel, extra="forbid"):
    text: str | None = None
    thought: bool | None = None
    thought_signature: bytes | None = None
    function_call: dict[str, Any] | None = None
    inline_data: dict[str, Any] | None = None


class Content(pydantic.BaseModel, extra="forbid"):
    parts: list[Part] | None = None
    role: str | None = None


class Candidate(pydantic.BaseModel, extra="forbid"):
    content: Content | None = None
    finish_reason: FinishReason | None = None
    index: int | None = None


class GenerateContentResponse(pydantic.BaseModel, extra="forbid"):
    candidates: list[Candidate] | None = None
    usage_metadata: dict[str, int] | None = None
    prompt_feedback: dict[str, Any] | None = None

    @property
    def text(self) -> str | None:  # as google-genai's: a property of a name kind_of reads
        return None


def gemini(*parts: Part, finish: FinishReason | None = None) -> GenerateContentResponse:
    content = Content(parts=list(parts), role="model")
    return GenerateContentResponse(candidates=[Candidate(content=content, finish_reason=finish)])


@pytest.mark.parametrize(
    "item",
    [
        gemini(Part(text="Hi")),
        gemini(Part(function_call={"name": "f", "args": {}})),
        gemini(Part(inline_data={"mime_type": "image/png", "data": "x"})),
        gemini(Part(text="thinking", thought=True)),
        gemini(Part(text="Bye"), finish=FinishReason.STOP),
    ],
)
def test_gemini_chunks_with_output_commit(item):
    """Text, thought text, a function call or any other content in a part commits."""
    assert OUTPUT == kind_of(item)


@pytest.mark.parametrize(
    "item",
    [
        gemini(Part(text="")),
        gemini(Part(thought=True, thought_signature=b"sig")),
        gemini(),
        gemini(Part(text=""), finish=FinishReason.FINISH_REASON_UNSPECIFIED),
        GenerateContentResponse(usage_metadata={"prompt_token_count": 3}),
        GenerateContentResponse(prompt_feedback={"block_reason": "SAFETY"}),
        GenerateContentResponse(candidates=[]),
    ],
)
def test_gemini_chunks_without_output_are_metadata(item):
    """No text and no function call: usage, an empty part, a signature alone, no candidates."""
    assert METADATA == kind_of(item)


def test_gemini_finish_with_nothing_new_is_done():
    """Every candidate finished and no part carries anything: the stream is done."""
    assert DONE == kind_of(gemini(Part(text=""), finish=FinishReason.STOP))


def test_gemini_is_not_done_while_a_candidate_goes_on():
    """With several candidates, one that finished does not end the others."""
    running = Candidate(content=Content(parts=[Part(text="")]))
    finished = Candidate(content=Content(parts=[]), finish_reason=FinishReason.STOP)
    assert METADATA == kind_of(GenerateContentResponse(candidates=[finished, running]))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}, OUTPUT),
        ({"candidates": [{"content": {"parts": [{"thoughtSignature": "c2ln"}]}}]}, METADATA),
        ({"candidates": [{"content": {"parts": []}, "finishReason": "STOP"}]}, DONE),
        ({"usageMetadata": {"promptTokenCount": 3}}, METADATA),
        ({"candidates": None}, OUTPUT),
        ({"candidates": "odd"}, OUTPUT),
    ],
)
def test_gemini_wire_json(item, expected):
    """The API's own JSON (camelCase) reads like the SDK's objects; odd shapes commit."""
    assert expected == kind_of(item)


class PartWithProperty:
    """A part whose fields cannot all be listed: one is a property."""

    @property
    def text(self) -> str:
        return "Hi"


def test_a_gemini_part_that_cannot_be_listed_is_output():
    """A part whose fields come from its class is assumed to carry output."""
    item = {"candidates": [{"content": {"parts": [PartWithProperty()]}}]}
    assert OUTPUT == kind_of(item)


# --------------------------------------------------------------------------------------------------
# how each class is read


class NamedBySlot:
    __slots__ = ("type",)

    def __init__(self, name: str) -> None:
        self.type = name


class NamedByProperty:
    @property
    def type(self) -> str:
        return "ping"


class NamedByGetattr:
    def __getattr__(self, name: str) -> str:
        if name == "type":
            return "message_stop"
        raise AttributeError(name)


class NamedByGetattribute:
    def __getattribute__(self, name: str) -> Any:
        if name == "type":
            return "usage"
        return object.__getattribute__(self, name)


class Slotted:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 1


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (NamedBySlot("ping"), METADATA),
        (NamedByProperty(), METADATA),
        (NamedByGetattr(), DONE),
        (NamedByGetattribute(), METADATA),
    ],
)
def test_names_outside_the_instance_dict_are_read(item, expected):
    """Slots, properties, `__getattr__` and `__getattribute__` name items as getattr would."""
    assert expected == kind_of(item)


def test_an_object_with_no_fields_is_read_by_its_class_name():
    """A slotted object with none of the names kind_of reads goes by its class name."""
    assert OUTPUT == kind_of(Slotted())


@dataclasses.dataclass
class Usage:
    input_tokens: int
    output_tokens: int


def test_a_dataclass_without_a_name_field_is_read_by_its_class_name():
    """A dataclass that declares no name field is known by its class name."""
    assert METADATA == kind_of(Usage(1, 2))


class Loose(pydantic.BaseModel, extra="allow"):
    pass


def test_extra_fields_of_a_pydantic_model_do_not_name_it():
    """A pydantic model is named by its declared fields; an undeclared `type` is only content."""
    assert OUTPUT == kind_of(Loose(type="ping"))


class Chunk(pydantic.BaseModel):
    object: str


def test_a_model_of_a_known_shape_with_other_content_goes_by_its_class_name():
    """A model with an `object` field that names no chat chunk falls back to its class name."""
    assert OUTPUT == kind_of(Chunk(object="list"))


class PartStart:
    """A class whose name needs a look at content, with no fields of its own."""

    __slots__ = ()


def test_a_class_name_that_needs_content_reads_the_fields_it_has():
    """A class named like an event that needs a closer look is read even without fields."""
    assert OUTPUT == kind_of(PartStart())


def test_a_plain_object_named_by_its_class_reads_its_content():
    """An object whose class name needs a closer look is classified by its attributes."""
    empty = type("AIMessageChunk", (), {})()
    filled = type("AIMessageChunk", (), {})()
    filled.content = "Hi"
    assert (METADATA, OUTPUT) == (kind_of(empty), kind_of(filled))


def test_the_name_cache_stays_bounded():
    """kind_of remembers the names it met, but a stream of new names does not pile up."""
    for index in range(4100):
        assert OUTPUT == kind_of({"type": f"novel_{index}"})

    assert len(_engine._NAME_VERDICTS) < 4096


def test_an_unhashable_name_is_output():
    """An object whose name cannot be looked up is output, like any unreadable item."""
    assert OUTPUT == kind_of(types.SimpleNamespace(type=["ping"]))


LOOK_ALIKES = st.builds(
    types.SimpleNamespace,
    type=st.none() | st.text(max_size=30) | st.sampled_from(["on_x_stream", "part_start"]),
    content=st.none() | st.text(max_size=5) | st.lists(st.integers(), max_size=2),
    data=st.none() | st.dictionaries(st.sampled_from(["chunk"]), st.text(max_size=5)),
    part=st.none() | st.builds(types.SimpleNamespace, part_kind=st.text(max_size=8)),
    candidates=st.none() | st.lists(st.none() | st.integers(), max_size=2),
)


@given(LOOK_ALIKES)
def test_kind_of_never_raises_on_look_alikes(item):
    """Names that ask for a closer look, with any content, still give an ItemKind."""
    assert isinstance(kind_of(item), ItemKind)


# --------------------------------------------------------------------------------------------------
# ends: the test a committed stream asks of each item


class Done:
    """A class whose name alone says every instance ends a stream."""

    __slots__ = ()


def openai_chunk(delta: dict[str, Any], usage: dict[str, int] | None = None) -> Any:
    return ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "created": 0,
            "model": "gpt",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            "usage": usage,
        }
    )


# One item for each way a class is read: text, mappings, exceptions, names by class, getattr
# or slot, dataclasses, pydantic models by shape, and objects read by their attributes.
READINGS = [
    "done",
    {"type": "message_stop"},
    {"type": "content_block_delta", "delta": {"text": "Hi"}},
    ValueError("done"),
    Done(),
    NamedByGetattr(),
    NamedBySlot("ping"),
    Usage(1, 2),
    PartStart(),
    openai_chunk({"content": "Hi"}),
    openai_chunk({}, usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
    gemini(Part(text=""), finish=FinishReason.STOP),
    gemini(Part(text="Hi")),
    types.SimpleNamespace(type=["ping"]),
]


@pytest.mark.parametrize("item", READINGS)
def test_ends_is_kind_of_done(item):
    """`ends(item)` answers what `kind_of(item) is DONE` answers, for every way of reading."""
    assert (kind_of(item) is DONE) == _engine.ends(item)


@given(LOOK_ALIKES)
def test_ends_is_kind_of_done_on_look_alikes(item):
    """On look-alikes with any content, `ends` and `kind_of` agree about the end."""
    assert (kind_of(item) is DONE) == _engine.ends(item)


def test_ends_reads_nothing_of_an_openai_chat_chunk():
    """A chat chunk's class names no end and its shape never answers DONE: no field is read."""
    assert _engine._never is _engine._plan_of(ChatCompletionChunk).ends


# --------------------------------------------------------------------------------------------------
# SETTLED: the classes whose instances a call returns without reading them


class ErrorNotice:
    """A class whose name alone says every instance is an error item."""

    __slots__ = ()


class Ready:
    """An awaitable that is output by its name: awaited before anything reads it."""

    def __await__(self) -> Any:
        return iter(())


@pytest.mark.parametrize("item", [*READINGS, {"type": "error"}, ErrorNotice(), Ready()])
def test_a_settled_class_never_makes_an_error_item_or_an_awaitable(item):
    """Once `kind_of` has read a class, it is settled only if no instance is an error item."""
    kind = kind_of(item)

    assert not (id(type(item)) in _engine.SETTLED and (kind is ERROR or inspect.isawaitable(item)))


@given(LOOK_ALIKES)
def test_a_settled_look_alike_is_never_an_error_item(item):
    """On look-alikes with any content (a `type` of "error" among them), settled means no error."""
    kind = kind_of(item)

    assert not (id(type(item)) in _engine.SETTLED and kind is ERROR)


def test_the_sdk_responses_a_call_returns_are_settled():
    """A chat completion and a chat chunk carry no name: a call returning one is not read."""
    kind_of(openai_chunk({"content": "Hi"}))
    kind_of(openai.types.chat.ChatCompletion.model_construct(object="chat.completion"))

    assert {id(ChatCompletionChunk), id(openai.types.chat.ChatCompletion)} <= _engine.SETTLED


@pytest.mark.parametrize("item", [{"type": "message"}, ValueError("x"), ErrorNotice(), Ready()])
def test_mappings_errors_and_awaitables_are_never_settled(item):
    """A mapping may name an error; an exception is one; an awaitable is awaited first."""
    kind_of(item)

    assert id(type(item)) not in _engine.SETTLED


def test_a_class_that_is_gone_leaves_the_settled_classes():
    """A class made on the fly takes its entry with it: its id may be reused by another class."""
    made = type("Made", (), {"__slots__": ()})
    kind_of(made())
    key, settled_before = id(made), id(made) in _engine.SETTLED

    del made
    gc.collect()

    assert (True, False) == (settled_before, key in _engine.SETTLED)
