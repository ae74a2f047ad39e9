"""The doors of one `SharedCredential`: an httpx2 `Auth`, and the SDKs' own token hooks.

A request reaches the provider through many doors: the httpx2 client an SDK sends through
(`httpx_auth()`, which sees every request and every 401 *response*), anthropic's
``credentials=`` provider, openai's callable ``api_key``. Each door here is a thin adapter
over `SharedCredential.current` and `SharedCredential.renew`: they all read the same record
and renew it keyed by the generation the failed request used, so one refresh per expiry holds
for the whole fleet, whichever door a request took.

Every door also refreshes ahead of expiry (`_ahead`), as the decorator does.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Final

import httpx2

from refresh_middleware._events import describe, logger

from ._ahead import Ahead, ready_async, ready_sync

if TYPE_CHECKING:
    from anthropic.lib.credentials import AccessToken

    from ._credential import SharedCredential
    from ._records import Credential

__all__ = [
    "AnthropicTokenProvider",
    "OpenAIKey",
    "SharedCredentialAuth",
    "SyncAnthropicTokenProvider",
    "SyncOpenAIKey",
]


def _failed_after_401(shared: SharedCredential, error: Exception) -> None:
    logger.warning(
        "refresh_middleware: %r could not renew after a 401 (%s); the 401 stands",
        shared,
        describe(error),
    )


# --------------------------------------------------------------------------------------------------
# the httpx2 Auth


def replayable(request: httpx2.Request) -> bool:
    """True when the request's body can be sent again: bytes in memory (JSON, forms, none)."""
    return isinstance(request.stream, httpx2.ByteStream)


class SharedCredentialAuth(httpx2.Auth):
    """An httpx2 `Auth` that sends the shared credential and renews it once on a 401 response.

    Made by `SharedCredential.httpx_auth`; see there. A 401 *response* is always safe to
    resend (nothing of it has reached the caller) when the request's body can be replayed.
    """

    def __init__(self, shared: SharedCredential, *, header: str, scheme: str | None) -> None:
        self.shared: Final = shared
        self.header: Final = header
        self.scheme: Final = scheme
        self._ahead = Ahead()

    def __repr__(self) -> str:
        """The credential and the header it is sent in."""
        return f"SharedCredentialAuth({self.shared!r}, header={self.header!r})"

    def _authorize(self, request: httpx2.Request, credential: Credential) -> None:
        token = credential.access_token
        request.headers[self.header] = token if self.scheme is None else f"{self.scheme} {token}"

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response]:
        """Send with the current credential; after a 401, renew once and resend once."""
        credential = ready_sync(self.shared, self._ahead)
        self._authorize(request, credential)
        response = yield request
        if response.status_code != 401:
            return
        again = replayable(request)
        if again:
            # Read to its end: that releases the connection, and httpx2 reads it again after
            # this flow resumes, which a closed response would not allow.
            response.read()
        try:
            fresh = self.shared.renew_sync(credential)
        except Exception as error:  # noqa: BLE001 - the 401 goes back to the caller
            _failed_after_401(self.shared, error)
            return
        self._ahead.known = fresh
        if again:
            self._authorize(request, fresh)
            yield request

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Send with the current credential; after a 401, renew once and resend once."""
        credential = await ready_async(self.shared, self._ahead)
        self._authorize(request, credential)
        response = yield request
        if response.status_code != 401:
            return
        again = replayable(request)
        if again:
            await response.aread()  # as in sync_auth_flow
        try:
            fresh = await self.shared.renew(credential)
        except Exception as error:  # noqa: BLE001 - the 401 goes back to the caller
            _failed_after_401(self.shared, error)
            return
        self._ahead.known = fresh
        if again:
            self._authorize(request, fresh)
            yield request


# --------------------------------------------------------------------------------------------------
# the SDKs' own hooks


def _access_token(credential: Credential) -> AccessToken:
    from anthropic.lib.credentials import AccessToken  # noqa: PLC0415 - anthropic users only

    expires_at = None if credential.expires_at is None else int(credential.expires_at)
    return AccessToken(credential.access_token, expires_at)


class AnthropicTokenProvider:
    """anthropic's `AsyncAccessTokenProvider` on the shared credential.

    Made by `SharedCredential.anthropic_provider`. The SDK calls it before requests (and in
    its own windows before expiry), and with ``force_refresh=True`` after a 401: then the
    credential this provider handed out, the one the 401 refused, is renewed (the fleet's
    one renewal of that generation), not whatever is newest.
    """

    __slots__ = ("_ahead", "shared")

    def __init__(self, shared: SharedCredential) -> None:
        self.shared: Final = shared
        self._ahead = Ahead()

    async def __call__(self, *, force_refresh: bool = False) -> AccessToken:
        """The access token to send; after a 401 (`force_refresh`), a renewed one."""
        refused = self._ahead.known
        if force_refresh and refused is not None:
            fresh = await self.shared.renew(refused)
            self._ahead.known = fresh
        else:
            fresh = await ready_async(self.shared, self._ahead)
        return _access_token(fresh)


class SyncAnthropicTokenProvider:
    """anthropic's `AccessTokenProvider` for the sync `Anthropic` client; see the async one."""

    __slots__ = ("_ahead", "shared")

    def __init__(self, shared: SharedCredential) -> None:
        self.shared: Final = shared
        self._ahead = Ahead()

    def __call__(self, *, force_refresh: bool = False) -> AccessToken:
        """The access token to send; after a 401 (`force_refresh`), a renewed one."""
        refused = self._ahead.known
        if force_refresh and refused is not None:
            fresh = self.shared.renew_sync(refused)
            self._ahead.known = fresh
        else:
            fresh = ready_sync(self.shared, self._ahead)
        return _access_token(fresh)


class OpenAIKey:
    """openai's async callable ``api_key`` on the shared credential.

    Made by `SharedCredential.openai_api_key`. `AsyncOpenAI` awaits it before every request;
    it never retries a 401 for it, so this door renews ahead of expiry only: pair it with
    `httpx_auth()` (or `refresh_on_401`) for the 401 itself.
    """

    __slots__ = ("_ahead", "shared")

    def __init__(self, shared: SharedCredential) -> None:
        self.shared: Final = shared
        self._ahead = Ahead()

    async def __call__(self) -> str:
        """The access token to send now."""
        return (await ready_async(self.shared, self._ahead)).access_token


class SyncOpenAIKey:
    """openai's callable ``api_key`` for the sync `OpenAI` client; see the async one."""

    __slots__ = ("_ahead", "shared")

    def __init__(self, shared: SharedCredential) -> None:
        self.shared: Final = shared
        self._ahead = Ahead()

    def __call__(self) -> str:
        """The access token to send now."""
        return ready_sync(self.shared, self._ahead).access_token
