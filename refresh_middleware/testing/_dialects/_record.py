"""What the loopback server knows of one provider API: the `Dialect` record and its parts.

The server's one endpoint does what every API shares (read the body, check the credential,
count, read the call, inject stream errors, send the events); a dialect says only where it
differs: its routes, the header its API key comes in, its error bodies, how it frames a reply
and a stream. Each dialect module imports this one and no other (the Responses API takes
OpenAI's error body from the chat completions module: one API, one error format).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = ["Call", "Dialect", "Framing", "NotFoundError", "Target", "sse_data", "sse_event"]


@dataclass(frozen=True, slots=True)
class Call:
    """What a request asked for, after validation: the reply a dialect frames."""

    model: str
    stream: bool
    include_usage: bool
    chunks: int
    input_tokens: int

    @property
    def texts(self) -> list[str]:
        """The reply, chunk by chunk: deterministic so tests can check exactly what arrived."""
        return [f"chunk-{index} " for index in range(self.chunks)]


class Framing(Protocol):
    """How one API frames the parts of a streamed reply as SSE events."""

    def head(self) -> list[str]:
        """Events before anything a client would count as output."""
        ...

    def content_head(self) -> list[str]:
        """Events that open the content, sent once before the first text."""
        ...

    def delta(self, text: str) -> str:
        """Frame one chunk of text as an event."""
        ...

    def tail(self) -> list[str]:
        """Events after the last text, up to the end of the stream."""
        ...

    def auth_error(self) -> str:
        """Frame an in-stream error that says the credentials expired."""
        ...


class Target(NamedTuple):
    """The model and the streaming that an API names in the URL rather than in the body."""

    model: str
    stream: bool


class NotFoundError(Exception):
    """The path names nothing the API has; answered with status 404 in the dialect's words."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """One provider API as the loopback server answers it."""

    api: str
    """The name `LoopbackLLMServer.inject_stream_error` takes for this API."""
    paths: tuple[str, ...]
    """The routes it answers (``POST``), in Starlette's path syntax."""
    counter: str
    """The `LoopbackStats` field that counts its requests."""
    inputs: str
    """The body field whose items count as input messages."""
    key_header: str | None
    """The header an API key comes in, accepted besides an ``Authorization: Bearer`` token."""
    error: Callable[[int, str], dict[str, Any]]
    """The error body for an HTTP status (400, 401, 404) and a message."""
    reply: Callable[[Call], dict[str, Any]]
    """The JSON body of a reply that is not streamed."""
    stream: Callable[[Call], Framing]
    """The framing of one streamed reply (it may number its events, so one per stream)."""
    target: Callable[[Mapping[str, Any]], Target] | None = None
    """Reads the model and the streaming from the path parameters, for an API that names them
    there; raises `NotFoundError` for a path that names neither."""


def sse_data(payload: object) -> str:
    """One SSE event with a data line only, as OpenAI chat completions and Gemini send them."""
    return f"data: {json.dumps(payload)}\n\n"


def sse_event(payload: dict[str, Any]) -> str:
    """One SSE event named after the payload's ``type``, as Anthropic and Responses send them."""
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n"
