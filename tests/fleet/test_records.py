"""The pure parts of the shared credential: the record format, ordering, invalid_grant."""

from __future__ import annotations

import datetime as dt

import pytest

from refresh_middleware._shared._records import decode, encode, newer, newest
from refresh_middleware.shared import Credential, Record, is_invalid_grant

CREDENTIAL = Credential("access-123456", "refresh-abcdef", 1700000000.5, {"scope": "chat"})


class Reversed:
    """A codec that is easy to see through, and refuses what it did not write."""

    def encode(self, data: bytes) -> bytes:
        return b"R" + data[::-1]

    def decode(self, data: bytes) -> bytes:
        if not data.startswith(b"R"):
            raise ValueError("not mine")
        return data[1:][::-1]


def test_a_record_reads_back_as_the_credential_with_its_generation():
    """Encoding then decoding gives the credential back, with the record's generation."""
    record = encode(CREDENTIAL, 7, None)
    assert Credential(**{**vars_of(CREDENTIAL), "generation": 7}) == decode(record, None)


def vars_of(credential: Credential) -> dict[str, object]:
    return {
        "access_token": credential.access_token,
        "refresh_token": credential.refresh_token,
        "expires_at": credential.expires_at,
        "extra": dict(credential.extra),
    }


def test_the_generation_is_kept_in_plain_beside_the_data():
    """A store reads the generation without decoding the data (it compares it on writes)."""
    assert 3 == encode(CREDENTIAL, 3, Reversed()).generation


def test_a_codec_sees_every_byte_that_is_stored():
    """With a codec, the stored bytes are the codec's, and they read back through it."""
    record = encode(CREDENTIAL, 1, Reversed())
    assert (False, "access-123456") == (
        b"access-123456" in record.data,
        decode(record, Reversed()).access_token,
    )


def test_a_record_the_codec_refuses_is_reported_without_its_bytes():
    """A decode failure names the codec's complaint, never the record."""
    with pytest.raises(ValueError, match="the codec cannot decode it") as caught:
        decode(encode(CREDENTIAL, 1, None), Reversed())
    assert "access" not in str(caught.value)


def test_bytes_that_are_not_json_are_refused():
    """Bytes that are no JSON record are not a credential."""
    with pytest.raises(ValueError, match="not JSON"):
        decode(Record(1, b"\xff\x00garbage"), None)


@pytest.mark.parametrize(
    "document",
    [
        b"[]",
        b'{"format": 2, "access_token": "a"}',
        b'{"format": 1, "access_token": 5}',
        b'{"format": 1, "access_token": "a", "refresh_token": 5}',
        b'{"format": 1, "access_token": "a", "expires_at": "soon"}',
        b'{"format": 1, "access_token": "a", "expires_at": true}',
        b'{"format": 1, "access_token": "a", "extra": []}',
    ],
)
def test_json_that_is_not_a_credential_record_is_refused(document):
    """JSON of another shape (or a later format) is refused, not half read."""
    with pytest.raises(ValueError, match="not those of a credential record"):
        decode(Record(1, document), None)


def test_a_minimal_record_has_no_refresh_token_nor_expiry():
    """Only the access token is required; the rest defaults."""
    record = Record(2, b'{"format": 1, "access_token": "a", "expires_at": 5}')
    assert Credential("a", None, 5.0, {}, 2) == decode(record, None)


def test_the_repr_of_a_credential_shows_no_token():
    """repr names the generation, expiry and extra fields, never a token."""
    text = repr(Credential("access-123456", "refresh-abcdef", 5.0, {"scope": "x"}, 4))
    assert (False, False, True) == (
        "access-123456" in text,
        "refresh-abcdef" in text,
        text.startswith("Credential(generation=4, expires_at=5.0"),
    )


def test_the_repr_of_a_credential_without_refresh_token_says_none():
    """A credential without refresh token says so."""
    assert "refresh_token=None" in repr(Credential("a"))


def test_a_credential_is_hashable_despite_its_extra_fields():
    """Credentials can be set members and keys: the extra mapping is left out of the hash."""
    assert 1 == len({Credential("a", extra={"x": 1}), Credential("a", extra={"x": 1})})


def test_a_later_generation_is_newer_and_anything_beats_nothing():
    """newer compares generations; a record is newer than none; none is never newer."""
    old, new = Credential("a", generation=1), Credential("b", generation=2)
    assert (True, False, True, False) == (
        newer(new, old),
        newer(old, new),
        newer(old, None),
        newer(None, old),
    )


