"""OpenTelemetry metrics and spans, built from the events the library already emits.

A library that instruments itself takes its meter and tracer from the global providers the
application configures, and depends on `opentelemetry-api` alone (the `otel` extra): nothing
to call here. With the API absent nothing registers, and proxies behave as they always did.

Only refreshes, retries and the fleet's renewals emit events, so a call or stream chunk that
meets no 401 does no telemetry work at all. The API is never imported when refresh_middleware
is: events are recorded once the application has loaded OpenTelemetry (configuring its
providers does), and the instruments are made at the first such event, from the global
providers (whose stand-ins follow an SDK set later). Before that, the providers could only be
the API's no-ops: nothing is lost, and no refresh pays for the API's import.

Attributes name provider and store *classes*, triggers, outcomes and error types: never a
credential, a message or a key. `REFRESH_MIDDLEWARE_OTEL=off` in the environment turns it off.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ._events import (
    CallRetried,
    Event,
    FleetEvent,
    Granted,
    LockWaited,
    RefreshFailed,
    RefreshStarted,
    RefreshSucceeded,
    RefreshTimedOut,
    RetrySkipped,
    Trigger,
    observers,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram
    from opentelemetry.trace import Span, Tracer

__all__ = ["OPT_OUT", "SCOPE", "Instruments", "install", "instruments", "observe"]

SCOPE: Final = "refresh_middleware"
"""The instrumentation scope: the name of the meter and the tracer."""

OPT_OUT: Final = "REFRESH_MIDDLEWARE_OTEL"
"""The environment variable that turns the bridge off when set to off, false, no or 0."""

_OFF: Final = frozenset({"off", "false", "no", "0"})

# Bucket boundaries for durations in seconds: a refresh takes tens of milliseconds to seconds,
# a lock wait from nothing up to a holder's whole fetch.
_SECONDS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Instruments(NamedTuple):
    """The meter's instruments and the tracer, made once, at the first event."""

    unauthorized: Counter
    refreshes: Counter
    refresh_duration: Histogram
    retries: Counter
    skipped_retries: Counter
    lock_waits: Counter
    lock_wait_duration: Histogram
    grants: Counter
    adoptions: Counter
    tracer: Tracer


@functools.cache
def instruments() -> Instruments | None:
    """The instruments, from the global providers; None when the API cannot be imported."""
    try:
        from opentelemetry import metrics, trace  # noqa: PLC0415 - loaded at the first event
    except ImportError:
        return None
    meter = metrics.get_meter(SCOPE)
    counter, histogram = meter.create_counter, meter.create_histogram

    def duration(name: str, description: str) -> Histogram:
        return histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=_SECONDS
        )

    return Instruments(
        unauthorized=counter(
            f"{SCOPE}.unauthorized",
            unit="{error}",
            description="Unauthorized errors (401) sent to a refresh.",
        ),
        refreshes=counter(
            f"{SCOPE}.refreshes",
            unit="{refresh}",
            description="Refreshes of provider credentials, by trigger and outcome.",
        ),
        refresh_duration=duration(
            f"{SCOPE}.refresh.duration", "How long refreshes of provider credentials took."
        ),
        retries=counter(
            f"{SCOPE}.retries", unit="{retry}", description="Calls and streams retried."
        ),
        skipped_retries=counter(
            f"{SCOPE}.skipped_retries",
            unit="{retry}",
            description="401s not retried, by the type of the error that stopped them.",
        ),
        lock_waits=counter(
            f"{SCOPE}.lock.waits",
            unit="{wait}",
            description="Waits for a shared credential's store lock, by outcome.",
        ),
        lock_wait_duration=duration(
            f"{SCOPE}.lock.wait.duration", "How long renewals waited for the store lock."
        ),
        grants=counter(
            f"{SCOPE}.fleet.grants",
            unit="{grant}",
            description="Credentials fetched from the identity provider and stored.",
        ),
        adoptions=counter(
            f"{SCOPE}.fleet.adoptions",
            unit="{adoption}",
            description="Renewals that took a record another process had written.",
        ),
        tracer=trace.get_tracer(SCOPE),
    )


class _Pending(NamedTuple):
    """A refresh that started: its span, its trigger and when it began (epoch nanoseconds)."""

    span: Span
    trigger: Trigger
    started: int


