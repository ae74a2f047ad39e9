"""LangChain: message chunks, generation chunks and the events of `astream_events`."""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import (
    METADATA,
    OUTPUT,
    Dialect,
    Fields,
    Inside,
    ItemKind,
    Verdict,
    carries,
)

# Fields of an `AIMessageChunk` that carry output. `additional_kwargs` holds what older
# integrations put there (a function call, reasoning text); usage and response metadata are none.
_MESSAGE_OUTPUT: Final = (
    "content",
    "tool_call_chunks",
    "tool_calls",
    "invalid_tool_calls",
    "additional_kwargs",
)


def _message_chunk_kind(fields: Fields, _inside: Inside) -> ItemKind:
    """An `AIMessageChunk`: OUTPUT with content or a tool call, METADATA when empty.

    Empty chunks are the role-only first one, usage-only ones and the closing one.
    """
    return OUTPUT if carries(fields, _MESSAGE_OUTPUT) else METADATA


def _generation_chunk_kind(fields: Fields, inside: Inside) -> ItemKind:
    """A `ChatGenerationChunk` (what a chat model's `_astream` yields): its message's kind."""
    return inside.kind(fields.get("message"))


def _event_chunk_kind(fields: Fields, inside: Inside) -> ItemKind:
    """An `on_*_stream` event of `astream_events`: the kind of the chunk it carries."""
    return inside.kind(inside(fields.get("data")).get("chunk"))


def _run_event(words: list[str]) -> Verdict | None:
    """`astream_events` names: `on_<run>_start`, `on_<run>_stream`."""
    if words[0] == "on" and len(words) > 2:
        # A start announces a run and carries only its input; a stream event carries one chunk
        # of the run's output.
        if words[-1] == "start":
            return METADATA
        if words[-1] == "stream":
            return _event_chunk_kind
    return None


DIALECT: Final = Dialect(
    name="LangChain",
    look_inside={
        "ai_message_chunk": _message_chunk_kind,
        "chat_generation_chunk": _generation_chunk_kind,
    },
    name_rule=_run_event,
    reads=frozenset({"message", "data", "chunk", *_MESSAGE_OUTPUT}),
)
