"""The openai SDK's clients (`OpenAI`, `AsyncOpenAI`, the Azure ones): what a preset wraps.

Its stream items are the chat and Responses dialects'; this module says which of the
client's doors lead to a request, so `refresh_on_401(client, refresh=...)` needs no names.
"""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import Dialect, Preset

# Resources whose requests the preset intercepts; each hands out raw-response views of itself.
_RESOURCES: Final = ("chat.completions", "responses", "completions", "embeddings")
_VIEWS: Final = ("with_raw_response", "with_streaming_response")

_CALLS: Final = ("embeddings.create", "chat.completions.parse", "responses.parse")
_STREAMS: Final = (
    "chat.completions.create",  # a call unless stream=True
    "chat.completions.stream",
    "responses.create",
    "responses.stream",
    "completions.create",
)
_HANDS_OUT: Final = (*_VIEWS, *(f"{resource}.{view}" for resource in _RESOURCES for view in _VIEWS))
# Stream helpers that read the stream themselves: run on the gated view, they read through it.
_HELPERS: Final = {
    name: name for name in ("until_done", "get_final_response", "get_final_completion")
}

DIALECT: Final = Dialect(
    name="OpenAI SDK",
    presets=tuple(
        Preset(
            module="openai",
            qualname=client,
            calls=_CALLS,
            streams=_STREAMS,
            hands_out=_HANDS_OUT,
            derives=("with_options", "copy"),
            helpers=_HELPERS,
            # A raw response's `parse()` gives the stream of a streaming request (the Agents
            # SDK streams the Responses API that way): it is read through the gate.
            parses=("parse",),
        )
        for client in ("OpenAI", "AsyncOpenAI")
    ),
)
