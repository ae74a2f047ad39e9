"""`is_unauthorized_error`: whether an error reports credentials that a refresh can fix.

Structure is read first (statuses, error codes, bodies, chained errors, groups); message text
only where no structure settles the question, and only phrases that mean an HTTP 401 or a
credential problem. An error that wraps another and hides it is judged by what it wraps; the
dialects (`_kinds/dialects/`) name such wrappers. Nothing here performs I/O or awaits, and
nothing raises.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Final, cast

from ._kinds._tables import TABLES

__all__ = ["StatusPredicate", "field_of", "is_unauthorized_error", "status_of"]

_STATUS_NAMES: Final = ("status_code", "status", "http_status", "code")
_CODE_NAMES: Final = ("type", "code", "error_code")
# Error codes and types that name rejected or expired credentials.
_AUTH_CODES: Final = frozenset(
    {
        "authentication_error",
        "authenticationerror",
        "invalid_api_key",
        "invalid_token",
        "token_expired",
        "expired_token",
        "unauthorized",
        "unauthenticated",
        "401",
    }
)
# Error codes and types that name a failure a credential refresh cannot fix. Like an error
# status, one settles the question before any text is read: an "Authentication service
# unavailable" with a `server_error` code is a server error. Envelope words such as `error` and
# `invalid_request_error`, which providers send with 401s too, are not among them.
_OTHER_CODES: Final = frozenset(
    {
        "server_error",
        "internal_error",
        "internal_server_error",
        "api_error",
        "overloaded_error",
        "service_unavailable",
        "timeout",
        "rate_limit_error",
        "rate_limit_exceeded",
        "insufficient_quota",
        "permission_error",
        "permission_denied",
        "forbidden",
        "not_found_error",
    }
)
# Words that put an error out of reach of a credential refresh, checked before the positives:
# a 403 means the credentials are valid but not allowed, a 407 concerns the proxy's credentials.
_NOT_OURS: Final = re.compile(r"\b40[37]\b|forbidden|proxy[ -]?auth")
# Phrases that mean an HTTP 401 or a credential problem, matched in lower case. A bare "401" is
# no status (`KeyError(401)`, "row 401 missing"): it counts after a word that makes it one.
# "Authentication" alone is no failure ("authentication service unavailable"): it counts with
# a word that says it failed. docs/howto/custom-classifier.md lists them for users.
_UNAUTHORIZED_TEXT: Final = re.compile(
    r"\b(?:http(?:/[\d.]+)?|(?:http[ _]?)?status(?:[ _]?code)?|(?:error[ _]?)?code|error|response)"
    r"\W{0,3}401\b"
    r"|unauthori[sz]ed|unauthenticated"
    r"|authenticat(?:ion|e)[ _]?(?:failed|failure|fails|error|required|rejected|denied)"
    r"|token_expired|invalid_api_key|invalid_token"
    r"|invalid (?:x-)?api[ -]?key|incorrect api key|invalid credentials?\b"
    r"|token (?:has |is )?expired|expired (?:access |oauth |bearer |auth )?token"
)
# Where error objects and bodies nest the error that explains them.
_NESTED_NAMES: Final = ("error", "body", "detail")
# How far the classifier walks into nested errors, chains and groups before it gives up: deep
# enough for any real error, small enough that a hostile object cannot make it slow.
_MAX_NODES: Final = 64
# Errors that wrap another and hide it, by class name, and the fields that hold what they wrap:
# the dialects know them (LiteLLM's `MidStreamFallbackError`). Any other error's own status wins
# over what it was raised from.
_WRAPPERS: Final = dict(TABLES.error_wrappers)
_MISSING: Final = object()


def field_of(value: object, name: str) -> object:
    """Read `name` as a key of a mapping or an attribute of anything else; None when absent."""
    if isinstance(value, Mapping):
        fields: Mapping[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
        return fields.get(name)
    cls = type(value)
    if hasattr(cls, "__pydantic_fields__"):
        # A missed getattr raises inside pydantic; its fields live in the instance dict.
        found = vars(value).get(name, _MISSING)
        if found is not _MISSING:
            return found
        extra = getattr(value, "__pydantic_extra__", None)
        if extra and name in extra:
            return extra[name]
        if not _on_class(cast("Hashable", cls), name):
            return None
    return getattr(value, name, None)


@functools.lru_cache(maxsize=4096)
def _on_class(cls: Hashable, name: str) -> bool:
    """Whether `cls` itself defines `name` (a property, say), remembered per class and name."""
    return inspect.getattr_static(cast("type", cls), name, _MISSING) is not _MISSING


class _Walk:
    """One classification: the nodes already visited, so cycles and huge graphs end."""

    __slots__ = ("budget", "seen")

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.budget = _MAX_NODES

    def enter(self, value: object) -> bool:
        key = id(value)
        if key in self.seen or self.budget <= 0:
            return False
        self.seen.add(key)
        self.budget -= 1
        return True

    def verdict(self, value: object) -> bool | None:
        """Return True or False when `value` settles the question, None when it says nothing."""
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("utf-8", "replace")
        if isinstance(value, str):
            return _text_verdict(value)
        if isinstance(value, int):
            return _status_verdict(value)
        if value is None or not self.enter(value):
            return None
        if isinstance(value, BaseException):
            wrapped = _WRAPPERS.get(type(value).__name__)
            if wrapped is not None:
                return self._wrapped_verdict(value, wrapped)
        found = self._fields_verdict(value)
        if found is None and isinstance(value, BaseException):
            return self._exception_verdict(value)
        return found

    def _fields_verdict(self, value: object) -> bool | None:
        # Mappings and objects are read alike: SDK errors carry the same names as attributes
        # (`status_code`, `type`, `code`, `body`) that JSON error bodies carry as keys.
        for name in _STATUS_NAMES:
            found = _status_verdict(field_of(value, name))
            if found is not None:
                return found
        found = _status_verdict(field_of(field_of(value, "response"), "status_code"))
        if found is not None:
            return found
        codes = {_code(field_of(value, name)) for name in _CODE_NAMES}
        if not _AUTH_CODES.isdisjoint(codes):
            return True
        if not _OTHER_CODES.isdisjoint(codes):
            return False
        for name in _NESTED_NAMES:
            found = self.verdict(field_of(value, name))
            if found is not None:
                return found
        message = field_of(value, "message")
        return _text_verdict(message) if isinstance(message, str) else None

    def _exception_verdict(self, error: BaseException) -> bool | None:
        if isinstance(error, BaseExceptionGroup):
            group = cast("BaseExceptionGroup[BaseException]", error)
            return self._any_verdict(group.exceptions)
        found = _text_verdict(str(error))
        if found is None:
            found = self._any_verdict(self._links(error))
        return found

    def _wrapped_verdict(self, error: BaseException, fields: tuple[str, ...]) -> bool | None:
        """A wrapper that hides its cause: what it wraps, never its own status or message."""
        held = tuple(field_of(error, name) for name in fields)
        return self._any_verdict((*held, *self._links(error)))

    @staticmethod
    def _links(error: BaseException) -> tuple[object, object]:
        # `raise ... from` hides the context: an error raised while handling another is only
        # linked to it by accident, and only the cause counts then.
        return error.__cause__, None if error.__suppress_context__ else error.__context__

    def _any_verdict(self, values: tuple[object, ...]) -> bool | None:
        verdicts = [self.verdict(each) for each in values]
        if True in verdicts:
            return True
        return False if False in verdicts else None


def _status_verdict(status: object) -> bool | None:
    # Only error statuses settle anything: Anthropic reports a mid-stream error event with the
    # 200 of the stream it arrived on, and its body still has to be read.
    if isinstance(status, str) and len(status) == 3 and status.isdecimal():
        # isdecimal, not isdigit: int() rejects digits such as "²", and a raise here would
        # discard the whole verdict. Three characters: every HTTP status, and no huge ints.
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int):
        return None
    if status == 401:
        return True
    return False if 400 <= status <= 599 else None


def _code(code: object) -> str | None:
    return code.strip().lower() if isinstance(code, str) else None


def _text_verdict(text: str) -> bool | None:
    lowered = text.lower()
    if _NOT_OURS.search(lowered):
        return False
    return True if _UNAUTHORIZED_TEXT.search(lowered) else None


def status_of(value: object) -> int | None:
    """The HTTP status an error reports in its own fields, or None; never raises.

    Reads `status_code`, `status`, `http_status` and `code` (as int or three-digit text) of an
    object or mapping, then `response.status_code`. Unlike `is_unauthorized_error` it reads no
    body, message or chained error: it is for opting further statuses in, such as a 403 that a
    provider sends for an expired token.
    """
    try:
        for holder in (value, field_of(value, "response")):
            if holder is None:
                continue
            for name in _STATUS_NAMES:
                status = field_of(holder, name)
                if isinstance(status, str) and len(status) == 3 and status.isdecimal():
                    status = int(status)
                if isinstance(status, int) and not isinstance(status, bool):
                    return status
    except Exception:  # noqa: BLE001 - as is_unauthorized_error: a classifier never raises
        return None
    return None


class StatusPredicate:
    """`is_unauthorized` extended with more HTTP statuses; picklable, unlike a closure."""

    __slots__ = ("base", "statuses")

    def __init__(self, base: Callable[[object], bool], statuses: frozenset[int]) -> None:
        self.base = base
        self.statuses = statuses

    def __call__(self, value: object) -> bool:
        return self.base(value) or status_of(value) in self.statuses

    def __reduce__(self) -> tuple[Any, ...]:
        return StatusPredicate, (self.base, self.statuses)


def is_unauthorized_error(value: object) -> bool:
    """Tell whether `value` reports rejected credentials, the kind that a refresh can fix.

    Structure is read first: status attributes (`status_code`, `status`, `code`,
    `http_status`, `response.status_code`), error codes and bodies such as
    `{"error": {"type": "authentication_error"}}`, then the exception's cause, context and, for
    exception groups, members. An error code that names another failure (`server_error`,
    `overloaded_error`, `rate_limit_exceeded`, ...) settles it as an error status does. Message
    text is the fallback, read only where nothing above settles the question, and only for
    phrases that mean an HTTP 401 (`HTTP 401`, `Error code: 401`, `status=401`, `Unauthorized`)
    or a credential problem (`invalid API key`, `token expired`, `authentication failed`). A
    403, `Forbidden` and proxy authentication (407) are not unauthorized: new provider
    credentials cannot fix them. An error's own status outranks the errors it was raised from,
    except for wrappers known to hide their cause (LiteLLM's `MidStreamFallbackError`, whose
    500 or 503 stands for whatever failed mid-stream): those are judged by what they wrap.

    Args:
        value: An exception, an error object or mapping, a status code, or a message.

    Returns:
        True when `value` is a 401 or says so; False for anything else, including values that
        raise while being inspected. It never raises itself.

    Example:
        >>> is_unauthorized_error("status=401 Unauthorized")
        True
        >>> is_unauthorized_error({"error": {"type": "authentication_error"}})
        True
        >>> is_unauthorized_error(RuntimeError("rate limited"))
        False

    """
    try:
        if isinstance(value, BaseException):
            # The common case, an SDK error carrying an HTTP error status, settled at once
            # (the walk below would find the same first): every caller of a herd asks this.
            status = getattr(value, "status_code", None)
            if (
                type(status) is int
                and 400 <= status <= 599
                and type(value).__name__ not in _WRAPPERS
            ):
                return status == 401
        return _Walk().verdict(value) is True
    except Exception:  # noqa: BLE001 - a classifier that raises would turn a 401 into a crash
        return False