class _Refreshes:
    """Refreshes under way, by provider class and generation, until their end event."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._pending: dict[tuple[str, int], list[_Pending]] = {}

    def start(self, key: tuple[str, int], pending: _Pending) -> None:
        with self._guard:
            self._pending.setdefault(key, []).append(pending)

    def end(self, key: tuple[str, int]) -> _Pending | None:
        with self._guard:
            waiting = self._pending.get(key)
            if not waiting:
                return None
            pending = waiting.pop(0)
            if not waiting:
                del self._pending[key]
            return pending


_refreshes: Final = _Refreshes()

_OUTCOMES: Final = {
    RefreshSucceeded: "success",
    RefreshFailed: "failure",
    RefreshTimedOut: "timeout",
}


def observe(event: Event | FleetEvent) -> None:
    """Turn one event into metrics and spans (the process-wide observer)."""
    if os.environ.get(OPT_OUT, "").strip().lower() in _OFF or not _loaded():
        return
    bridge = instruments()
    if bridge is None:
        return
    if isinstance(event, FleetEvent):
        _fleet(bridge, event)
        return
    provider = {f"{SCOPE}.provider": event.provider}
    if isinstance(event, RefreshStarted):
        _started(bridge, event, provider)
    elif isinstance(event, RefreshSucceeded | RefreshFailed | RefreshTimedOut):
        _ended(bridge, event, provider)
    elif isinstance(event, CallRetried):
        bridge.unauthorized.add(1, provider)
        bridge.retries.add(1, provider)
    elif isinstance(event, RetrySkipped):
        bridge.unauthorized.add(1, provider)
        bridge.skipped_retries.add(1, {**provider, "error.type": event.error_type or "_OTHER"})


def _loaded() -> bool:
    """Whether the application has loaded OpenTelemetry's API (to configure it, or to use it).

    Until it has, its global providers are the API's no-ops, so there is nothing to record;
    and importing the API (its context runtime is found through entry points) can take a
    noticeable while, which a first refresh, on an event loop, must not pay.
    """
    return "opentelemetry.metrics" in sys.modules or "opentelemetry.trace" in sys.modules


def _started(bridge: Instruments, event: RefreshStarted, provider: dict[str, Any]) -> None:
    attributes = {
        **provider,
        f"{SCOPE}.trigger": event.trigger,
        f"{SCOPE}.generation": event.generation,
    }
    started = time.time_ns()
    span = bridge.tracer.start_span(f"{SCOPE}.refresh", attributes=attributes, start_time=started)
    _refreshes.start((event.provider, event.generation), _Pending(span, event.trigger, started))


def _ended(
    bridge: Instruments,
    event: RefreshSucceeded | RefreshFailed | RefreshTimedOut,
    provider: dict[str, Any],
) -> None:
    from opentelemetry.trace import StatusCode  # noqa: PLC0415 - imported by `instruments`

    outcome = _OUTCOMES[type(event)]
    pending = _refreshes.end((event.provider, event.generation))
    attributes = {**provider, f"{SCOPE}.outcome": outcome}
    if pending is not None:
        attributes[f"{SCOPE}.trigger"] = pending.trigger
    bridge.refreshes.add(1, attributes)
    bridge.refresh_duration.record(event.duration, attributes)
    if pending is None:  # begun before the bridge was on: counted, but no span to end
        return
    span = pending.span
    span.set_attribute(f"{SCOPE}.outcome", outcome)
    span.set_attribute(f"{SCOPE}.shared_by", event.shared_by)
    if not isinstance(event, RefreshSucceeded):
        # The type alone: a message from a token endpoint may quote what it was sent.
        error_type = "RefreshTimeoutError" if isinstance(event, RefreshTimedOut) else event.error
        span.set_attribute("error.type", error_type.split(":", 1)[0])
        span.set_status(StatusCode.ERROR)
    # Ended on the refresh's own clock (trio's, in a test with a virtual clock), as its duration.
    span.end(end_time=pending.started + round(event.duration * 1e9))


def _fleet(bridge: Instruments, event: FleetEvent) -> None:
    store = {f"{SCOPE}.store": event.store}
    if isinstance(event, LockWaited):
        attributes = {**store, f"{SCOPE}.outcome": event.outcome}
        bridge.lock_waits.add(1, attributes)
        bridge.lock_wait_duration.record(event.duration, attributes)
    elif isinstance(event, Granted):
        bridge.grants.add(1, store)
    else:  # Adopted, the last of the fleet's events
        bridge.adoptions.add(1, store)


def install() -> bool:
    """Observe every event when opentelemetry-api is installed; True when registered.

    Only the presence of the package is checked here (no import): the API is loaded at the
    first event. Without it, nothing registers and proxies keep their hooks as given.
    """
    if observe in observers:
        return True
    if importlib.util.find_spec("opentelemetry") is None:
        return False
    observers.append(observe)
    return True
