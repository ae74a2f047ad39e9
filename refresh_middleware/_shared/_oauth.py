"""`OAuth2RefreshGrant`: a ready `fetch` that sends the OAuth 2.0 refresh_token grant.

RFC 6749, section 6: a form-encoded POST to the token endpoint with ``grant_type``,
``refresh_token`` and, when asked, ``scope``; the client authenticates with its secret in the
form (``client_secret_post``) or in HTTP basic auth (``client_secret_basic``, section 2.3.1).
It sends through httpx2, the HTTP client the SDKs already bring. The steps that build the
request and read the answer are pure; the sync and async forms only send.

What the identity provider answers becomes the next record: a new refresh token when it
rotates, the old one kept when it does not (section 6 lets it omit one), ``expires_at`` from
``expires_in``, ``token_type`` and ``scope`` kept in `Credential.extra`. A refusal is a
`TokenEndpointError` whose message carries the OAuth error code, so ``invalid_grant`` is seen
by `SharedCredential`: it adopts a newer stored record if another process rotated meanwhile,
or raises `ReauthenticationRequiredError`. No token ever reaches a message or a log line.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, cast
from urllib.parse import urlsplit

from refresh_middleware._events import RefreshError

from ._errors import ReauthenticationRequiredError
from ._records import Credential

if TYPE_CHECKING:
    import httpx2

__all__ = ["AuthMethod", "OAuth2RefreshGrant", "TokenEndpointError"]

AuthMethod = Literal["client_secret_post", "client_secret_basic"]
"""How the client authenticates at the token endpoint (RFC 6749, 2.3.1)."""

TIMEOUT: Final = 8.0
"""Seconds to connect to the token endpoint and for each read; below `fetch_timeout`."""

_KEPT: Final = ("token_type", "scope")
"""Fields of the answer kept in `Credential.extra`."""


class TokenEndpointError(RefreshError):
    """The token endpoint refused the grant, or answered something that is not a token.

    Attributes:
        status: The HTTP status of the answer.
        error: The OAuth error code (``invalid_grant``, ``invalid_client``, ...), or None.

    The message has the status, the code and the provider's description: never a token.

    """

    def __init__(self, message: str, *, status: int, error: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


class _Request(NamedTuple):
    """What to send: the form, and the basic-auth pair when the secret goes there."""

    form: dict[str, str]
    auth: tuple[str, str] | None


def _import_httpx2() -> Any:
    try:
        return importlib.import_module("httpx2")  # only the `oauth` extra brings it
    except ImportError as error:
        msg = "OAuth2RefreshGrant needs httpx2: pip install -e '.[oauth]' in a clone"
        raise ImportError(msg, name="httpx2") from error


class OAuth2RefreshGrant:
    """A `fetch` for `SharedCredential`: the OAuth 2.0 refresh_token grant (RFC 6749, 6).

    Args:
        token_url: The identity provider's token endpoint.
        client_id: The OAuth client's id.
        client_secret: The client's secret, for confidential clients; None for public ones.
        scope: The scope to ask for, when narrower than the one granted (RFC 6749, 6).
        auth_method: Where the secret goes: ``"client_secret_post"`` (in the form) or
            ``"client_secret_basic"`` (HTTP basic auth).

    Raises:
        ImportError: httpx2 is not installed (the ``oauth`` extra).
        ValueError: `token_url` is not an http(s) URL, `client_id` is empty, or
            `auth_method` is unknown.

    Awaited as `fetch(current)` by `SharedCredential` (in the caller's event loop, trio or
    asyncio); `fetch_sync(current)` is the same for synchronous code. The first credential
    is not this grant's: a person signs in, and `SharedCredential.seed` stores the tokens.

    """

    __slots__ = ("auth_method", "client_id", "client_secret", "scope", "token_url")

    def __init__(
        self,
        token_url: str,
        *,
        client_id: str,
        client_secret: str | None = None,
        scope: str | None = None,
        auth_method: AuthMethod = "client_secret_post",
    ) -> None:
        _import_httpx2()
        if not isinstance(cast("object", token_url), str) or urlsplit(token_url).scheme not in {
            "http",
            "https",
        }:
            msg = f"token_url must be an http(s) URL, got {token_url!r}"
            raise ValueError(msg)
        if not isinstance(cast("object", client_id), str) or not client_id:
            msg = "client_id must be a non-empty string"
            raise ValueError(msg)
        if auth_method not in {"client_secret_post", "client_secret_basic"}:
            msg = f"auth_method must be client_secret_post or client_secret_basic: {auth_method!r}"
            raise ValueError(msg)
        self.token_url: Final = token_url
        self.client_id: Final = client_id
        self.client_secret: Final = client_secret
        self.scope: Final = scope
        self.auth_method: Final = auth_method

    def __repr__(self) -> str:
        """The endpoint and the client id: never the secret."""
        return f"OAuth2RefreshGrant({self.token_url!r}, client_id={self.client_id!r})"

    async def __call__(self, current: Credential | None) -> Credential:
        """The next credential after `current`, from the token endpoint.

        Raises:
            ReauthenticationRequiredError: Nothing is stored yet, or the stored credential
                has no refresh token: a person must sign in, and the tokens be seeded.
            TokenEndpointError: The endpoint refused the grant or answered no token.

        """
        request = self._request(current)
        httpx2 = _import_httpx2()
        async with httpx2.AsyncClient(timeout=TIMEOUT) as http:
            response = await http.post(self.token_url, data=request.form, auth=request.auth)
        return self._credential(cast("Credential", current), response)

    def fetch_sync(self, current: Credential | None) -> Credential:
        """`fetch` for synchronous code: the same grant, sent from this thread."""
        request = self._request(current)
        httpx2 = _import_httpx2()
        with httpx2.Client(timeout=TIMEOUT) as http:
            response = http.post(self.token_url, data=request.form, auth=request.auth)
        return self._credential(cast("Credential", current), response)

    # -- the pure steps -------------------------------------------------------------------------

    def _request(self, current: Credential | None) -> _Request:
        """The form and client authentication of the grant that renews `current`."""
        if current is None or current.refresh_token is None:
            what = "nothing is stored" if current is None else "the stored credential has none"
            msg = (
                f"{what}: there is no refresh token to send. Sign in, then store the tokens "
                "with `await credential.seed(Credential(access_token, refresh_token, "
                "expires_at=...))` or `python -m refresh_middleware.shared seed`"
            )
            raise ReauthenticationRequiredError(msg, store=repr(self), key="(any)")
        form = {"grant_type": "refresh_token", "refresh_token": current.refresh_token}
        if self.scope is not None:
            form["scope"] = self.scope
        if self.auth_method == "client_secret_basic" and self.client_secret is not None:
            return _Request(form, (self.client_id, self.client_secret))
        form["client_id"] = self.client_id
        if self.client_secret is not None:
            form["client_secret"] = self.client_secret
        return _Request(form, None)

    def _credential(self, current: Credential, response: httpx2.Response) -> Credential:
        """The credential the endpoint's answer holds, or the refusal it says."""
        status = response.status_code
        try:
            body: object = response.json()
        except ValueError:
            body = None
        fields: Mapping[str, object] = (
            cast("Mapping[str, object]", body) if isinstance(body, Mapping) else {}
        )
        access = fields.get("access_token")
        if status != 200 or not isinstance(access, str) or not access:
            raise _refusal(status, fields)
        refresh = fields.get("refresh_token")
        expires_in = fields.get("expires_in")
        extra = {**current.extra, **{name: fields[name] for name in _KEPT if name in fields}}
        return Credential(
            access,
            # A provider that does not rotate omits it (RFC 6749, 6): the old one stays good.
            refresh if isinstance(refresh, str) and refresh else current.refresh_token,
            _expires_at(expires_in),
            extra,
        )


def _expires_at(expires_in: object) -> float | None:
    """Epoch seconds from ``expires_in`` (a number, or digits as some providers send)."""
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if (
        isinstance(expires_in, int | float)
        and not isinstance(expires_in, bool)
        and math.isfinite(expires_in)
    ):
        return time.time() + float(expires_in)
    return None


def _refusal(status: int, fields: Mapping[str, object]) -> TokenEndpointError:
    code = fields.get("error")
    error = code if isinstance(code, str) else None
    description = fields.get("error_description")
    said = f": {error}" if error else ": no access token in the answer"
    if isinstance(description, str) and description:
        said += f" ({description[:200]})"
    return TokenEndpointError(
        f"the token endpoint answered {status}{said}", status=status, error=error
    )
