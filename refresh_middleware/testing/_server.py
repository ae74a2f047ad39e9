"""A loopback LLM server that issues expiring tokens and answers like OpenAI, Anthropic, Gemini.

Credential refresh can only be tested honestly against something that really expires
credentials and really speaks the providers' wire formats: fakes inside the client miss the
SDKs' own error mapping (a 401 becomes ``AuthenticationError``, an SSE ``event: error`` becomes
``APIStatusError`` with status 200). This server runs on ``127.0.0.1`` with a port the OS
picks, under trio (``open_loopback_server``) or in a background thread for sync and asyncio
code (``run_loopback_server_in_thread``), and lets tests expire, revoke and sabotage
credentials on demand. It speaks OpenAI chat completions, the OpenAI Responses API, the
Anthropic Messages API and the Gemini API, each declared in a module of `_dialects`; one
endpoint here does what they share.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import secrets
import threading
import time
from collections import Counter, deque
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Final, Literal, TypedDict, Unpack, cast
from urllib.parse import parse_qsl

import trio
from hypercorn.config import Config
from hypercorn.trio import serve  # pyright: ignore[reportUnknownVariableType]
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._dialects import DIALECTS, Call, Dialect, Framing, NotFoundError
from ._oauth import ROTATING_GRANTS, OAuthGrants

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterable

    from hypercorn.typing import Framework  # pyright: ignore[reportUnknownVariableType]
    from starlette.requests import Request

__all__ = [
    "CHUNKS_HEADER",
    "Api",
    "LoopbackLLMServer",
    "LoopbackOptions",
    "LoopbackStats",
    "StreamErrorMode",
    "open_loopback_server",
    "run_loopback_server_in_thread",
]

CHUNKS_HEADER: Final = "x-loopback-chunks"
"""Request header that overrides the server's number of reply chunks for one request."""

StreamErrorMode = Literal["before_content", "after_content"]
"""Where an injected stream error lands: before the first text, or after some text."""

Api = Literal["openai", "anthropic", "responses", "gemini"]
"""The wire dialect a stream error is injected into (``"openai"``: chat completions)."""

# In-flight requests get this long to finish once the server is asked to stop; a test
# server that lingers slows every test that uses it, so this is short.
_GRACEFUL_SHUTDOWN_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class LoopbackStats:
    """A snapshot of what the server has done, for tests to compare against.

    Frozen so a snapshot taken before an action can be compared with one taken after.
    """

    token_requests: int = 0
    """Requests to ``POST /oauth/token``."""
    chat_completions_requests: int = 0
    """Requests to ``POST /v1/chat/completions``."""
    messages_requests: int = 0
    """Requests to ``POST /v1/messages``."""
    responses_requests: int = 0
    """Requests to ``POST /v1/responses``."""
    gemini_requests: int = 0
    """Requests to ``POST /v1beta/models/{model}:generateContent`` or ``:streamGenerateContent``."""
    unauthorized: int = 0
    """Responses with status 401 plus auth errors injected into streams, in any dialect."""
    tokens_issued: int = 0
    """Bearer tokens handed out, by the endpoint or by `LoopbackLLMServer.issue_token`."""
    streams_completed: int = 0
    """Streams that reached their final event (``[DONE]``, ``message_stop``, ...)."""


class LoopbackOptions(TypedDict, total=False):
    """Keyword options of `LoopbackLLMServer`, shared by the functions that start one."""

    token_ttl: float
    chunks: int
    chunk_delay: float
    model: str
    clock: Callable[[], float]


class _BadRequestError(Exception):
    """A request body or header the server cannot use; answered with status 400."""


def _input_count(inputs: object) -> int:
    """The number of input messages: a list counts its items, a bare string prompt is one."""
    if isinstance(inputs, list):
        return len(inputs)  # pyright: ignore[reportUnknownArgumentType]
    return 1 if isinstance(inputs, str) else 0


def _credential(request: Request, key_header: str | None) -> str | None:
    """The API key in ``key_header``, else the bearer token: an OAuth token works everywhere."""
    key = request.headers.get(key_header) if key_header else None
    if key:
        return key
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return (credentials.strip() or None) if scheme.lower() == "bearer" else None


