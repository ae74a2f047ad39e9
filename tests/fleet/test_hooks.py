"""The doors' own rules, on httpx2's mock transport: windows, replay, failures, sync flows.

The doors with the real SDKs over loopback are in tests/integration/test_doors.py.
"""

from __future__ import annotations

import logging
import time

import httpx2
import pytest

from refresh_middleware._shared._ahead import ADVISORY, MANDATORY, Ahead, depth
from refresh_middleware.shared import Credential, MemoryStore, SharedCredential

KEY = "provider/account-1"
HOUR = 3600.0


class Issuer:
    """An identity provider and an API in one: it issues tokens and accepts only its own."""

    def __init__(self, *, expires_in: float = HOUR) -> None:
        self.expires_in = expires_in
        self.valid = {"access-0"}
        self.calls = 0
        self.failing = False
        self.seen: list[str] = []

    def fetch(self, current: Credential | None) -> Credential:
        self.calls += 1
        if self.failing:
            raise ConnectionError("the identity provider is down")
        token = f"access-{self.calls}"
        self.valid.add(token)
        return Credential(token, f"refresh-{self.calls}", time.time() + self.expires_in)

    def answer(self, request: httpx2.Request) -> httpx2.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.seen.append(token)
        return httpx2.Response(200 if token in self.valid else 401, json={"token": token})

    async def answer_async(self, request: httpx2.Request) -> httpx2.Response:
        return self.answer(request)


def credential_of(issuer: Issuer, expires_in: float = HOUR) -> SharedCredential:
    credential = SharedCredential(MemoryStore(), key=KEY, fetch=issuer.fetch)
    credential.seed_sync(Credential("access-0", "refresh-0", time.time() + expires_in))
    return credential


