"""OAuth2RefreshGrant against the loopback identity provider: rotation, none, reuse."""

from __future__ import annotations

import time

import httpx
import httpx2
import pytest
import trio

from refresh_middleware.shared import (
    Credential,
    MemoryStore,
    OAuth2RefreshGrant,
    ReauthenticationRequiredError,
    SharedCredential,
    TokenEndpointError,
)

from .helpers import plant

KEY = "loopback/account"


async def sign_in(server) -> Credential:
    """The tokens a person's sign-in yields: an authorization code exchanged once."""
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.token_url,
            data={"grant_type": "authorization_code", "code": server.oauth.authorization_code()},
        )
    body = response.json()
    return Credential(body["access_token"], body["refresh_token"], time.time() + body["expires_in"])


async def seeded(server, store=None, **options) -> SharedCredential:
    grant = OAuth2RefreshGrant(server.token_url, client_id="app", **options)
    credential = SharedCredential(store or MemoryStore(), key=KEY, fetch=grant)
    await credential.seed(await sign_in(server))
    return credential


async def test_a_rotating_provider_s_new_refresh_token_is_kept(loopback):
    """A renewal sends the refresh token once and keeps the rotated one, with expiry and type."""
    credential = await seeded(loopback)
    stale = await credential.current()
    fresh = await credential.renew(stale)
    assert (1, True, True, {"token_type": "bearer"}) == (
        loopback.oauth.stats.refresh_grants,
        fresh.refresh_token not in {None, stale.refresh_token},
        abs(fresh.expires_at - (time.time() + loopback.token_ttl)) < 60,
        dict(fresh.extra),
    )


async def test_a_provider_that_does_not_rotate_leaves_the_old_refresh_token_in_use(loopback):
    """Without a refresh token in the answer, the old one is kept, and works again."""
    credential = await seeded(loopback)
    loopback.oauth.rotating = False
    first = await credential.current()
    second = await credential.renew(first)
    third = await credential.renew(second)
    assert (first.refresh_token, first.refresh_token, 2, 0) == (
        second.refresh_token,
        third.refresh_token,
        loopback.oauth.stats.refresh_grants,
        loopback.oauth.stats.reuse_detections,
    )


async def test_reuse_with_a_newer_record_stored_meanwhile_adopts_it(loopback):
    """invalid_grant (a reused token) after another holder stored a newer record: adopted."""
    store = MemoryStore()
    credential = await seeded(loopback, store)
    stale = await credential.current()
    grant = OAuth2RefreshGrant(loopback.token_url, client_id="app")
    theirs = await grant(stale)  # another holder (its lease ran out) rotated it already
    loopback.oauth.hold()
    async with trio.open_nursery() as nursery:
        got: list[Credential] = []

        async def renew() -> None:
            got.append(await credential.renew(stale))

        nursery.start_soon(renew)
        while loopback.oauth.stats.held == 0:  # noqa: ASYNC110 - a counter, not an event
            await trio.sleep(0.01)
        await plant(store, KEY, theirs, generation=2)
        loopback.oauth.release()
    assert (2, theirs.access_token, 1) == (
        got[0].generation,
        got[0].access_token,
        loopback.oauth.stats.reuse_detections,
    )


async def test_reuse_with_nothing_newer_asks_for_a_new_sign_in(loopback):
    """invalid_grant with no newer record: ReauthenticationRequiredError, the cause chained."""
    credential = await seeded(loopback)
    stale = await credential.current()
    await OAuth2RefreshGrant(loopback.token_url, client_id="app")(stale)  # spent elsewhere
    with pytest.raises(ReauthenticationRequiredError, match="sign in again") as caught:
        await credential.renew(stale)
    assert "invalid_grant" == caught.value.__cause__.error


async def test_with_nothing_stored_the_error_says_how_to_seed(loopback):
    """current() on an empty key: ReauthenticationRequiredError naming seed; no grant sent."""
    grant = OAuth2RefreshGrant(loopback.token_url, client_id="app")
    credential = SharedCredential(MemoryStore(), key=KEY, fetch=grant)
    with pytest.raises(ReauthenticationRequiredError, match=r"nothing is stored.*credential\.seed"):
        await credential.current()
    assert 0 == loopback.stats.token_requests


async def test_a_stored_credential_without_a_refresh_token_cannot_be_renewed(loopback):
    """A seeded access token alone: renewing it asks for a sign-in, without a request."""
    grant = OAuth2RefreshGrant(loopback.token_url, client_id="app")
    credential = SharedCredential(MemoryStore(), key=KEY, fetch=grant)
    stale = await credential.seed(Credential("access only"))
    with pytest.raises(ReauthenticationRequiredError, match="the stored credential has none"):
        await credential.renew(stale)


def test_the_sync_form_renews_from_a_thread():
    """fetch_sync sends the same grant from synchronous code (renew_sync, current_sync)."""
    from refresh_middleware.testing import run_loopback_server_in_thread

    with run_loopback_server_in_thread() as server:
        code = server.oauth.authorization_code()
        body = httpx.post(
            server.token_url, data={"grant_type": "authorization_code", "code": code}
        ).json()
        grant = OAuth2RefreshGrant(server.token_url, client_id="app")
        credential = SharedCredential(MemoryStore(), key=KEY, fetch=grant.fetch_sync)
        stale = credential.seed_sync(Credential(body["access_token"], body["refresh_token"]))
        fresh = credential.renew_sync(stale)
        assert (2, 1) == (fresh.generation, server.oauth.stats.refresh_grants)


