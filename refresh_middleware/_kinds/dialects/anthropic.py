"""Anthropic's Messages API stream events (`RawMessageStartEvent`, ...), as SDK types or JSON.

Its errors need no dialect: a mid-stream error event becomes an `APIStatusError` whose body
names an `authentication_error`, which the classifier reads as it reads any error body. The
preset of its clients (`Anthropic`, `AsyncAnthropic`) names the doors that lead to a request.
"""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import Dialect, Preset

_VIEWS: Final = ("with_raw_response", "with_streaming_response")
_RESOURCES: Final = ("messages", "beta.messages", "completions")

DIALECT: Final = Dialect(
    name="Anthropic",
    done=frozenset({"message_stop"}),
    metadata=frozenset({"message_start", "message_delta", "content_block_stop"}),
    presets=tuple(
        Preset(
            module="anthropic",
            qualname=client,
            calls=("messages.count_tokens", "beta.messages.count_tokens"),
            streams=(
                "messages.create",  # a call unless stream=True
                "messages.stream",
                "beta.messages.create",
                "beta.messages.stream",
                "completions.create",
            ),
            hands_out=(*_VIEWS, *(f"{res}.{view}" for res in _RESOURCES for view in _VIEWS)),
            derives=("with_options", "copy"),
            # The helpers of `messages.stream()`'s stream read it themselves: run on the gated
            # view they read through the gate. `text_stream` is made by `__stream_text__`.
            helpers={
                "text_stream": "__stream_text__",
                "until_done": "until_done",
                "get_final_message": "get_final_message",
                "get_final_text": "get_final_text",
            },
            # A raw response's `parse()` gives the stream of a streaming request
            # (`with_streaming_response`, `with_raw_response`): it is read through the gate.
            parses=("parse",),
        )
        for client in ("Anthropic", "AsyncAnthropic")
    ),
)
