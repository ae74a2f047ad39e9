"""Redaction and error descriptions: what may reach a log line or an event."""

from __future__ import annotations

import logging

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refresh_middleware import refresh_on_401
from refresh_middleware._events import describe
from refresh_middleware.events import Event, RefreshFailed, redact
from refresh_middleware.testing import SyncScriptedProvider, UnauthorizedError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcdef123456", "Authorization: Bearer [REDACTED]"),
        ("sent bearer abcdef123456 upstream", "sent bearer [REDACTED] upstream"),
        ("x-api-key: abc123secret", "x-api-key: [REDACTED]"),
        ('{"access_token": "eyJhbGciOiJI.eyJzdWIiOiIx.sig"}', '{"access_token": "[REDACTED]"}'),
        ("api_key=sk-proj-abcdefgh12345&x=1", "api_key=[REDACTED]&x=1"),
        ("key sk-ant-api03-abcdefghij was revoked", "key [REDACTED] was revoked"),
        ("google AIzaSyA1234567890abcdefghijklmno", "google [REDACTED]"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "jwt [REDACTED]"),
        ("token_expired", "token_expired"),
        ("invalid_api_key", "invalid_api_key"),
        ("HTTP 401 Unauthorized", "HTTP 401 Unauthorized"),
    ],
)
def test_redact_removes_credentials_and_keeps_the_rest(text: str, expected: str) -> None:
    """Values of credential fields and key-shaped strings are replaced; error words stay."""
    assert expected == redact(text)


def test_describe_names_the_type_and_redacts_the_message() -> None:
    """describe gives `Type: message` with the message redacted."""
    assert "OSError: denied for Bearer [REDACTED]" == describe(OSError("denied for Bearer 1234567"))


def test_describe_survives_an_unprintable_error() -> None:
    """An error whose __str__ raises is described by its type."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError

    assert "Unprintable: <unprintable>" == describe(Unprintable())


def test_describe_of_an_error_without_message_is_its_type() -> None:
    """An error with no message is just its type name."""
    assert "KeyError" == describe(KeyError())


@pytest.mark.parametrize("scheme", ["Token", "DPoP", "SSWS", "Key", "Bearer", "Basic"])
def test_redact_keeps_the_scheme_word_and_removes_the_credential(scheme: str) -> None:
    """`Authorization: <scheme> <secret>` keeps the scheme visible and drops the secret."""
    assert f"Authorization: {scheme} [REDACTED] refused" == redact(
        f"Authorization: {scheme} s3cr3t-value refused"
    )


def test_redact_removes_an_unknown_scheme_with_its_credential() -> None:
    """A first word that is no known scheme may be the secret: it goes with what follows."""
    assert "Authorization: [REDACTED]" == redact("Authorization: Custom s3cr3t-value")


def test_redact_removes_the_password_of_a_url() -> None:
    """`https://user:<secret>@host` keeps the user and the host, not the password."""
    assert "GET https://bob:[REDACTED]@auth.example/token failed" == redact(
        "GET https://bob:s3cr3t-value@auth.example/token failed"
    )


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "key",
        "access_token",
        "token",
        "api_key",
        "apikey",
        "client_secret",
        "refresh_token",
        "secret",
        "sig",
        "signature",
        "X-Amz-Signature",
    ],
)
def test_redact_removes_credential_query_values(name: str) -> None:
    """Query parameters that carry a credential keep their name and lose their value."""
    assert f"https://h.example/v1?{name}=[REDACTED]&model=m" == redact(
        f"https://h.example/v1?{name}=s3cr3t-value&model=m"
    )


def test_redact_keeps_words_that_merely_end_like_a_credential_name() -> None:
    """`monkey=` or `design:` are not `key=` or `sig:`: ordinary text stays readable."""
    assert "monkey=banana design: flat" == redact("monkey=banana design: flat")


FORMS = (
    "Authorization: {scheme} {secret}",
    "Proxy-Authorization: {scheme} {secret}",
    "{{'Authorization': '{scheme} {secret}', 'Accept': 'json'}}",
    '{{"authorization": "{scheme} {secret}"}}',
    "Authorization: {secret}",
    "Authorization: {secret} was refused",
    "https://user:{secret}@auth.example/token",
    "https://:{secret}@auth.example",
    "https://h.example/v1?{name}={secret}&x=1",
    '{{"{name}": "{secret}"}}',
    "{name}: {secret}",
    "{{'{name}': '{scheme} {secret}'}}",
)
SCHEMES = st.sampled_from(["Bearer", "Basic", "Token", "DPoP", "SSWS", "Key", "ApiKey", "Custom"])
NAMES = st.sampled_from(
    [
        "password",
        "key",
        "access_token",
        "token",
        "api_key",
        "apikey",
        "client_secret",
        "refresh_token",
        "id_token",
        "secret",
        "sig",
        "signature",
        "x-api-key",
        "passwd",
    ]
)
SECRET_TEXT = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+",
    min_size=8,
    max_size=40,
)


def _planted(form: str, scheme: str, name: str, secret: str) -> str:
    text = form.format(scheme=scheme, name=name, secret=secret)
    # A secret that is also a word of the form (or of the placeholder) proves nothing.
    assume(secret not in form.format(scheme=scheme, name=name, secret="") + REDACTED_WORD)
    return f"refresh failed: {text}"


REDACTED_WORD = "[REDACTED]"


@given(st.sampled_from(FORMS), SCHEMES, NAMES, SECRET_TEXT)
def test_no_planted_secret_survives_redaction(
    form: str, scheme: str, name: str, secret: str
) -> None:
    """A random secret in a header, URL, query or field of any scheme never survives redact."""
    assert secret not in redact(_planted(form, scheme, name, secret))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _told(message: str) -> tuple[int, str]:
    """A refresh failing with `message`: how many RefreshFailed events, and all that was said."""

    def refresh(stale: SyncScriptedProvider) -> None:
        raise OSError(message)

    events: list[Event] = []
    provider = refresh_on_401(
        SyncScriptedProvider().queue_chat(UnauthorizedError()),
        refresh=refresh,
        on_event=events.append,
        cooldown=None,
    )
    records = _Records()
    logger = logging.getLogger("refresh_middleware")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with pytest.raises(UnauthorizedError):
            provider.chat("x")
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    failed = [event for event in events if isinstance(event, RefreshFailed)]
    return len(failed), "".join(records.lines) + "".join(repr(event) for event in events)


@given(st.sampled_from(FORMS), SCHEMES, NAMES, SECRET_TEXT)
def test_no_planted_secret_reaches_the_refresh_failed_event_or_the_log(
    form: str, scheme: str, name: str, secret: str
) -> None:
    """A refresh that fails with a secret in its message: no event or log line carries it."""
    # A secret that the library's own words contain ("refresh_") proves nothing.
    assume(secret not in _told(_planted(form, scheme, name, "0" * 8))[1])
    failed, told = _told(_planted(form, scheme, name, secret))
    assert (1, False) == (failed, secret in told)
