"""What the library tells its host: typed events, its own errors, and redaction.

Events go to the `on_event` hook of `refresh_on_401`; the same facts go to the standard
`refresh_middleware` logger. Neither ever carries a secret: events name provider *types*, never
their reprs, and error messages pass through `redact` first.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from typing import Final, Literal

__all__ = [
    "ADVISORY",
    "MANDATORY",
    "REDACTED",
    "UNAUTHORIZED",
    "Adopted",
    "CallRetried",
    "Event",
    "FleetEvent",
    "Granted",
    "LockWaited",
    "NotReplayableError",
    "Observed",
    "ReentrantRefreshError",
    "RefreshCooldownError",
    "RefreshError",
    "RefreshFailed",
    "RefreshStarted",
    "RefreshSucceeded",
    "RefreshTimedOut",
    "RefreshTimeoutError",
    "RetrySkipped",
    "Trigger",
    "UnrelatedReplacement",
    "emit",
    "logger",
    "observe",
    "observers",
    "redact",
]

logger: Final = logging.getLogger("refresh_middleware")
# A library leaves output to its host: without logging configured, our warnings stay silent.
logger.addHandler(logging.NullHandler())

# --------------------------------------------------------------------------------------------------
# redaction

REDACTED: Final = "[REDACTED]"

# Authentication schemes shown in the clear before a redacted credential (`DPoP [REDACTED]`):
# the IANA registry's and the common vendor ones. A first word that is not one of them may be
# the secret itself, so it goes with the rest.
_SCHEMES: Final = (
    r"(?:bearer|basic|digest|dpop|gnap|hoba|mutual|negotiate|ntlm|oauth|privatetoken|concealed"
    r"|scram-sha-1|scram-sha-256|vapid|token|ssws|key|api-?key|mac|hawk|aws4-hmac-sha256"
    r"|sharedkey|geniekey|jwt|splunk)"
)
# One credential: a token68, or `name="value"` / `name=value` auth-parameters separated by commas.
_VALUE: Final = r"""[^\s"',;)}&]+"""
_PARAM: Final = r"""[\w-]+=(?:"[^"\n]*"|[^\s"',;)}&]*)"""
_CREDENTIAL: Final = rf"(?:{_PARAM}|{_VALUE})(?:\s*,\s*{_PARAM})*"
# A name's separator; a quoted value runs to its closing quote, whatever it holds.
_SEPARATOR: Final = r"""["']?\s*[:=]\s*(?P<quote>["'])?"""
_QUOTED: Final = r"""[^"'\n]*"""

_SECRETS: Final = (
    # Authorization headers: name, separator and a known scheme stay. Unquoted, any other first
    # word is taken with the word after it, as it may be the secret (`Authorization: <key> no`).
    re.compile(
        rf"(?i)\b(?P<keep>(?:proxy-)?authorization{_SEPARATOR})(?P<scheme>{_SCHEMES}\s+)?"
        rf"(?(quote){_QUOTED}|(?(scheme){_CREDENTIAL}|(?:[A-Za-z][\w.~+/=-]*\s+)?{_CREDENTIAL}))"
    ),
    # Headers, fields and query parameters that hold credentials: keep the name and a known
    # scheme, drop the value. Short names need a boundary before them (`key`, not `monkey`).
    re.compile(
        r"(?i)(?P<keep>(?:x-api-key|api[_-]?key|access[_-]?token|refresh[_-]?token|id[_-]?token"
        r"|client[_-]?secret|private[_-]?key|password|passwd|token|secret|credentials?"
        r"|(?<![A-Za-z0-9])(?:key|sig|signature|pwd|auth|apikey))"
        rf"{_SEPARATOR})(?P<scheme>{_SCHEMES}\s+)?(?(quote){_QUOTED}|{_CREDENTIAL})"
    ),
    # The password of a URL's user information: `https://user:<secret>@host`.
    re.compile(r"(?i)(?P<keep>(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s/@]+(?=@)"),
    re.compile(r"(?i)\b(bearer|basic|dpop|ssws)\s+[A-Za-z0-9._~+/=-]{6,}"),
    # Provider key shapes: OpenAI and Anthropic `sk-...`, Google `AIza...`, JWTs.
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"),
    # A JWT starts where a run of its characters starts: starting inside a run would rescan the
    # rest of it from every "eyJ", quadratic on hostile text.
    re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
)


def _replace(match: re.Match[str]) -> str:
    kept = match.groupdict()
    if "keep" in kept:  # a name and its separator, then the scheme if it is a known one
        return f"{kept['keep']}{kept.get('scheme') or ''}{REDACTED}"
    if match.re.groups:  # a scheme, then its credential
        return f"{match.group(1)} {REDACTED}"
    return REDACTED


def redact(text: str) -> str:
    """Remove credentials from `text`: header and field values, URL passwords, key shapes.

    Whatever the scheme, the credential goes; a known scheme word stays, so the text still
    says what was sent.

    Example:
        >>> redact("401 for Authorization: DPoP abcdef123456 (key sk-live-0123456789)")
        '401 for Authorization: DPoP [REDACTED] (key [REDACTED])'

    """
    for pattern in _SECRETS:
        text = pattern.sub(_replace, text)
    return text


def describe(error: BaseException) -> str:
    """`Type: message` of an error, redacted, for events and debug logs."""
    try:
        message = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break error handling
        message = "<unprintable>"
    return redact(f"{type(error).__name__}: {message}" if message else type(error).__name__)


# --------------------------------------------------------------------------------------------------
# errors


class RefreshError(Exception):
    """Base of the errors refresh_middleware raises or attaches on its own account."""


class RefreshTimeoutError(RefreshError, TimeoutError):
    """The refresh did not finish within `refresh_timeout` seconds."""


class RefreshCooldownError(RefreshError):
    """A refresh failed moments ago; the next is not tried until the cooldown has passed."""


class ReentrantRefreshError(RefreshError):
    """A refresh called the provider it refreshes, and that call met a 401 as well.

    Waiting for the refresh in progress would be waiting for itself: the inner call's 401 is
    raised at once, with this as the reason, and the refresh decides what to make of it.
    """


class NotReplayableError(RefreshError):
    """The call consumed a one-shot argument (an iterator), so it cannot be sent again."""


# --------------------------------------------------------------------------------------------------
# events


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """Base of the events sent to `on_event`.

    Attributes:
        provider: The provider's class name (never its repr, which may hold credentials).

    """

    provider: str


Trigger = Literal["401", "advisory", "mandatory"]
"""Why a refresh started: a 401, or the advisory or mandatory window before expiry.

Plain strings, so an event's repr and a host's comparison read as they always did."""

UNAUTHORIZED: Final[Trigger] = "401"
"""A call or stream met an unauthorized error."""
ADVISORY: Final[Trigger] = "advisory"
"""The credentials expire soon: refresh ahead, but give way to a refresh already running."""
MANDATORY: Final[Trigger] = "mandatory"
"""The credentials are about to lapse: refresh ahead, waiting for it if need be."""


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshStarted(Event):
    """A refresh of credential generation `generation` began.

    `trigger` is "401" for a refresh after an unauthorized error, or "advisory" / "mandatory"
    for a proactive refresh in that window before expiry.
    """

    generation: int
    trigger: Trigger = UNAUTHORIZED


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshSucceeded(Event):
    """A refresh finished; `shared_by` callers had asked for it by then."""

    generation: int
    duration: float
    shared_by: int


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshFailed(Event):
    """A refresh raised; `error` is its type and redacted message."""

    generation: int
    duration: float
    shared_by: int
    error: str


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshTimedOut(Event):
    """A refresh was abandoned after `timeout` seconds."""

    generation: int
    duration: float
    shared_by: int
    timeout: float


@dataclasses.dataclass(frozen=True, slots=True)
class CallRetried(Event):
    """A call or stream of `method` is being retried after a refresh."""

    method: str


@dataclasses.dataclass(frozen=True, slots=True)
class RetrySkipped(Event):
    """A 401 of `method` was not retried; `reason` says why.

    `error_type` is the class name of the error that stopped the retry (such as
    "RefreshTimeoutError" or "NotReplayableError"): a short, bounded name to count by.
    """

    method: str
    reason: str
    error_type: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class UnrelatedReplacement(Event):
    """`refresh` returned a `replacement` whose class is unrelated to the provider's.

    Neither class is a subclass of the other, yet it has the intercepted methods, so it was
    swapped in. That is usually a mistake (a raw SDK client returned where a provider class of
    your own was wrapped, say); sent, and logged as a warning, once per proxy.
    """

    replacement: str


def emit(hook: Callable[[Event], object] | None, event: Event) -> None:
    """Send `event` to the host's hook; a hook that raises is logged, never propagated."""
    if hook is None:
        return
    try:
        hook(event)
    except Exception as error:  # noqa: BLE001 - observability must not break a call
        logger.warning("refresh_middleware: the on_event hook raised %s", describe(error))


# --------------------------------------------------------------------------------------------------
# the fleet's events, and the process-wide observers (the OpenTelemetry bridge, `_otel`)


@dataclasses.dataclass(frozen=True, slots=True)
class FleetEvent:
    """Base of what a `SharedCredential` reports: `store` is the store's class name."""

    store: str


@dataclasses.dataclass(frozen=True, slots=True)
class LockWaited(FleetEvent):
    """A renewal waited `duration` seconds for the store's lock.

    `outcome` is "acquired", "adopted" (its holder wrote a newer record meanwhile) or "timeout".
    """

    duration: float
    outcome: Literal["acquired", "adopted", "timeout"]


@dataclasses.dataclass(frozen=True, slots=True)
class Granted(FleetEvent):
    """`fetch` returned and generation `generation` was written, `duration` seconds after."""

    generation: int
    duration: float


@dataclasses.dataclass(frozen=True, slots=True)
class Adopted(FleetEvent):
    """A renewal took generation `generation`, which another process (or holder) wrote."""

    generation: int


observers: Final[list[Callable[[Event | FleetEvent], object]]] = []
"""Process-wide listeners to every event, beside each proxy's own `on_event` hook.

Empty unless something registered (`_otel`, when opentelemetry-api is installed): then the
options of each proxy route their events here too (`Observed`), and nothing else changes."""


def observe(event: Event | FleetEvent) -> None:
    """Send `event` to the process-wide observers; one that raises is logged, never propagated."""
    for observer in observers:
        try:
            observer(event)
        except Exception as error:  # noqa: BLE001 - observability must not break a call
            logger.debug("refresh_middleware: an event observer raised %s", describe(error))


@dataclasses.dataclass(frozen=True, slots=True)
class Observed:
    """An `on_event` hook (or None) that tells the process-wide observers first.

    Set in place of the host's hook when observers exist at decoration time; `base` is the
    hook as the host gave it (what `Options.given` and pickling see).
    """

    base: Callable[[Event], object] | None

    def __call__(self, event: Event) -> None:
        """Tell the observers, then the host's hook (whose errors `emit` logs)."""
        observe(event)
        if self.base is not None:
            self.base(event)
