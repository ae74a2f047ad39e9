"""OpenAI chat completions: the chunks of `create(stream=True)` and the events of `stream()`.

Chunks carry no name (their `object` is `chat.completion.chunk`): a chunk is output once a
choice's delta carries something, and the role-only first chunk and the usage-only last one
are not. The same chunk shape is served by most OpenAI-compatible servers (vLLM, DeepSeek,
OpenRouter, Azure, LiteLLM's proxy).
"""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import (
    METADATA,
    OUTPUT,
    SEQUENCES,
    Dialect,
    Fields,
    Inside,
    ItemKind,
    ShapeKind,
    carries,
)

_CHUNK: Final = "chat.completion.chunk"
# Fields of a chunk's delta that carry output; a delta with none of them (the first chunk names
# only the role; the last may carry only usage) commits nothing. Reasoning arrives as
# `reasoning_content` (DeepSeek, vLLM) or `reasoning` (OpenRouter).
_DELTA_OUTPUT: Final = (
    "content",
    "tool_calls",
    "refusal",
    "function_call",
    "audio",
    "reasoning_content",
    "reasoning",
)


def _chunk_kind(fields: Fields, inside: Inside) -> ShapeKind | None:
    """A chat chunk: OUTPUT when a choice's delta carries output, METADATA otherwise."""
    if fields.get("object") != _CHUNK:
        return None
    choices = fields.get("choices")
    for choice in choices if type(choices) in SEQUENCES else ():
        delta = inside(choice).get("delta")
        if delta is not None and carries(inside(delta), _DELTA_OUTPUT):
            return OUTPUT
    return METADATA


def _chunk_event_kind(fields: Fields, inside: Inside) -> ItemKind:
    """`stream()`'s `ChunkEvent`: the kind of the chunk it carries."""
    return inside.kind(fields.get("chunk"))


def _text_delta_kind(fields: Fields, _inside: Inside) -> ItemKind:
    """`stream()`'s `ContentDeltaEvent` and `RefusalDeltaEvent`: METADATA while the text is empty.

    The SDK sends one with `delta=""` for the role-only first chunk, before any text.
    """
    return METADATA if fields.get("delta") == "" else OUTPUT


DIALECT: Final = Dialect(
    name="OpenAI chat completions",
    shapes={"object": _chunk_kind},
    never_done=frozenset({"object"}),  # a chunk is output or metadata; the stream just ends
    look_inside={
        "chunk": _chunk_event_kind,
        "content_delta": _text_delta_kind,
        "refusal_delta": _text_delta_kind,
    },
    reads=frozenset({"choices", "delta", "chunk", *_DELTA_OUTPUT}),
)
