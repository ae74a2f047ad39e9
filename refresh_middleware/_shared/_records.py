"""Pure parts of the shared credential: the `Credential` value and how a record is written.

A store keeps, for each key, a `Record`: the generation in plain (stores compare it when they
write) and the credential as opaque bytes. Those bytes are the credential in JSON, passed
through the host's codec, if any (encryption at rest). Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple, Protocol, cast

from refresh_middleware._events import REDACTED

__all__ = [
    "Codec",
    "Credential",
    "Record",
    "decode",
    "encode",
    "is_generation",
    "is_invalid_grant",
    "newer",
    "newest",
]

_FORMAT = 1
"""The version of the JSON layout of a record, written into it, so a later layout can tell."""


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Credential:
    """An OAuth credential as the fleet shares it: a frozen value.

    Args:
        access_token: The bearer token providers accept.
        refresh_token: The token that buys the next access token, when there is one; with a
            rotating identity provider it is good for one use only.
        expires_at: When the access token expires, in epoch seconds (`time.time()`), if known.
        extra: Provider-specific fields (a token type, a scope, an account id), kept as they
            are; values must be JSON-serialisable.
        generation: Given by the store to each record it writes: every process reads the same
            number for the same record, and it grows with each write. `fetch` need not set it.

    The tokens never appear in `repr`, so a credential can be logged.

    """

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict[str, Any], hash=False)
    generation: int = 0

    def __post_init__(self) -> None:
        """Check every field now, before a token is spent on a value that cannot be stored.

        A `fetch` that builds a bad credential would otherwise fail when the record is
        written, after the identity provider took the refresh token. An aware `datetime` for
        `expires_at` is converted to epoch seconds; a naive one is refused (its zone is a
        guess). Messages name the field and the type, never a value (it may be a token).
        """
        problem = _problem(self)
        if problem is not None:
            raise TypeError(f"Credential: {problem}")
        if isinstance(self.expires_at, dt.datetime):
            object.__setattr__(self, "expires_at", self.expires_at.timestamp())
        elif self.expires_at is not None:
            object.__setattr__(self, "expires_at", float(self.expires_at))

    def __repr__(self) -> str:
        """Everything but the secrets."""
        refresh = "None" if self.refresh_token is None else REDACTED
        extra = ", ".join(sorted(self.extra))
        return (
            f"Credential(generation={self.generation}, expires_at={self.expires_at!r}, "
            f"access_token={REDACTED}, refresh_token={refresh}, extra=[{extra}])"
        )


def _problem(credential: Credential) -> str | None:
    """What is wrong with the fields of `credential`, or None."""
    access = cast("object", credential.access_token)
    refresh = cast("object", credential.refresh_token)
    generation = cast("object", credential.generation)
    if not isinstance(access, str):
        return f"access_token must be a str, got {type(access).__name__}"
    if refresh is not None and not isinstance(refresh, str):
        return f"refresh_token must be a str or None, got {type(refresh).__name__}"
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        return f"generation must be an int of at least 0, got {type(generation).__name__}"
    return _expiry_problem(cast("object", credential.expires_at)) or _extra_problem(
        cast("object", credential.extra)
    )


def _expiry_problem(expires: object) -> str | None:
    if isinstance(expires, dt.datetime) and expires.utcoffset() is None:
        return (
            "expires_at is a naive datetime: give an aware one "
            "(datetime.now(timezone.utc) + ...) or epoch seconds (time.time() + expires_in)"
        )
    if expires is None or isinstance(expires, dt.datetime) or _is_time(expires):
        return None
    return f"expires_at must be epoch seconds (a finite number), got {type(expires).__name__}"


def _extra_problem(extra: object) -> str | None:
    if not isinstance(extra, Mapping):
        return f"extra must be a mapping, got {type(extra).__name__}"
    try:
        json.dumps(dict(cast("Mapping[str, object]", extra)), allow_nan=False)
    except (TypeError, ValueError) as error:
        return f"extra must hold JSON values only ({type(error).__name__})"
    return None


class Record(NamedTuple):
    """What a store keeps for a key: the generation in plain, and the encoded credential."""

    generation: int
    data: bytes


class Codec(Protocol):
    """Turns the bytes of a record into what is stored, and back: encryption at rest.

    `decode` raises (any exception) for bytes it cannot decode, such as a record encrypted
    with another key; the record is then reported as corrupt.
    """

    def encode(self, data: bytes, /) -> bytes:
        """The bytes to store for `data`."""
        ...

    def decode(self, data: bytes, /) -> bytes:
        """The bytes `encode` was given."""
        ...


def encode(credential: Credential, generation: int, codec: Codec | None) -> Record:
    """The record to store for `credential` as generation `generation`."""
    document = {
        "format": _FORMAT,
        "access_token": credential.access_token,
        "refresh_token": credential.refresh_token,
        "expires_at": credential.expires_at,
        "extra": dict(credential.extra),
    }
    data = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    return Record(generation, data if codec is None else codec.encode(data))


def decode(record: Record, codec: Codec | None) -> Credential:
    """The credential a record holds, with the record's generation.

    Raises:
        ValueError: The record is not one `encode` wrote (with this codec); the message says
            what is wrong and never quotes the record.

    """
    try:
        data = record.data if codec is None else codec.decode(record.data)
    except Exception as error:  # noqa: BLE001 - any codec failure means the same to us
        msg = f"the codec cannot decode it ({type(error).__name__}): written with another key?"
        raise ValueError(msg) from None
    try:
        document = json.loads(data)
    except ValueError:
        raise ValueError("it is not JSON: written without a codec, or by something else") from None
    fields = cast("dict[str, Any]", document) if isinstance(document, dict) else {}
    access, refresh = fields.get("access_token"), fields.get("refresh_token")
    expires, extra = fields.get("expires_at"), fields.get("extra", {})
    if not (
        fields.get("format") == _FORMAT
        and isinstance(access, str)
        and (refresh is None or isinstance(refresh, str))
        and (expires is None or _is_time(expires))
        and isinstance(extra, dict)
    ):
        raise ValueError("its fields are not those of a credential record")
    return Credential(
        access,
        refresh,
        None if expires is None else float(cast("float", expires)),
        cast("dict[str, Any]", extra),
        record.generation,
    )


GENERATION_DIGITS: Final = 19
"""The most digits a stored generation has (it counts writes: 64 bits are plenty); more is a
corrupt record, not a number to parse (Python refuses to parse thousands of digits)."""


def is_generation(text: bytes) -> bool:
    """True for the text of a generation a store wrote: ASCII digits, not too many."""
    return 0 < len(text) <= GENERATION_DIGITS and text.isdigit()


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def newer(candidate: Credential | None, than: Credential | None) -> bool:
    """True when `candidate` is a later record than `than` (anything beats nothing)."""
    return candidate is not None and (than is None or candidate.generation > than.generation)


def newest(*credentials: Credential | None) -> Credential | None:
    """The credential with the highest generation; the first of equals; None for none."""
    best: Credential | None = None
    for each in credentials:
        if newer(each, best):
            best = each
    return best


def is_invalid_grant(error: BaseException) -> bool:
    """True when `fetch` failed because the identity provider refused the refresh token.

    OAuth says so with the error code `invalid_grant` (RFC 6749, 5.2) in a 400 response. Token
    clients report it in different places: the message, a `body` or `error` attribute, the
    text of an attached `response`; exception chains and groups are walked (cycle-safe).
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        each = pending.pop()
        if each is None or id(each) in seen:
            continue
        seen.add(id(each))
        if any("invalid_grant" in text for text in _texts(each)):
            return True
        pending += (each.__cause__, each.__context__)
        if isinstance(each, BaseExceptionGroup):
            pending += cast("BaseExceptionGroup[BaseException]", each).exceptions
    return False


def _texts(error: BaseException) -> list[str]:
    """The places an error may carry an OAuth error code, as text; never raises."""
    texts: list[str] = []
    places: tuple[Callable[[], object], ...] = (
        lambda: error,
        lambda: getattr(error, "body", ""),
        lambda: getattr(error, "error", ""),
        lambda: getattr(getattr(error, "response", None), "text", ""),
    )
    for place in places:
        try:
            texts.append(str(place()))
        except Exception:  # noqa: BLE001, S112 - a broken attribute says nothing
            continue
    return texts
