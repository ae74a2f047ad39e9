"""The OpenAI Responses API: ``POST /v1/responses``, bearer tokens only.

A reply is a ``response`` object; a stream is named SSE events numbered in sequence, which
follow what ``openai``'s Responses stream helpers parse: a loopback server that the real SDK
misread would test nothing. Its errors are OpenAI's.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ._record import Call, Dialect, sse_event
from .openai_chat import error_body

__all__ = ["DIALECT"]


def _usage(reply: Call) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": reply.chunks,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.input_tokens + reply.chunks,
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message(message_id: str, text: str | None) -> dict[str, Any]:
    """An output message item; without text it is the item as a stream first announces it."""
    return {
        "id": message_id,
        "type": "message",
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": [] if text is None else [_output_text(text)],
    }


def _response(
    reply: Call,
    *,
    response_id: str | None = None,
    message_id: str | None = None,
    created_at: int | None = None,
    completed: bool = True,
) -> dict[str, Any]:
    """A ``response`` object: complete with output and usage, or as a stream opens it."""
    return {
        "id": response_id or f"resp_{secrets.token_hex(12)}",
        "object": "response",
        "created_at": int(time.time()) if created_at is None else created_at,
        "status": "completed" if completed else "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": reply.model,
        "output": [_message(message_id or f"msg_{secrets.token_hex(12)}", "".join(reply.texts))]
        if completed
        else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _usage(reply) if completed else None,
        "user": None,
        "metadata": {},
    }


@dataclass(slots=True)
class _Stream:
    """Response stream events as the Responses API sends them, numbered in sequence.

    The stream opens with ``response.created`` and ``response.in_progress`` (metadata), announces
    the message and its text part, sends ``response.output_text.delta`` events, closes the part
    and the item, and ends with ``response.completed``, which carries the usage. The API sends
    no ``[DONE]`` here.
    """

    reply: Call
    response_id: str = field(default_factory=lambda: f"resp_{secrets.token_hex(12)}")
    message_id: str = field(default_factory=lambda: f"msg_{secrets.token_hex(12)}")
    created_at: int = field(default_factory=lambda: int(time.time()))
    sequence_number: int = 0

    def _event(self, kind: str, **fields: Any) -> str:
        payload = {"type": kind, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        return sse_event(payload)

    def _response(self, *, completed: bool) -> dict[str, Any]:
        return _response(
            self.reply,
            response_id=self.response_id,
            message_id=self.message_id,
            created_at=self.created_at,
            completed=completed,
        )

    def _place(self) -> dict[str, Any]:
        return {"item_id": self.message_id, "output_index": 0, "content_index": 0}

    def head(self) -> list[str]:
        """``response.created`` and ``response.in_progress``: metadata, no output yet."""
        opening = self._response(completed=False)
        return [
            self._event("response.created", response=opening),
            self._event("response.in_progress", response=opening),
        ]

    def content_head(self) -> list[str]:
        """The message item and its text part, announced empty."""
        return [
            self._event(
                "response.output_item.added", output_index=0, item=_message(self.message_id, None)
            ),
            self._event("response.content_part.added", **self._place(), part=_output_text("")),
        ]

    def delta(self, text: str) -> str:
        """One ``response.output_text.delta``."""
        return self._event("response.output_text.delta", **self._place(), delta=text, logprobs=[])

    def tail(self) -> list[str]:
        """The text, part and item closed, then ``response.completed`` with the usage."""
        text = "".join(self.reply.texts)
        return [
            self._event("response.output_text.done", **self._place(), text=text, logprobs=[]),
            self._event("response.content_part.done", **self._place(), part=_output_text(text)),
            self._event(
                "response.output_item.done", output_index=0, item=_message(self.message_id, text)
            ),
            self._event("response.completed", response=self._response(completed=True)),
        ]

    def auth_error(self) -> str:
        """An ``error`` event, which the SDK hands over as a `ResponseErrorEvent`: no raise."""
        return self._event("error", code="invalid_api_key", message="token expired", param=None)


DIALECT = Dialect(
    api="responses",
    paths=("/v1/responses",),
    counter="responses_requests",
    inputs="input",
    key_header=None,
    error=error_body,
    reply=_response,
    stream=_Stream,
)