# --------------------------------------------------------------------------------------------------
# the pure steps: what is sent, how an answer is read


def request_of(**options):
    grant = OAuth2RefreshGrant("https://idp.example/token", client_id="app", **options)
    return grant._request(Credential("a", "the-refresh-token"))


def test_a_public_client_sends_its_id_in_the_form():
    """No secret: the form has the grant, the refresh token and the client id; no basic auth."""
    assert (
        {"grant_type": "refresh_token", "refresh_token": "the-refresh-token", "client_id": "app"},
        None,
    ) == request_of()


def test_client_secret_post_sends_the_secret_and_scope_in_the_form():
    """client_secret_post (the default) puts the secret in the form, beside the scope asked."""
    assert (
        {
            "grant_type": "refresh_token",
            "refresh_token": "the-refresh-token",
            "scope": "chat",
            "client_id": "app",
            "client_secret": "s3cret",
        },
        None,
    ) == request_of(client_secret="s3cret", scope="chat")  # noqa: S106


def test_client_secret_basic_sends_the_secret_in_basic_auth():
    """client_secret_basic puts the id and secret in HTTP basic auth, not in the form."""
    assert (
        {"grant_type": "refresh_token", "refresh_token": "the-refresh-token"},
        ("app", "s3cret"),
    ) == request_of(client_secret="s3cret", auth_method="client_secret_basic")  # noqa: S106


def answer_of(status: int, **body) -> Credential:
    grant = OAuth2RefreshGrant("https://idp.example/token", client_id="app")
    current = Credential("old", "old-refresh", extra={"account": "acct-42"})
    return grant._credential(current, httpx2.Response(status, json=body))


def test_expires_in_as_digits_is_read_and_other_fields_are_kept_with_the_old_extra():
    """expires_in "3600" counts; scope is kept in extra beside what the record had."""
    fresh = answer_of(200, access_token="new", expires_in="3600", scope="chat")  # noqa: S106
    assert (True, {"account": "acct-42", "scope": "chat"}) == (
        abs(fresh.expires_at - time.time() - 3600) < 60,
        dict(fresh.extra),
    )


@pytest.mark.parametrize("expires_in", ["null", '"soon"', "NaN", "true"])
def test_an_unreadable_expires_in_leaves_the_expiry_unknown(expires_in):
    """An absent or unreadable expires_in gives expires_at None (the 401 safety net stays)."""
    grant = OAuth2RefreshGrant("https://idp.example/token", client_id="app")
    body = f'{{"access_token": "new", "expires_in": {expires_in}}}'.encode()
    fresh = grant._credential(Credential("a", "r"), httpx2.Response(200, content=body))
    assert None is fresh.expires_at


def test_a_refusal_says_status_code_and_description_never_a_token():
    """A 400 becomes TokenEndpointError with the OAuth code and description."""
    with pytest.raises(TokenEndpointError) as caught:
        answer_of(400, error="invalid_grant", error_description="refresh token reused")
    assert (
        "the token endpoint answered 400: invalid_grant (refresh token reused)",
        400,
        "invalid_grant",
    ) == (str(caught.value), caught.value.status, caught.value.error)


def test_an_answer_without_an_access_token_is_a_refusal():
    """A 200 without an access token (or not JSON at all) is not a credential."""
    grant = OAuth2RefreshGrant("https://idp.example/token", client_id="app")
    with pytest.raises(TokenEndpointError, match="answered 200: no access token"):
        grant._credential(Credential("a", "r"), httpx2.Response(200, text="<html>"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token_url": "idp.example/token"}, "token_url must be an http"),
        ({"client_id": ""}, "client_id must be a non-empty string"),
        ({"auth_method": "private_key_jwt"}, "auth_method must be"),
    ],
)
def test_options_are_checked_when_made(options, message):
    """A token URL without a scheme, an empty client id or an unknown method is refused."""
    arguments = {"token_url": "https://idp.example/token", "client_id": "app", **options}
    with pytest.raises(ValueError, match=message):
        OAuth2RefreshGrant(arguments.pop("token_url"), **arguments)


def test_the_repr_shows_the_endpoint_and_client_never_the_secret():
    """repr names the endpoint and the client id; the secret is not in it."""
    grant = OAuth2RefreshGrant("https://idp.example/token", client_id="app", client_secret="s3")  # noqa: S106
    assert "OAuth2RefreshGrant('https://idp.example/token', client_id='app')" == repr(grant)


def test_without_httpx2_the_error_says_which_extra_to_install(monkeypatch):
    """httpx2 missing: an ImportError naming the oauth extra."""

    def missing(name: str):
        raise ImportError(name)

    monkeypatch.setattr("refresh_middleware._shared._oauth.importlib.import_module", missing)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[oauth\]'"):
        OAuth2RefreshGrant("https://idp.example/token", client_id="app")
