"""The doors of one `SharedCredential`: an httpx2 `Auth`, and the SDKs' own token hooks.

A request reaches the provider through many doors: the httpx2 client an SDK sends through
(`httpx_auth()`, which sees every request and every 401 *response*), anthropic's
``credentials=`` provider, openai's callable ``api_key``. Each door here is a thin adapter
over `SharedCredential.current` and `SharedCredential.renew`: they all read the same record
and renew it keyed by the generation the failed request used, so one refresh per expiry holds
for the whole fleet, whichever door a request took.

Every door also refreshes ahead of expiry, as the decorator does: in the advisory window (two
minutes before) one caller of the door renews while the others go on, and a process that
finds the fleet's lock taken carries on with the still-valid record; in the mandatory window
(thirty seconds before) callers wait for the renewal. A generation is refreshed ahead at most
once per window (a token that lives less than the window is not fetched again and again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Final, NamedTuple

import httpx2

from refresh_middleware._events import describe, logger
from refresh_middleware._flight import trigger

from ._records import Credential

if TYPE_CHECKING:
    from anthropic.lib.credentials import AccessToken

    from ._credential import SharedCredential

__all__ = [
    "AnthropicTokenProvider",
    "OpenAIKey",
    "SharedCredentialAuth",
    "SyncAnthropicTokenProvider",
    "SyncOpenAIKey",
]

ADVISORY_SECONDS: Final = 120.0
"""Seconds before expiry where one caller renews while the others go on."""

MANDATORY_SECONDS: Final = 30.0
"""Seconds before expiry where every caller waits for the renewal."""

ADVISORY: Final = "advisory"
MANDATORY: Final = "mandatory"


def depth(credential: Credential, now: float) -> int:
    """0 outside the windows (or expiry unknown), 1 in the advisory one, 2 in the mandatory."""
    if credential.expires_at is None:
        return 0
    remaining = credential.expires_at - now
    if remaining > ADVISORY_SECONDS:
        return 0
    return 1 if remaining > MANDATORY_SECONDS else 2


class _Born(NamedTuple):
    """The window a generation was already in when a renewal handed it over."""

    generation: int
    depth: int


class Ahead:
    """The refresh-ahead state of one door: who is renewing in the advisory window, and when.

    Pure bookkeeping under a lock held for nanoseconds; the drivers below do the renewing.
    """

    __slots__ = ("_advising", "_born", "_lock", "known")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._advising = False
        self._born = _Born(-1, 0)
        self.known: Credential | None = None
        """The credential this door last handed out (a sync door starts from it)."""

    def due(self, credential: Credential) -> str | None:
        """The window that calls for renewing `credential` now, claimed; or None."""
        reached = depth(credential, time.time())
        born = self._born
        floor = born.depth if born.generation == credential.generation else 0
        if reached <= floor:
            return None
        if reached == 2:
            return MANDATORY
        with self._lock:
            if self._advising:  # another caller of this door is on it: go on
                return None
            self._advising = True
        return ADVISORY

    def ended(self, window: str, credential: Credential) -> None:
        """A renewal ahead in `window` ended with `credential` (fresh, or the old one)."""
        self._born = _Born(credential.generation, depth(credential, time.time()))
        self.known = credential
        if window == ADVISORY:
            with self._lock:
                self._advising = False


def _failed_ahead(shared: SharedCredential, window: str, error: Exception) -> None:
    logger.warning(
        "refresh_middleware: %r could not renew in the %s window before expiry (%s); "
        "going on with the current credential",
        shared,
        window,
        describe(error),
    )


def _failed_after_401(shared: SharedCredential, error: Exception) -> None:
    logger.warning(
        "refresh_middleware: %r could not renew after a 401 (%s); the 401 stands",
        shared,
        describe(error),
    )


# unasync-style pair: the same steps, awaited or called


async def ready_async(shared: SharedCredential, ahead: Ahead) -> Credential:
    """The credential to send now, renewed first when it is in a window before expiry."""
    credential = await shared.current()
    window = ahead.due(credential)
    if window is None:
        ahead.known = credential
        return credential
    reason = trigger.set(window)
    fresh = credential
    try:
        fresh = await shared.renew(credential)
    except Exception as error:  # noqa: BLE001 - the 401 path stays as the safety net
        _failed_ahead(shared, window, error)
    finally:
        trigger.reset(reason)
        ahead.ended(window, fresh)
    return fresh


def ready_sync(shared: SharedCredential, ahead: Ahead) -> Credential:
    """`ready_async` for threads; a credential this door knows unexpired is used as it is.

    The sync forms of `SharedCredential` run on a private loop in a worker thread, which is
    worth paying per renewal, not per request.
    """
    known = ahead.known
    credential = known if known is not None and not _expired(known) else shared.current_sync()
    window = ahead.due(credential)
    if window is None:
        ahead.known = credential
        return credential
    reason = trigger.set(window)
    fresh = credential
    try:
        fresh = shared.renew_sync(credential)
    except Exception as error:  # noqa: BLE001 - the 401 path stays as the safety net
        _failed_ahead(shared, window, error)
    finally:
        trigger.reset(reason)
        ahead.ended(window, fresh)
    return fresh


def _expired(credential: Credential) -> bool:
    return credential.expires_at is not None and time.time() >= credential.expires_at


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
