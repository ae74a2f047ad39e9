"""Redaction and error descriptions: what may reach a log line or an event."""

from __future__ import annotations

import pytest

from refresh_middleware._events import describe
from refresh_middleware.events import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcdef123456", "Authorization: [REDACTED]"),
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
