"""The Anthropic Messages API: ``POST /v1/messages``, an ``x-api-key`` or a bearer token.

A stream is named SSE events: ``message_start`` and a ``ping`` (metadata), a text block opened,
one ``content_block_delta`` per text, the block closed, ``message_delta`` with the usage and
``message_stop``. An error mid-stream is an ``event: error``, which the SDK raises as
``APIStatusError`` with status 200 and ``authentication_error`` in its body.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from ._record import Call, Dialect, sse_event

__all__ = ["DIALECT"]


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = "authentication_error" if status == 401 else "invalid_request_error"
    return {"type": "error", "error": {"type": kind, "message": message}}


def _message(call: Call, message_id: str, *, text: str | None) -> dict[str, Any]:
    """Build an Anthropic ``message`` object; without text it is the opening of a stream."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [] if text is None else [{"type": "text", "text": text}],
        "stop_reason": None if text is None else "end_turn",
        "stop_sequence": None,
        # A stream's opening counts one output token, as the real API reports it.
        "usage": {
            "input_tokens": call.input_tokens,
            "output_tokens": 1 if text is None else call.chunks,
        },
    }


def _reply(call: Call) -> dict[str, Any]:
    return _message(call, f"msg_{secrets.token_hex(12)}", text="".join(call.texts))


@dataclass(slots=True)
class _Stream:
    """Message stream events as the Anthropic API sends them."""

    call: Call
    message_id: str = field(default_factory=lambda: f"msg_{secrets.token_hex(12)}")

    def head(self) -> list[str]:
        message = _message(self.call, self.message_id, text=None)
        return [
            sse_event({"type": "message_start", "message": message}),
            sse_event({"type": "ping"}),
        ]

    def content_head(self) -> list[str]:
        block = {"type": "text", "text": ""}
        return [sse_event({"type": "content_block_start", "index": 0, "content_block": block})]

    def delta(self, text: str) -> str:
        delta = {"type": "text_delta", "text": text}
        return sse_event({"type": "content_block_delta", "index": 0, "delta": delta})

    def tail(self) -> list[str]:
        return [
            sse_event({"type": "content_block_stop", "index": 0}),
            sse_event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": self.call.chunks},
                }
            ),
            sse_event({"type": "message_stop"}),
        ]

    def auth_error(self) -> str:
        return sse_event(_error_body(401, "token expired"))


DIALECT = Dialect(
    api="anthropic",
    paths=("/v1/messages",),
    counter="messages_requests",
    inputs="messages",
    key_header="x-api-key",
    error=_error_body,
    reply=_reply,
    stream=_Stream,
)
