"""The google-auth door, `SharedCredential.google_credentials()`, on google-auth's own calls.

google-auth's clients call `before_request` (which calls `refresh` when the token is missing or
near expiry, then `apply`); a transport that retries a 401 calls `refresh` itself. The door with
google-genai over loopback is in tests/integration/test_google_door.py.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time

import pytest

from refresh_middleware.shared import Credential, MemoryStore, SharedCredential

KEY = "vertex/account-1"
HOUR = 3600.0


class Issuer:
    """An identity provider that counts its grants."""

    def __init__(self) -> None:
        self.calls = 0

    def fetch(self, current: Credential | None) -> Credential:
        self.calls += 1
        return Credential(f"access-{self.calls}", f"refresh-{self.calls}", time.time() + HOUR)


def credential_of(issuer: Issuer, expires_at: float | None) -> SharedCredential:
    credential = SharedCredential(MemoryStore(), key=KEY, fetch=issuer.fetch)
    credential.seed_sync(Credential("access-0", "refresh-0", expires_at))
    return credential


def test_before_request_sends_the_token_with_its_expiry_as_a_naive_utc_datetime():
    """before_request: the bearer token, and the record's expiry as google-auth wants it."""
    expires_at = time.time() + HOUR
    google = credential_of(Issuer(), expires_at).google_credentials()
    headers: dict[str, str] = {}
    google.before_request(None, "POST", "https://example.invalid", headers)
    expected = dt.datetime.fromtimestamp(expires_at, dt.UTC).replace(tzinfo=None)
    assert ("Bearer access-0", expected) == (headers["authorization"], google.expiry)


def test_a_credential_without_expiry_never_expires_for_google_auth():
    """No expires_at: expiry None, which google-auth reads as a token that never expires."""
    google = credential_of(Issuer(), None).google_credentials()
    google.refresh(None)
    assert (None, False, "access-0") == (google.expiry, google.expired, google.token)


def test_a_token_near_expiry_is_renewed_before_the_request():
    """A minute from expiry (inside google-auth's threshold and the mandatory window): 1 grant."""
    issuer = Issuer()
    google = credential_of(issuer, time.time() + 60).google_credentials()
    tokens = []
    for _ in range(3):
        headers: dict[str, str] = {}
        google.before_request(None, "POST", "https://example.invalid", headers)
        tokens.append(headers["authorization"])
    assert (["Bearer access-1"] * 3, 1) == (tokens, issuer.calls)


def test_a_refresh_while_the_token_is_good_renews_the_one_it_holds():
    """A transport's refresh after a 401 (the token good by its expiry): renewed, 1 grant."""
    issuer = Issuer()
    google = credential_of(issuer, time.time() + HOUR).google_credentials()
    google.refresh(None)
    google.refresh(None)  # as AuthorizedSession does after a 401
    assert ("access-1", 1) == (google.token, issuer.calls)


class SignallingLock:
    """A lock that says when a thread starts waiting for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = threading.Event()

    def __enter__(self) -> None:
        self.waiting.set()
        self.lock.acquire()

    def __exit__(self, *_: object) -> None:
        self.lock.release()


def test_a_thread_that_waited_for_another_refresh_takes_its_token():
    """Refreshes queued behind one that changed the token return at once: no second grant."""
    issuer = Issuer()
    shared = credential_of(issuer, time.time() + HOUR)
    google = shared.google_credentials()
    google.refresh(None)  # holds access-0
    gate = SignallingLock()
    google._lock = gate
    with gate.lock:
        waiter = threading.Thread(target=google.refresh, args=(None,))
        waiter.start()
        gate.waiting.wait(10)
        google.token = "access-from-another-thread"  # noqa: S105 - what the holder's refresh set
    waiter.join(10)
    assert ("access-from-another-thread", 0) == (google.token, issuer.calls)


def test_the_credentials_say_which_credential_and_never_the_token():
    """repr names the shared credential; the token is not in it."""
    google = credential_of(Issuer(), time.time() + HOUR).google_credentials()
    google.refresh(None)
    assert (True, False) == (
        repr(google).startswith("GoogleCredentials(SharedCredential("),
        "access-0" in repr(google),
    )


def test_without_google_auth_the_error_says_which_extra_to_install(monkeypatch):
    """google-auth missing: an ImportError naming the google extra, on first use."""
    monkeypatch.setitem(sys.modules, "google.auth.credentials", None)
    monkeypatch.delitem(sys.modules, "refresh_middleware._shared._google")
    with pytest.raises(ImportError, match=r"pip install -e '\.\[google\]'"):
        credential_of(Issuer(), None).google_credentials()
