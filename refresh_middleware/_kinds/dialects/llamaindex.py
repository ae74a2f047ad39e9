"""LlamaIndex: the `ChatResponse`s of `stream_chat` / `astream_chat`.

Each streamed `ChatResponse` holds the new text in `delta` and the whole message so far in
`message` (text and thinking blocks, tool calls in `additional_kwargs`). The first one, made
from the provider's role-only chunk, has `delta=""` and an empty message: nothing to show yet.
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
    Preset,
    carries,
)

# What a message carries besides its blocks: `content` (a field before LlamaIndex 0.12, a
# property over the text blocks since) and `additional_kwargs` (tool calls).
_MESSAGE_OUTPUT: Final = ("content", "additional_kwargs")


def _chat_response_kind(fields: Fields, inside: Inside) -> ItemKind:
    """A streamed `ChatResponse`: METADATA while neither its delta nor its message holds a thing.

    Only an empty-text `delta` counts as a stream's: other libraries have a `ChatResponse` too
    (Ollama's, with no `delta`), and theirs must commit as unknown items do.
    """
    if fields.get("delta") != "" or inside(fields.get("additional_kwargs")).get("thinking_delta"):
        return OUTPUT
    message = inside(fields.get("message"))
    if carries(message, _MESSAGE_OUTPUT):
        return OUTPUT
    blocks = message.get("blocks")
    for block in blocks if type(blocks) in SEQUENCES else ():
        block_fields = inside(block)
        if block_fields.get("block_type") != "text" or block_fields.get("text"):
            return OUTPUT  # text, or anything else: thinking, a tool call, an image
    return METADATA


# What an LLM's helpers end in: `predict`, `stream`, the `*_with_tools` methods and the rest
# call the model's own `chat` / `complete` methods. Run with the proxy as `self`, they call
# the proxy's.
_HANDS_OUT: Final = (
    "predict",
    "apredict",
    "stream",
    "astream",
    "chat_with_tools",
    "achat_with_tools",
    "stream_chat_with_tools",
    "astream_chat_with_tools",
    "predict_and_call",
    "apredict_and_call",
)

DIALECT: Final = Dialect(
    name="LlamaIndex",
    look_inside={"chat_response": _chat_response_kind},
    reads=frozenset(
        {"delta", "additional_kwargs", "message", "blocks", "block_type", "text", "content"}
    ),
    presets=(
        Preset(
            module="llama_index.core",
            qualname="LLM",
            calls=("chat", "achat", "complete", "acomplete"),
            streams=("stream_chat", "astream_chat", "stream_complete", "astream_complete"),
            hands_out=_HANDS_OUT,
        ),
    ),
)