class LoopbackLLMServer:
    """The state and ASGI app of a loopback LLM server: tokens, counters, injected faults.

    The controls (`expire_all`, `rotate`, `inject_stream_error`, `issue_token`, `stats`) take a
    lock that is never held across an await, so any thread may call them while the server runs
    on its own trio thread.

    Args:
        token_ttl: Seconds a bearer token stays valid, measured with ``clock``.
        chunks: Number of text chunks in every reply (``"chunk-0 "``, ``"chunk-1 "``, ...);
            a request may override it with the ``x-loopback-chunks`` header.
        chunk_delay: Seconds to wait before each streamed text chunk, so streams stay in
            flight while a test or demo expires tokens.
        model: Model name used when a request names none.
        clock: Source of the time used for token expiry; inject one to expire tokens without
            sleeping.

    Raises:
        ValueError: When ``token_ttl`` is not positive, ``chunks`` is below one or
            ``chunk_delay`` is negative.

    """

    def __init__(
        self,
        *,
        token_ttl: float = 3600.0,
        chunks: int = 3,
        chunk_delay: float = 0.0,
        model: str = "loopback-1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not token_ttl > 0 or chunks < 1 or not chunk_delay >= 0:
            raise ValueError(
                "token_ttl must be positive, chunks at least 1 and chunk_delay not negative; "
                f"got {token_ttl=}, {chunks=}, {chunk_delay=}"
            )
        self.token_ttl: Final = token_ttl
        self.chunks: Final = chunks
        self.chunk_delay: Final = chunk_delay
        self.model: Final = model
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry_by_token: dict[str, float] = {}
        self._pending_errors: dict[str, deque[StreamErrorMode]] = {
            dialect.api: deque() for dialect in DIALECTS
        }
        self._counts: Counter[str] = Counter()
        self._base_url: str | None = None
        self.oauth: Final = OAuthGrants(
            issue=self.issue_token, revoke=self._revoke, token_ttl=token_ttl
        )
        """Rotating refresh tokens with reuse detection, at the same token endpoint."""
        self.app: Final = Starlette(
            routes=[
                Route("/oauth/token", self._token_endpoint, methods=["POST"]),
                *(
                    Route(path, partial(self._dialect_endpoint, dialect), methods=["POST"])
                    for dialect in DIALECTS
                    for path in dialect.paths
                ),
            ]
        )

    def __repr__(self) -> str:
        """Show where the server listens, which is what a failing test needs to know."""
        return f"<LoopbackLLMServer base_url={self._base_url!r}>"

    @property
    def base_url(self) -> str:
        """The root URL, such as ``http://127.0.0.1:54321``, while the server is running.

        Raises:
            RuntimeError: When the server is not running.

        """
        if self._base_url is None:
            raise RuntimeError("the loopback server is not running")
        return self._base_url

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` to give the ``openai`` SDK (it expects the ``/v1`` prefix)."""
        return f"{self.base_url}/v1"

    @property
    def token_url(self) -> str:
        """The URL of the client-credentials token endpoint."""
        return f"{self.base_url}/oauth/token"

    @property
    def stats(self) -> LoopbackStats:
        """A snapshot of the counters."""
        with self._lock:
            counts = self._counts.copy()
        return LoopbackStats(
            **{each.name: counts[each.name] for each in dataclasses.fields(LoopbackStats)}
        )

    def issue_token(self) -> str:
        """Issue a fresh bearer token valid for ``token_ttl`` seconds, without an HTTP request."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._expiry_by_token[token] = self._clock() + self.token_ttl
            self._counts["tokens_issued"] += 1
        return token

    def expire_all(self) -> None:
        """Make every token issued so far expire now; new tokens are unaffected."""
        with self._lock:
            now = self._clock()
            self._expiry_by_token = dict.fromkeys(self._expiry_by_token, now)

    def rotate(self) -> None:
        """Forget every token issued so far, as a key rotation would; they become unknown."""
        with self._lock:
            self._expiry_by_token.clear()

    def inject_stream_error(
        self, mode: StreamErrorMode, count: int = 1, *, api: Api = "anthropic"
    ) -> None:
        """Make the next ``count`` streams of ``api`` end with an in-stream auth error.

        A token that is still valid gets a 200 response whose stream then fails, which is
        how providers report credentials that expire mid-stream. ``"before_content"`` sends
        the error after the opening (``message_start``, the role chunk, ``response.created``
        and ``response.in_progress``; Gemini sends none, so there it comes first),
        ``"after_content"`` after the first half of the text chunks. Each injected error counts
        as a 401 served.
        """
        with self._lock:
            self._pending_errors[api].extend(itertools.repeat(mode, count))

    def _revoke(self, tokens: Iterable[str]) -> None:
        with self._lock:
            for token in tokens:
                self._expiry_by_token.pop(token, None)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _refusal(self, token: str | None) -> str | None:
        """Say why ``token`` is refused, or ``None`` when it is valid now."""
        with self._lock:
            expires_at = self._expiry_by_token.get(token or "")
            now = self._clock()
        if expires_at is None:
            return "missing or unknown bearer token"
        if now >= expires_at:
            return "token expired"
        return None

    def _take_stream_error(self, api: str) -> StreamErrorMode | None:
        with self._lock:
            pending = self._pending_errors[api]
            return pending.popleft() if pending else None

    async def _read_call(self, request: Request, inputs: str) -> Call:
        try:
            body = await request.json()
            chunks = int(request.headers.get(CHUNKS_HEADER, self.chunks))
        except ValueError as error:
            raise _BadRequestError(f"unreadable request: {error}") from error
        if not isinstance(body, dict) or chunks < 1:
            raise _BadRequestError(f"expected a JSON object and {CHUNKS_HEADER} of at least 1")
        fields = cast("dict[str, object]", body)
        model, messages, options = (
            fields.get("model"),
            fields.get(inputs),
            fields.get("stream_options"),
        )
        return Call(
            model=model if isinstance(model, str) else self.model,
            stream=fields.get("stream") is True,
            include_usage=isinstance(options, dict)
            and cast("dict[str, object]", options).get("include_usage") is True,
            chunks=chunks,
            input_tokens=_input_count(messages),
        )

    async def _events(
        self, framing: Framing, call: Call, error: StreamErrorMode | None
    ) -> AsyncIterator[str]:
        for event in framing.head():
            yield event
        if error == "before_content":
            self._count("unauthorized")
            yield framing.auth_error()
            return
        for event in framing.content_head():
            yield event
        # After content, the error comes once half the text has gone out (at least one chunk).
        error_after = max(1, call.chunks // 2) if error == "after_content" else math.inf
        for sent, text in enumerate(call.texts, start=1):
            await trio.sleep(self.chunk_delay)
            yield framing.delta(text)
            if sent == error_after:
                self._count("unauthorized")
                yield framing.auth_error()
                return
        for event in framing.tail():
            yield event
        self._count("streams_completed")

    async def _token_endpoint(self, request: Request) -> Response:
        self._count("token_requests")
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                fields = json.loads(raw or b"{}")
            except ValueError:
                fields = None
        else:
            fields = dict(parse_qsl(raw.decode("latin-1")))
        # A bare POST is a client-credentials request: tests should not need ceremony.
        grant_type = (
            cast("dict[str, object]", fields).get("grant_type", "client_credentials")
            if isinstance(fields, dict)
            else None
        )
        if grant_type in ROTATING_GRANTS:
            answer = await self.oauth.grant(
                cast("dict[str, object]", fields), partial(_disconnected, request)
            )
            return JSONResponse(answer.body, status_code=answer.status)
        if grant_type != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type" if grant_type else "invalid_request"},
                status_code=400,
            )
        return JSONResponse(
            {
                "access_token": self.issue_token(),
                "token_type": "bearer",
                "expires_in": self.token_ttl,
            }
        )

    async def _dialect_endpoint(self, dialect: Dialect, request: Request) -> Response:
        """Answer a request to one of the provider APIs, with what every API shares."""
        # Read the body even when refusing: an unread body makes the HTTP/1.1 connection
        # unusable, and a client reusing it from its pool would see the server hang up.
        await request.body()
        try:
            target = None if dialect.target is None else dialect.target(request.path_params)
        except NotFoundError as error:
            return JSONResponse(dialect.error(404, str(error)), status_code=404)
        self._count(dialect.counter)
        refusal = self._refusal(_credential(request, dialect.key_header))
        if refusal is not None:
            self._count("unauthorized")
            return JSONResponse(dialect.error(401, refusal), status_code=401)
        try:
            call = await self._read_call(request, dialect.inputs)
        except _BadRequestError as error:
            return JSONResponse(dialect.error(400, str(error)), status_code=400)
        if target is not None:
            call = dataclasses.replace(call, model=target.model, stream=target.stream)
        if not call.stream:
            return JSONResponse(dialect.reply(call))
        events = self._events(dialect.stream(call), call, self._take_stream_error(dialect.api))
        return StreamingResponse(
            events, media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )


async def _disconnected(request: Request) -> None:
    """Return when the client of `request` has gone away.

    Its body was read, so the one message left for the app is the disconnect.
    """
    await request.receive()


@asynccontextmanager
async def _serving(server: LoopbackLLMServer) -> AsyncGenerator[LoopbackLLMServer]:
    """Serve ``server`` on a free loopback port for the duration of the block."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    # Tests own their output: no access log, no "Running on ..." banner, no error log.
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = _GRACEFUL_SHUTDOWN_SECONDS
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, cast("Framework", server.app), config, shutdown_trigger=shutdown.wait)
        )
        server._base_url = binds[0]  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]
        try:
            yield server
        finally:
            server._base_url = None  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]
            shutdown.set()


@asynccontextmanager
async def open_loopback_server(
    **options: Unpack[LoopbackOptions],
) -> AsyncGenerator[LoopbackLLMServer]:
    """Run a loopback LLM server in the current trio run for the duration of the block.

    The server listens before the block starts (``server.base_url`` is ready) and has
    stopped, its connections closed, when the block ends.

    Args:
        **options: Passed to `LoopbackLLMServer`.

    """
    async with _serving(LoopbackLLMServer(**options)) as server:
        yield server


@dataclass(slots=True)
class _ThreadHandoff:
    """What the server thread hands back to the thread that started it."""

    ready: threading.Event = field(default_factory=threading.Event)
    stop: trio.Event | None = None
    trio_token: trio.lowlevel.TrioToken | None = None
    error: Exception | None = None


async def _serve_until_stopped(server: LoopbackLLMServer, handoff: _ThreadHandoff) -> None:
    async with _serving(server):
        handoff.stop = trio.Event()
        handoff.trio_token = trio.lowlevel.current_trio_token()
        handoff.ready.set()
        await handoff.stop.wait()


@contextmanager
def run_loopback_server_in_thread(
    **options: Unpack[LoopbackOptions],
) -> Generator[LoopbackLLMServer]:
    """Run a loopback LLM server on its own trio thread, for sync and asyncio code.

    The server's controls are thread-safe, so the block may call them directly. On exit the
    server stops and its thread is joined.

    Args:
        **options: Passed to `LoopbackLLMServer`.

    Raises:
        RuntimeError: When the server thread fails to start; the cause is chained.

    """
    server = LoopbackLLMServer(**options)
    handoff = _ThreadHandoff()

    def run() -> None:
        try:
            trio.run(_serve_until_stopped, server, handoff)
        except Exception as error:  # noqa: BLE001 - handed to the starting thread, which raises
            handoff.error = error
        finally:
            # Also on failure, or the starting thread would wait forever.
            handoff.ready.set()

    thread = threading.Thread(target=run, name="loopback-llm-server", daemon=True)
    thread.start()
    handoff.ready.wait()
    if handoff.stop is None or handoff.trio_token is None:
        thread.join()
        raise RuntimeError("the loopback server thread failed to start") from handoff.error
    try:
        yield server
    finally:
        trio.from_thread.run_sync(handoff.stop.set, trio_token=handoff.trio_token)
        thread.join()