class Wire(httpx2.BaseTransport):
    """A transport that sends the body as a network would: read once, kept nowhere."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        for _ in request.stream:  # type: ignore[union-attr]
            pass
        return self.issuer.answer(request)


def sync_client(issuer: Issuer, credential: SharedCredential) -> httpx2.Client:
    return httpx2.Client(auth=credential.httpx_auth(), transport=Wire(issuer))


def async_client(issuer: Issuer, credential: SharedCredential) -> httpx2.AsyncClient:
    transport = httpx2.MockTransport(issuer.answer_async)
    return httpx2.AsyncClient(auth=credential.httpx_auth(), transport=transport)


# --------------------------------------------------------------------------------------------------
# the windows before expiry (pure)


def test_an_unknown_expiry_is_in_no_window():
    """A credential without expires_at is never refreshed ahead (the 401 path stays)."""
    assert 0 == depth(Credential("a"), time.time())


def test_in_the_advisory_window_one_caller_renews_and_the_others_go_on():
    """The first caller in the advisory window claims it; the next goes on until it ends."""
    ahead = Ahead()
    credential = Credential("a", expires_at=time.time() + 60)
    first, second = ahead.due(credential), ahead.due(credential)
    ahead.ended(ADVISORY, Credential("b", expires_at=time.time() + HOUR, generation=2))
    assert (ADVISORY, None, ADVISORY) == (first, second, ahead.due(credential))


def test_in_the_mandatory_window_every_caller_renews():
    """Thirty seconds from expiry nobody goes on: every caller waits for the renewal."""
    ahead = Ahead()
    credential = Credential("a", expires_at=time.time() + 10)
    assert (MANDATORY, MANDATORY) == (ahead.due(credential), ahead.due(credential))


def test_a_generation_born_in_a_window_is_not_renewed_ahead_again_in_it():
    """A renewal that hands over a token already in the window does not start another."""
    ahead = Ahead()
    short = Credential("a", expires_at=time.time() + 60, generation=3)
    ahead.ended(ADVISORY, short)
    assert None is ahead.due(short)


# --------------------------------------------------------------------------------------------------
# the sync flow


def test_a_sync_401_renews_once_and_resends_once():
    """A replayable request refused with 401 is sent again with the renewed token."""
    issuer = Issuer()
    with sync_client(issuer, credential_of(issuer)) as http:
        issuer.valid.clear()
        response = http.post("https://api.example/v1", json={"q": 1})
    assert (200, 1, ["access-0", "access-1"]) == (response.status_code, issuer.calls, issuer.seen)


def test_a_sync_body_that_cannot_be_replayed_gets_its_401_back():
    """A generator body is not resent: the 401 returns as it is; the next request is renewed."""
    issuer = Issuer()
    with sync_client(issuer, credential_of(issuer)) as http:
        issuer.valid.clear()
        first = http.post("https://api.example/v1", content=iter([b"streamed"]))
        second = http.post("https://api.example/v1", json={})
    assert (401, 200, 1) == (first.status_code, second.status_code, issuer.calls)


def test_a_sync_401_that_renewing_cannot_fix_is_returned_with_a_warning(caplog):
    """The identity provider down: the 401 comes back and a warning says why, no token in it."""
    issuer = Issuer()
    with sync_client(issuer, credential_of(issuer)) as http:
        issuer.valid.clear()
        issuer.failing = True
        with caplog.at_level(logging.WARNING, "refresh_middleware"):
            response = http.post("https://api.example/v1", json={})
    assert (401, True, False) == (
        response.status_code,
        "could not renew after a 401 (ConnectionError" in caplog.text,
        "access-0" in caplog.text,
    )


def test_a_sync_request_in_the_mandatory_window_is_renewed_first():
    """Ten seconds from expiry, the sync flow renews before sending: no 401 is seen."""
    issuer = Issuer()
    with sync_client(issuer, credential_of(issuer, expires_in=10)) as http:
        response = http.get("https://api.example/v1")
    assert (200, ["access-1"]) == (response.status_code, issuer.seen)


def test_a_failed_sync_renewal_ahead_goes_on_with_the_current_token(caplog):
    """Renewing ahead fails: the request goes out with the still-valid token, and a warning."""
    issuer = Issuer()
    issuer.failing = True
    with sync_client(issuer, credential_of(issuer, expires_in=10)) as http:
        response = http.get("https://api.example/v1")
    assert (200, ["access-0"], True) == (
        response.status_code,
        issuer.seen,
        "could not renew in the mandatory window" in caplog.text,
    )


# --------------------------------------------------------------------------------------------------
# the async flow


async def test_a_failed_renewal_ahead_goes_on_with_the_current_token(caplog):
    """Async: renewing ahead in the advisory window fails; the request goes on, warned."""
    issuer = Issuer()
    issuer.failing = True
    async with async_client(issuer, credential_of(issuer, expires_in=60)) as http:
        response = await http.get("https://api.example/v1")
    assert (200, True) == (
        response.status_code,
        "could not renew in the advisory window" in caplog.text,
    )


def test_the_auth_says_which_credential_and_header_it_sends():
    """repr names the shared credential and the header, never a token."""
    auth = credential_of(Issuer()).httpx_auth(header="x-api-key", scheme=None)
    expected = (
        "SharedCredentialAuth(SharedCredential(MemoryStore(), key='provider/account-1'), "
        "header='x-api-key')"
    )
    assert expected == repr(auth)


def test_the_sync_anthropic_provider_renews_on_force_refresh():
    """Anthropic's sync hook: force_refresh renews the token it handed out; 1 fetch."""
    issuer = Issuer()
    provider = credential_of(issuer).anthropic_provider_sync()
    handed_out = provider()
    forced = provider(force_refresh=True)
    assert ("access-0", "access-1", 1) == (handed_out.token, forced.token, issuer.calls)


@pytest.mark.parametrize("window", [60, 10])
def test_the_sync_openai_key_is_renewed_in_either_window(window):
    """openai_api_key_sync hands out a renewed token in the advisory and mandatory windows."""
    issuer = Issuer()
    key = credential_of(issuer, expires_in=window).openai_api_key_sync()
    assert ("access-1", "access-1") == (key(), key())
