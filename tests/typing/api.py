"""What users write, checked by mypy and pyright in strict mode; never imported or run.

Each `assert_type` pins a type that the decorator must keep. Each line ending in
`# type: ignore[code]` must be an error: mypy's `warn_unused_ignores` (on in strict mode)
rejects an ignore whose code does not occur, and pyright's `reportUnnecessaryTypeIgnoreComment`
(switched on below) one on a line without an error. Pyright honours `# type: ignore` itself, so
a `# pyright: ignore` beside it would always be reported as unnecessary; one comment does both.
"""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import assert_type

from refresh_middleware import is_unauthorized_error, refresh_on_401
from refresh_middleware.classify import GateAction, ItemKind, StreamGate, kind_of


class Provider:
    def __init__(self, key: str) -> None:
        self.key = key

    async def chat(self, prompt: str) -> str:
        return f"{self.key}: {prompt}"

    async def chat_stream(self, prompt: str) -> AsyncIterator[str]:
        yield prompt

    def describe(self) -> str:
        return self.key


def rebuild(stale: Provider) -> Provider:
    return Provider(stale.key + "'")


async def rebuild_async(stale: Provider) -> Provider:
    return Provider(stale.key + "'")


def renew(stale: Provider) -> None:
    stale.key += "'"


async def renew_async(stale: Provider) -> None:
    stale.key += "'"


def wrong_refresh(token: str) -> str:
    return token


# -- wrapping an instance keeps its type ------------------------------------------------------

assert_type(refresh_on_401(Provider("k"), refresh=rebuild), Provider)
assert_type(refresh_on_401(Provider("k"), refresh=rebuild_async), Provider)
assert_type(refresh_on_401(Provider("k"), refresh=renew), Provider)
assert_type(refresh_on_401(Provider("k"), refresh=renew_async), Provider)
assert_type(refresh_on_401(Provider("k"), refresh=lambda stale: Provider(stale.key)), Provider)
assert_type(refresh_on_401(Provider("k"), refresh=rebuild, calls="chat", streams=()), Provider)

# -- the options are keyword arguments, typed once ------------------------------------------------


def fresh_key(
    provider: Provider, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[tuple[object, ...], dict[str, object]]:
    return args, {**kwargs, "api_key": provider.key}


def expiry(provider: Provider) -> dt.datetime:
    return dt.datetime.now(dt.UTC)


assert_type(
    refresh_on_401(
        Provider("k"),
        refresh=rebuild_async,
        calls=(),
        streams=("client.chat.completions.create",),
        hands_out=("bind",),
        retry_arguments=fresh_key,
        expires_at=expiry,
        refresh_timeout=None,
    ),
    Provider,
)
refresh_on_401(Provider("k"), refresh=rebuild, stream="chat_stream")  # type: ignore[call-overload]
refresh_on_401(Provider("k"), refresh=rebuild, refresh_timeout="30")  # type: ignore[call-overload]

# -- the decorator form, applied to an instance -------------------------------------------------

assert_type(refresh_on_401(refresh=rebuild)(Provider("k")), Provider)
assert_type(refresh_on_401(refresh=rebuild_async)(Provider("k")), Provider)

# -- the methods of a wrapped instance keep their signatures ------------------------------------

wrapped = refresh_on_401(Provider("k"), refresh=rebuild)
chat: Callable[[str], Awaitable[str]] = wrapped.chat
stream: Callable[[str], AsyncIterator[str]] = wrapped.chat_stream
assert_type(wrapped.describe(), str)


async def call_wrapped_wrongly() -> None:
    await wrapped.chat(42)  # type: ignore[arg-type]


# -- a decorated class keeps its type and its methods' signatures -------------------------------


# `refresh` is typed for the base class, as it usually is: it is written before the class.
@refresh_on_401(refresh=renew)
class MyProvider(Provider):
    async def embed(self, text: str) -> list[float]:
        return [float(len(text))]


mine = MyProvider("k")
assert_type(mine, MyProvider)
embed: Callable[[str], Awaitable[list[float]]] = mine.embed


async def use_decorated_class() -> None:
    await mine.embed(42)  # type: ignore[arg-type]
    assert_type(await mine.chat("hi"), str)
    assert_type(await mine.embed("hi"), list[float])
    async for text in mine.chat_stream("hi"):
        assert_type(text, str)


# -- a wrong refresh is an error -----------------------------------------------------------------

refresh_on_401(Provider("k"), refresh=wrong_refresh)  # type: ignore[arg-type]
refresh_on_401(Provider("k"), refresh="rebuild")  # type: ignore[call-overload]
refresh_on_401(Provider("k"), rebuild)  # type: ignore[call-overload]

# -- the classifier ------------------------------------------------------------------------------

assert_type(is_unauthorized_error(ValueError("HTTP 401")), bool)
assert_type(kind_of({"type": "ping"}), ItemKind)
gate = StreamGate(is_unauthorized=is_unauthorized_error, kind_of=kind_of)
assert_type(gate.on_item("text"), tuple[GateAction, object])
assert_type(gate.on_exception(ValueError()), GateAction)

# -- one credential for the fleet (refresh_middleware.shared) ------------------------------------

from refresh_middleware.shared import (  # noqa: E402 - this section's own imports
    Credential,
    FileStore,
    RedisStore,
    SharedCredential,
)


class TokenProvider:
    def __init__(self, credential: Credential) -> None:
        self.credential = credential

    async def chat(self, prompt: str) -> str:
        return f"{self.credential.access_token}: {prompt}"


async def oauth_refresh(current: Credential | None) -> Credential:
    return Credential("access", "refresh", expires_at=0.0, extra={"scope": "chat"})


def oauth_refresh_sync(current: Credential | None) -> Credential:
    return Credential("access")


credential = SharedCredential(FileStore("/var/lib/app"), key="acct", fetch=oauth_refresh)
SharedCredential(RedisStore("redis://127.0.0.1:6379/0"), key="acct", fetch=oauth_refresh_sync)
SharedCredential(FileStore("/var/lib/app"), key="acct", fetch=wrong_refresh)  # type: ignore[arg-type]


async def rebuild_from_the_fleet(stale: TokenProvider) -> TokenProvider:
    return TokenProvider(await credential.renew(stale.credential))


async def use_the_fleet() -> None:
    first = await credential.current()
    assert_type(first, Credential)
    assert_type(first.generation, int)
    assert_type(credential.renew_sync(first), Credential)
    provider = refresh_on_401(TokenProvider(first), refresh=rebuild_from_the_fleet)
    assert_type(provider, TokenProvider)
    await credential.renew("token")  # type: ignore[arg-type]


def vertex_credentials() -> None:
    # google-genai and every google-auth client take it as their `credentials=`.
    import google.auth.credentials

    vertex: google.auth.credentials.Credentials = credential.google_credentials()
    credential.google_credentials().refresh(None)
    assert vertex.quota_project_id is None
