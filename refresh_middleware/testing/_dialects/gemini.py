"""The Gemini API: ``POST /v1beta/models/{model}:(stream)generateContent``, also on ``/v1``.

An API key comes as ``x-goog-api-key``, an OAuth access token as a bearer token. A reply is a
``GenerateContentResponse``; a stream (``?alt=sse``) is ``data:`` chunks that follow what
``google-genai``'s SSE reader parses. An error mid-stream is a Google error body, which the SDK
raises as ``errors.ClientError`` (code 401).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

from ._record import Call, Dialect, NotFoundError, Target, sse_data

__all__ = ["DIALECT"]


# The status word Google's APIs put beside each HTTP status the server answers with.
_STATUS_WORDS: Final = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND"}

# The model methods it answers, and whether each streams.
_METHODS: Final = {"generateContent": False, "streamGenerateContent": True}


def _error_body(status: int, message: str) -> dict[str, Any]:
    """A Google API error body, as ``google-genai`` reads it into ``errors.APIError``."""
    return {"error": {"code": status, "message": message, "status": _STATUS_WORDS[status]}}


def _target(path: Mapping[str, Any]) -> Target:
    """Gemini names the model and the streaming in the URL (``models/m:streamGenerateContent``)."""
    model, _, method = cast("str", path["call"]).partition(":")
    if method not in _METHODS:
        raise NotFoundError(f"unknown method {method!r}")
    return Target(model, stream=_METHODS[method])


def _usage(reply: Call) -> dict[str, int]:
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


def _response(reply: Call, *, response_id: str | None = None) -> dict[str, Any]:
    """A complete ``GenerateContentResponse``: the whole text, the finish reason, the usage."""
    return {
        "candidates": [_candidate("".join(reply.texts), finished=True)],
        "usageMetadata": _usage(reply),
        "modelVersion": reply.model,
        "responseId": response_id or secrets.token_hex(12),
    }


@dataclass(slots=True)
class _Stream:
    """``streamGenerateContent?alt=sse`` chunks: one per text, then one that finishes.

    Gemini sends no opening event: the first chunk already carries text. The last chunk carries
    the finish reason and the usage with empty text, as the API often sends it.
    """

    reply: Call
    response_id: str = field(default_factory=lambda: secrets.token_hex(12))

    def _chunk(self, text: str, *, finished: bool = False) -> str:
        chunk: dict[str, Any] = {
            "candidates": [_candidate(text, finished=finished)],
            "modelVersion": self.reply.model,
            "responseId": self.response_id,
        }
        if finished:
            chunk["usageMetadata"] = _usage(self.reply)
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
        return sse_data(_error_body(401, "token expired"))


DIALECT = Dialect(
    api="gemini",
    # google-genai calls /v1beta or /v1, as its api_version says; on Vertex AI (vertexai=True),
    # the model under a project and a location, /v1beta1 by default.
    paths=(
        "/v1beta/models/{call}",
        "/v1/models/{call}",
        *(
            f"/{version}/projects/{{project}}/locations/{{location}}/publishers/google/models/{{call}}"
            for version in ("v1beta1", "v1")
        ),
    ),
    counter="gemini_requests",
    inputs="contents",
    key_header="x-goog-api-key",
    error=_error_body,
    reply=_response,
    stream=_Stream,
    target=_target,
)
