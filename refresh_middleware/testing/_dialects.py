"""The loopback server's newer dialects: the OpenAI Responses API and the Gemini API.

Each dialect frames one deterministic reply (a `Reply`: model, chunk texts, token counts) the
way its API does, as a JSON body and as the SSE events of a stream, including the in-stream
error that says the credentials expired. Only the framing lives here; the server's endpoints
check tokens, count requests and inject the errors. The framings follow what the SDKs parse
(`openai`'s Responses stream helpers, `google-genai`'s SSE reader), since a loopback server that
the real SDKs misread would test nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "GeminiStream",
    "Reply",
    "ResponsesStream",
    "gemini_error",
    "gemini_response",
    "input_count",
    "responses_response",
    "sse_data",
    "sse_event",
]


class Reply(Protocol):
    """What a dialect needs to know about the reply it frames."""

    @property
    def model(self) -> str: ...
    @property
    def chunks(self) -> int: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def texts(self) -> list[str]: ...


def sse_data(payload: object) -> str:
    """One SSE event with a data line only, as OpenAI chat completions and Gemini send them."""
    return f"data: {json.dumps(payload)}\n\n"


def sse_event(payload: dict[str, Any]) -> str:
    """One SSE event named after the payload's ``type``, as Anthropic and Responses send them."""
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n"


def input_count(inputs: object) -> int:
    """The number of input messages: a list counts its items, a bare string prompt is one."""
    if isinstance(inputs, list):
        return len(inputs)  # pyright: ignore[reportUnknownArgumentType]
    return 1 if isinstance(inputs, str) else 0


# --------------------------------------------------------------------------------------------------
# OpenAI Responses API


def _responses_usage(reply: Reply) -> dict[str, Any]:
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


def responses_response(
    reply: Reply,
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
        "usage": _responses_usage(reply) if completed else None,
        "user": None,
        "metadata": {},
    }


@dataclass(slots=True)
class ResponsesStream:
    """Response stream events as the Responses API sends them, numbered in sequence.

    The stream opens with ``response.created`` and ``response.in_progress`` (metadata), announces
    the message and its text part, sends ``response.output_text.delta`` events, closes the part
    and the item, and ends with ``response.completed``, which carries the usage. The API sends
    no ``[DONE]`` here.
    """

    reply: Reply
    response_id: str = field(default_factory=lambda: f"resp_{secrets.token_hex(12)}")
    message_id: str = field(default_factory=lambda: f"msg_{secrets.token_hex(12)}")
    created_at: int = field(default_factory=lambda: int(time.time()))
    sequence_number: int = 0

    def _event(self, kind: str, **fields: Any) -> str:
        payload = {"type": kind, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        return sse_event(payload)

    def _response(self, *, completed: bool) -> dict[str, Any]:
        return responses_response(
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


# --------------------------------------------------------------------------------------------------
# Gemini API


def gemini_error(code: int, message: str, status: str) -> dict[str, Any]:
    """A Google API error body, as ``google-genai`` reads it into ``errors.APIError``."""
    return {"error": {"code": code, "message": message, "status": status}}


def _gemini_usage(reply: Reply) -> dict[str, int]:
    return {
        "promptTokenCount": reply.input_tokens,
        "candidatesTokenCount": reply.chunks,
        "totalTokenCount": reply.input_tokens + reply.chunks,
    }


def _candidate(text: str, *, finished: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0,
    }
    if finished:
        candidate["finishReason"] = "STOP"
    return candidate


def gemini_response(reply: Reply, *, response_id: str | None = None) -> dict[str, Any]:
    """A complete ``GenerateContentResponse``: the whole text, the finish reason, the usage."""
    return {
        "candidates": [_candidate("".join(reply.texts), finished=True)],
        "usageMetadata": _gemini_usage(reply),
        "modelVersion": reply.model,
        "responseId": response_id or secrets.token_hex(12),
    }


@dataclass(slots=True)
class GeminiStream:
    """``streamGenerateContent?alt=sse`` chunks: one per text, then one that finishes.

    Gemini sends no opening event: the first chunk already carries text. The last chunk carries
    the finish reason and the usage with empty text, as the API often sends it.
    """

    reply: Reply
    response_id: str = field(default_factory=lambda: secrets.token_hex(12))

    def _chunk(self, text: str, *, finished: bool = False) -> str:
        chunk: dict[str, Any] = {
            "candidates": [_candidate(text, finished=finished)],
            "modelVersion": self.reply.model,
            "responseId": self.response_id,
        }
        if finished:
            chunk["usageMetadata"] = _gemini_usage(self.reply)
        return sse_data(chunk)

    def head(self) -> list[str]:
        """Nothing: a Gemini stream starts with text."""
        return []

    def content_head(self) -> list[str]:
        """Nothing, as `head`."""
        return []

    def delta(self, text: str) -> str:
        """One chunk with one text part."""
        return self._chunk(text)

    def tail(self) -> list[str]:
        """The finishing chunk, with the usage."""
        return [self._chunk("", finished=True)]

    def auth_error(self) -> str:
        """An error chunk; ``google-genai`` raises it as ``errors.ClientError`` (code 401)."""
        return sse_data(gemini_error(401, "token expired", "UNAUTHENTICATED"))
