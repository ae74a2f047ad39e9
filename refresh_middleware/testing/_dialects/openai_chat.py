"""OpenAI chat completions: ``POST /v1/chat/completions``, bearer tokens only.

A stream is ``chat.completion.chunk`` events as ``data:`` lines: a role chunk, one chunk per
text, a finishing chunk, the usage chunk when ``stream_options.include_usage`` asks for it,
and ``data: [DONE]``. An error mid-stream is an OpenAI error body, which the SDK raises as
``APIError`` without a status.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ._record import Call, Dialect, sse_data

__all__ = ["DIALECT", "error_body"]


def error_body(status: int, message: str) -> dict[str, Any]:
    """An OpenAI error body; a 401 carries ``invalid_api_key``, as the API's does."""
    code = "invalid_api_key" if status == 401 else None
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }


def _usage(call: Call) -> dict[str, int]:
    return {
        "prompt_tokens": call.input_tokens,
        "completion_tokens": call.chunks,
        "total_tokens": call.input_tokens + call.chunks,
    }


def _reply(call: Call) -> dict[str, Any]:
    """A ``chat.completion`` with the whole text and the usage."""
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(call.texts)},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(call),
    }


@dataclass(slots=True)
class _Stream:
    """``chat.completion.chunk`` events as the OpenAI API sends them."""

    call: Call
    completion_id: str = field(default_factory=lambda: f"chatcmpl-{secrets.token_hex(12)}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None, *, choices: bool = True
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.call.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
            if choices
            else [],
        }
        if self.call.include_usage:
            # The API sends ``usage: null`` on every chunk but the last when usage is asked for.
            chunk["usage"] = None
        return chunk

    def head(self) -> list[str]:
        return [sse_data(self._chunk({"role": "assistant", "content": ""}))]

    def content_head(self) -> list[str]:
        return []

    def delta(self, text: str) -> str:
        return sse_data(self._chunk({"content": text}))

    def tail(self) -> list[str]:
        events = [sse_data(self._chunk({}, "stop"))]
        if self.call.include_usage:
            final = self._chunk({}, choices=False)
            final["usage"] = _usage(self.call)
            events.append(sse_data(final))
        return [*events, "data: [DONE]\n\n"]

    def auth_error(self) -> str:
        return sse_data(error_body(401, "token expired"))


DIALECT = Dialect(
    api="openai",
    paths=("/v1/chat/completions",),
    counter="chat_completions_requests",
    inputs="messages",
    key_header=None,
    error=error_body,
    reply=_reply,
    stream=_Stream,
)
