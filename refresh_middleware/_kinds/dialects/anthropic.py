"""Anthropic's Messages API stream events (`RawMessageStartEvent`, ...), as SDK types or JSON.

Its errors need no dialect: a mid-stream error event becomes an `APIStatusError` whose body
names an `authentication_error`, which the classifier reads as it reads any error body.
"""

from __future__ import annotations

from typing import Final

from refresh_middleware._kinds._dialect import Dialect

DIALECT: Final = Dialect(
    name="Anthropic",
    done=frozenset({"message_stop"}),
    metadata=frozenset({"message_start", "message_delta", "content_block_stop"}),
)
