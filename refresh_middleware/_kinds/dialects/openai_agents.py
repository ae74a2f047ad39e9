"""The OpenAI Agents SDK: what a preset wraps on its models.

Its stream items are the Responses API's and the chat dialect's; this module says which of
a model's methods send a request, so `refresh_on_401(model, refresh=...)` needs no names.
"""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import Dialect, Preset

DIALECT: Final = Dialect(
    name="OpenAI Agents SDK",
    # Every model (`OpenAIResponsesModel`, `OpenAIChatCompletionsModel`, ...) implements the
    # `Model` interface: `get_response` and `stream_response`, which the runner calls.
    presets=(
        Preset(
            module="agents",
            qualname="Model",
            calls=("get_response",),
            streams=("stream_response",),
        ),
    ),
)