def test_the_newest_of_equals_is_the_first():
    """newest keeps the first of equal generations, and skips None."""
    first, second = Credential("a", generation=3), Credential("b", generation=3)
    assert (first, None) == (newest(None, first, second), newest(None, None))


class StatusError(Exception):
    """An HTTP error with the body of its response."""

    def __init__(self, text: str) -> None:
        super().__init__("Client error '400 Bad Request'")
        self.response = type("Response", (), {"text": text})()


class BrokenBody(Exception):
    """An error whose attributes raise when read."""

    @property
    def body(self) -> str:
        raise RuntimeError("unreadable")


@pytest.mark.parametrize(
    "error",
    [
        ValueError("invalid_grant: refresh token revoked"),
        StatusError('{"error": "invalid_grant"}'),
        type("Oauth", (Exception,), {"error": "invalid_grant"})(),
        ExceptionGroup("group", [KeyError("x"), ValueError("invalid_grant")]),
    ],
)
def test_invalid_grant_is_found_wherever_token_clients_put_it(error):
    """The message, an `error` attribute, the response text, inside groups: all are read."""
    assert True is is_invalid_grant(error)


def test_invalid_grant_is_found_in_the_cause():
    """An error raised from an invalid_grant error is one."""
    outer = RuntimeError("refresh failed")
    outer.__cause__ = ValueError("invalid_grant")
    assert True is is_invalid_grant(outer)


@pytest.mark.parametrize(
    "error",
    [ValueError("invalid_request"), StatusError('{"error": "server_error"}'), BrokenBody("x")],
)
def test_other_errors_are_not_invalid_grant(error):
    """Other OAuth errors, and errors that cannot be read, are not invalid_grant."""
    assert False is is_invalid_grant(error)


def test_a_cycle_of_contexts_ends():
    """An error whose context loops back to itself is walked once."""
    error = ValueError("x")
    other = KeyError("y")
    error.__context__, other.__context__ = other, error
    assert False is is_invalid_grant(error)


# --------------------------------------------------------------------------------------------------
# validation when a Credential is made


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"access_token": b"bytes"}, "access_token must be a str"),
        ({"refresh_token": 5}, "refresh_token must be a str or None"),
        ({"expires_at": "3600"}, "expires_at must be epoch seconds"),
        ({"expires_at": True}, "expires_at must be epoch seconds"),
        ({"expires_at": float("nan")}, "expires_at must be epoch seconds"),
        ({"extra": ["scope"]}, "extra must be a mapping"),
        ({"extra": {"when": object()}}, "extra must hold JSON values only"),
        ({"extra": {"x": float("inf")}}, "extra must hold JSON values only"),
        ({"generation": -1}, "generation must be an int of at least 0"),
        ({"generation": 1.0}, "generation must be an int of at least 0"),
    ],
)
def test_a_credential_with_a_bad_field_is_refused_when_made(fields, field):
    """Each field's type is checked at construction, and the message names the field."""
    with pytest.raises(TypeError, match=field):
        Credential(**{"access_token": "a", **fields})


def test_a_refusal_never_quotes_the_value():
    """A bad field's message names its type only: the value may be a token."""
    with pytest.raises(TypeError) as caught:
        Credential("a", refresh_token=b"secret-refresh-token")  # type: ignore[arg-type]
    assert "secret" not in str(caught.value)


def test_an_aware_datetime_becomes_epoch_seconds():
    """expires_at given as an aware datetime is stored as the epoch seconds it names."""
    when = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert when.timestamp() == Credential("a", expires_at=when).expires_at  # type: ignore[arg-type]


def test_a_naive_datetime_is_refused_with_the_way_out():
    """A naive datetime is refused: its zone would be a guess; the message says what to give."""
    with pytest.raises(TypeError, match="naive datetime: give an aware one"):
        Credential("a", expires_at=dt.datetime(2026, 12, 6, 8, 0))  # noqa: DTZ001  # type: ignore[arg-type]


def test_integer_seconds_are_kept_as_a_float():
    """expires_at given in whole seconds is the same float a stored record reads back as."""
    expires_at = Credential("a", expires_at=1700000000).expires_at
    assert (float, 1700000000.0) == (type(expires_at), expires_at)
