"""Rotating refresh tokens with reuse detection, as the loopback server's identity provider.

Identity providers that rotate refresh tokens hand out a new refresh token with every grant
and accept each one **once**. A refresh token presented a second time means two clients hold
it (or a thief does): the provider revokes the whole family, every access and refresh token
that descends from the same sign-in, and every process sharing it is logged out. That is the
failure a fleet of processes refreshing on their own runs into, so the loopback server does
the same, counts it, and lets tests hold grants to line up races:

- ``grant_type=authorization_code`` with a code from `OAuthGrants.authorization_code` (what a
  person's sign-in yields) starts a family: the bootstrap grant. A code works once.
- ``grant_type=refresh_token`` with the family's latest refresh token rotates it.

Access tokens are issued (and expired, with `LoopbackLLMServer.expire_all`) by the server, so
the chat endpoints accept them like any other.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple, cast

from refresh_middleware._flight import Signal

__all__ = ["OAuthGrants", "OAuthStats"]

ROTATING_GRANTS: Final = frozenset({"authorization_code", "refresh_token"})
"""The grant types `OAuthGrants` answers; the server answers ``client_credentials`` itself."""


@dataclasses.dataclass(frozen=True, slots=True)
class OAuthStats:
    """A snapshot of what the identity provider did, for tests and demos to compare."""

    codes_issued: int = 0
    """Authorization codes handed out by `OAuthGrants.authorization_code`."""
    code_grants: int = 0
    """Codes exchanged for a new family of tokens: bootstrap grants."""
    refresh_grants: int = 0
    """Refresh tokens exchanged for new tokens: rotations."""
    reuse_detections: int = 0
    """Refresh tokens (or codes) presented a second time; each revoked its family."""
    families_revoked: int = 0
    """Families revoked, by reuse or by `OAuthGrants.revoke_all`."""
    invalid_grants: int = 0
    """Grants refused with ``invalid_grant``: reuse, unknown or revoked tokens."""
    held: int = 0
    """Grants waiting at the hold right now."""
    abandoned: int = 0
    """Held grants whose client went away before the hold was released: never answered."""

    @property
    def grants(self) -> int:
        """Successful grants of both kinds: what a fleet should keep to one per expiry."""
        return self.code_grants + self.refresh_grants


class Answer(NamedTuple):
    """The HTTP status and JSON body to answer a grant with."""

    status: int
    body: dict[str, Any]


@dataclasses.dataclass(slots=True, eq=False)
class _Family:
    """The tokens descending from one sign-in."""

    number: int
    access_tokens: list[str] = dataclasses.field(default_factory=list[str])
    revoked: bool = False


class _Issued(NamedTuple):
    """A code or refresh token: its family, and whether it was already exchanged."""

    family: _Family | None  # None for a code not yet exchanged
    used: bool


class OAuthGrants:
    """The rotating grants of a loopback server; thread-safe, like the server's controls.

    Args:
        issue: Issues a new access token (the server's `issue_token`).
        revoke: Makes access tokens unknown to the server.
        token_ttl: Seconds an access token lives, said in ``expires_in``.

    """

    def __init__(
        self,
        *,
        issue: Callable[[], str],
        revoke: Callable[[Iterable[str]], None],
        token_ttl: float,
    ) -> None:
        self._issue = issue
        self._revoke = revoke
        self._token_ttl = token_ttl
        self._lock = threading.Lock()
        self._codes: dict[str, _Issued] = {}
        self._refresh_tokens: dict[str, _Issued] = {}
        self._families = itertools.count(1)
        self._counts: Counter[str] = Counter()
        self._hold: Signal | None = None
        self.rotating = True
        """False: refresh grants answer without a refresh token, which stays good for reuse,
        as providers that do not rotate do (RFC 6749, 6); a test may switch it at any time."""

    @property
    def stats(self) -> OAuthStats:
        """A snapshot of the counters."""
        with self._lock:
            return OAuthStats(**self._counts)

    def authorization_code(self) -> str:
        """A one-time code to exchange for a new family of tokens: what a sign-in yields."""
        code = f"code-{secrets.token_urlsafe(16)}"
        with self._lock:
            self._codes[code] = _Issued(None, used=False)
            self._counts["codes_issued"] += 1
        return code

    def hold(self) -> None:
        """Make grants wait from now on, until `release`: to line up a race, or a crash.

        A held grant has not been looked at: if its client goes away before the release, it
        is dropped unanswered, and its refresh token stays unused.
        """
        with self._lock:
            if self._hold is None:
                self._hold = Signal()

    def release(self) -> None:
        """Let held grants (and later ones) through."""
        with self._lock:
            hold, self._hold = self._hold, None
        if hold is not None:
            hold.set()

    def revoke_all(self) -> None:
        """Revoke every family, as an administrator logging everyone out would."""
        with self._lock:
            families = {issued.family for issued in self._refresh_tokens.values()}
            revoked = [self._revoke_family(each) for each in families if each is not None]
        self._revoke(itertools.chain.from_iterable(revoked))

    async def grant(
        self, fields: Mapping[str, object], disconnected: Callable[[], Awaitable[object]]
    ) -> Answer:
        """Answer a token request of one of the `ROTATING_GRANTS`.

        `disconnected` returns when the client has gone away: a held grant is then dropped.
        """
        with self._lock:
            hold = self._hold
            if hold is not None:
                self._counts["held"] += 1
        if hold is not None and not await self._wait_or_leave(hold, disconnected):
            return Answer(499, {"error": "client_closed_request"})
        revoked: list[str] = []
        try:
            with self._lock:
                if fields.get("grant_type") == "authorization_code":
                    return self._exchange_code(fields.get("code"), revoked)
                return self._rotate(fields.get("refresh_token"), revoked)
        finally:
            self._revoke(revoked)

    async def _wait_or_leave(
        self, hold: Signal, disconnected: Callable[[], Awaitable[object]]
    ) -> bool:
        """Wait for the hold to be released (True) or the client to leave (False)."""
        import trio  # noqa: PLC0415 - the server runs on trio; importing this module needs none

        released = False

        async def wait_for_release(scope: trio.CancelScope) -> None:
            nonlocal released
            await hold.wait_async()
            released = True
            scope.cancel()

        async def wait_for_leaving(scope: trio.CancelScope) -> None:
            await disconnected()
            scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_for_release, nursery.cancel_scope)
                nursery.start_soon(wait_for_leaving, nursery.cancel_scope)
        finally:
            with self._lock:
                self._counts["held"] -= 1
                self._counts["abandoned"] += 0 if released else 1
        return released

    # -- under the lock --------------------------------------------------------------------------

    def _exchange_code(self, code: object, revoked: list[str]) -> Answer:
        if not isinstance(code, str) or code not in self._codes:
            return self._invalid("unknown authorization code")
        issued = self._codes[code]
        if issued.used:
            # RFC 6749 4.1.2: a code used twice revokes what it was exchanged for.
            self._counts["reuse_detections"] += 1
            revoked += self._revoke_family(cast("_Family", issued.family))  # set when used
            return self._invalid("authorization code already used")
        family = _Family(next(self._families))
        self._codes[code] = _Issued(family, used=True)
        self._counts["code_grants"] += 1
        return self._tokens(family)

    def _rotate(self, token: object, revoked: list[str]) -> Answer:
        if not isinstance(token, str) or token not in self._refresh_tokens:
            return self._invalid("unknown refresh token")
        issued = self._refresh_tokens[token]
        family = cast("_Family", issued.family)  # refresh tokens always have one
        if family.revoked:
            return self._invalid("refresh token revoked")
        if issued.used:
            self._counts["reuse_detections"] += 1
            revoked += self._revoke_family(family)
            return self._invalid("refresh token reused: the family is revoked")
        self._counts["refresh_grants"] += 1
        if not self.rotating:
            return self._tokens(family, rotate=False)
        self._refresh_tokens[token] = _Issued(family, used=True)
        return self._tokens(family)

    def _tokens(self, family: _Family, *, rotate: bool = True) -> Answer:
        access = self._issue()
        family.access_tokens.append(access)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self._token_ttl,
        }
        if rotate:
            body["refresh_token"] = refresh = f"rt-{family.number}-{secrets.token_urlsafe(16)}"
            self._refresh_tokens[refresh] = _Issued(family, used=False)
        return Answer(200, body)

    def _revoke_family(self, family: _Family) -> list[str]:
        if family.revoked:
            return []
        family.revoked = True
        self._counts["families_revoked"] += 1
        return family.access_tokens

    def _invalid(self, description: str) -> Answer:
        self._counts["invalid_grants"] += 1
        return Answer(400, {"error": "invalid_grant", "error_description": description})
