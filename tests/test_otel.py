"""OpenTelemetry: metrics and spans from the library's events, read back through the SDK.

The SDK's providers are set once for the session (OpenTelemetry allows one global provider per
process); the metric reader keeps delta temporality, so each test reads only its own data points.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from conftest import DONE, Harness, Script, Unauthorized, text
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from refresh_middleware import _events, _otel, refresh_on_401
from refresh_middleware.events import (
    CallRetried,
    RefreshFailed,
    RefreshStarted,
    RefreshSucceeded,
    RefreshTimedOut,
    RetrySkipped,
    UnrelatedReplacement,
)
from refresh_middleware.shared import Credential, MemoryStore, SharedCredential

SUCCESS = {"type": "message", "content": "ok"}
DELTA = AggregationTemporality.DELTA
_READER = InMemoryMetricReader(preferred_temporality={Counter: DELTA, Histogram: DELTA})
_EXPORTER = InMemorySpanExporter()


class Telemetry:
    """What the SDK recorded since the test began: data points by metric name, and spans."""

    def __init__(self) -> None:
        self.collected: dict[str, list[tuple[dict[str, Any], float]]] = defaultdict(list)

    def points(self) -> dict[str, list[tuple[dict[str, Any], float]]]:
        """Each metric's data points as (attributes, value); a histogram's value is its count.

        A delta reader hands each data point out once: they are kept here as they come.
        """
        data = _READER.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        count = point.count if value is None else value  # type: ignore[union-attr]
                        if count:
                            self.collected[metric.name].append(
                                (dict(point.attributes or {}), count)
                            )
        return self.collected

    def total(self, name: str) -> float:
        return sum(value for _, value in self.points().get(name, []))

    def spans(self) -> tuple[ReadableSpan, ...]:
        return _EXPORTER.get_finished_spans()


@pytest.fixture(scope="session")
def _providers() -> None:
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(tracer_provider)


@pytest.fixture
def telemetry(_providers: None) -> Telemetry:
    _READER.get_metrics_data()  # drains what earlier tests recorded
    _EXPORTER.clear()
    return Telemetry()


async def herd(harness: Harness, size: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(size):
            nursery.start_soon(harness.chat)


def expiring_soon(script: Script, lifetime: float) -> Any:
    """A provider whose token expires `lifetime` seconds from now on trio's clock."""

    class Expiring:
        def __init__(self, expires_at: float) -> None:
            self.expires_at = expires_at

        async def chat(self, request: str) -> str:
            return request

    async def rebuild(stale: Expiring) -> Expiring:
        script.refreshes += 1
        await trio.sleep(1)
        return Expiring(trio.current_time() + 600)

    return refresh_on_401(
        Expiring(trio.current_time() + lifetime),
        refresh=rebuild,
        expires_at=lambda provider: provider.expires_at,
        clock=trio.current_time,
    )


# --------------------------------------------------------------------------------------------------
# the herd, the windows, the fleet


async def test_a_herd_counts_twenty_401s(telemetry: Telemetry) -> None:
    """Twenty callers on an expired token: twenty 401s counted, each retried."""
    harness = Harness("instance", "async")
    harness.script.valid_from = 1
    harness.script.chats.extend([SUCCESS] * 20)
    await herd(harness, 20)

    assert (20, 20) == (
        telemetry.total("refresh_middleware.unauthorized"),
        telemetry.total("refresh_middleware.retries"),
    )


async def test_a_herd_counts_one_refresh_by_trigger_and_outcome(telemetry: Telemetry) -> None:
    """Twenty callers on an expired token: one refresh, triggered by a 401, that succeeded."""
    harness = Harness("instance", "async")
    harness.script.valid_from = 1
    harness.script.chats.extend([SUCCESS] * 20)
    await herd(harness, 20)
    attributes = {
        "refresh_middleware.provider": "AsyncProvider",
        "refresh_middleware.trigger": "401",
        "refresh_middleware.outcome": "success",
    }

    points = telemetry.points()
    assert [(attributes, 1)] == points["refresh_middleware.refreshes"]
    assert [(attributes, 1)] == points["refresh_middleware.refresh.duration"]


async def test_a_herd_makes_one_refresh_span_with_its_trigger(telemetry: Telemetry) -> None:
    """The herd's refresh is one span carrying the stale generation, the trigger and the outcome."""
    harness = Harness("instance", "async")
    harness.script.valid_from = 1
    harness.script.chats.extend([SUCCESS] * 20)
    await herd(harness, 20)
    spans = telemetry.spans()

    assert ["refresh_middleware.refresh"] == [span.name for span in spans]
    assert {
        "refresh_middleware.provider": "AsyncProvider",
        "refresh_middleware.generation": 0,
        "refresh_middleware.trigger": "401",
        "refresh_middleware.outcome": "success",
        "refresh_middleware.shared_by": 20,
    } == dict(spans[0].attributes or {})


async def test_an_advisory_refresh_says_so(
    telemetry: Telemetry, autojump_clock: trio.testing.MockClock
) -> None:
    """A refresh ahead of expiry in the advisory window has the trigger advisory, with no 401."""
    script = Script()
    provider = expiring_soon(script, lifetime=100)  # advisory window: 120 s down to 30 s
    await provider.chat("hello")
    await trio.sleep(2)  # the refresh ahead runs beside the call

    points = telemetry.points()
    assert (1, 0) == (script.refreshes, telemetry.total("refresh_middleware.unauthorized"))
    assert ["advisory"] == [
        attributes["refresh_middleware.trigger"]
        for attributes, _ in points["refresh_middleware.refreshes"]
    ]
    assert ["advisory"] == [
        (span.attributes or {})["refresh_middleware.trigger"] for span in telemetry.spans()
    ]


async def test_the_span_lasts_as_long_as_the_refresh(
    telemetry: Telemetry, autojump_clock: trio.testing.MockClock
) -> None:
    """A refresh that took 1 s on the refresh's clock makes a span of 1 s."""
    provider = expiring_soon(Script(), lifetime=10)  # mandatory window: the caller waits
    await provider.chat("hello")
    (span,) = telemetry.spans()

    assert ("mandatory", 1_000_000_000) == (
        (span.attributes or {})["refresh_middleware.trigger"],
        (span.end_time or 0) - (span.start_time or 0),
    )


async def test_a_fleet_renewal_counts_one_grant_and_an_adoption(telemetry: Telemetry) -> None:
    """Two 'processes' renew one stale record: the first is granted it, the second adopts."""
    store = MemoryStore()

    async def fetch(current: Credential | None) -> Credential:
        return Credential("access-2", "refresh-2")

    first, second = (SharedCredential(store, key="acct", fetch=fetch) for _ in range(2))
    stale = await first.seed(Credential("access-1", "refresh-1"))
    await second.current()
    await first.renew(stale)
    await second.renew(stale)

    store_only = {"refresh_middleware.store": "MemoryStore"}
    acquired = {**store_only, "refresh_middleware.outcome": "acquired"}
    points = telemetry.points()
    assert [(store_only, 1)] == points["refresh_middleware.fleet.grants"]
    assert [(store_only, 1)] == points["refresh_middleware.fleet.adoptions"]
    assert [(acquired, 1)] == points["refresh_middleware.lock.waits"]
    assert [(acquired, 1)] == points["refresh_middleware.lock.wait.duration"]


# --------------------------------------------------------------------------------------------------
# what the attributes say, and what they never say


async def test_no_secret_reaches_metrics_or_spans(telemetry: Telemetry) -> None:
    """Tokens, keys and error messages appear in no attribute, span name or span event."""
    secret = "sk-live-SECRET0123456789"  # noqa: S105 - a fake, looked for in what is recorded
    harness = Harness("instance", "async")
    harness.script.valid_from = 1
    harness.script.refresh_error = OSError(f"token endpoint refused Authorization: {secret}")
    with pytest.raises(Unauthorized):
        await harness.chat()

    async def fetch(current: Credential | None) -> Credential:
        return Credential(f"{secret}-access", f"{secret}-refresh")

    shared = SharedCredential(MemoryStore(), key=f"{secret}-key", fetch=fetch)
    await shared.renew(await shared.seed(Credential(f"{secret}-old", f"{secret}-old-refresh")))

    said = [repr(telemetry.points())]
    for span in telemetry.spans():
        said += [span.name, repr(dict(span.attributes or {})), repr(span.status)]
        said += [f"{event.name} {dict(event.attributes or {})}" for event in span.events]
    assert ["OSError"] == [(span.attributes or {})["error.type"] for span in telemetry.spans()]
    assert [] == [text for text in said if "SECRET" in text]


def test_a_timed_out_refresh_is_an_error_span(telemetry: Telemetry) -> None:
    """A refresh that timed out ends its span in error, typed RefreshTimeoutError."""
    _otel.observe(RefreshStarted("Provider", 3, "mandatory"))
    _otel.observe(RefreshTimedOut("Provider", 3, 30.0, 2, 30.0))
    (span,) = telemetry.spans()

    assert ("timeout", "RefreshTimeoutError", "ERROR") == (
        (span.attributes or {})["refresh_middleware.outcome"],
        (span.attributes or {})["error.type"],
        span.status.status_code.name,
    )


def test_skipped_retries_are_counted_by_error_type(telemetry: Telemetry) -> None:
    """A 401 not retried counts as a 401 and a skipped retry, by its error's type."""
    _otel.observe(RetrySkipped("Provider", "chat", "the refresh did not finish", "TimeoutError"))
    _otel.observe(RetrySkipped("Provider", "chat", "a reason from elsewhere"))

    points = telemetry.points()
    assert (2, ["TimeoutError", "_OTHER"]) == (
        telemetry.total("refresh_middleware.unauthorized"),
        sorted(point["error.type"] for point, _ in points["refresh_middleware.skipped_retries"]),
    )


async def test_a_refresh_skipped_for_an_unreplayable_call_names_its_type(
    telemetry: Telemetry,
) -> None:
    """The proxy's RetrySkipped carries the type of what stopped the retry."""
    events: list[object] = []
    harness = Harness("instance", "async", on_event=events.append)
    harness.script.valid_from = 1
    with pytest.raises(Unauthorized):
        await harness.provider.chat(iter(["one-shot"]))

    assert ["NotReplayableError"] == [
        event.error_type for event in events if isinstance(event, RetrySkipped)
    ]


def test_a_refresh_that_ended_unseen_is_counted_without_a_span(telemetry: Telemetry) -> None:
    """An end without its start (the bridge came on meanwhile) counts, with no trigger or span."""
    _otel.observe(RefreshSucceeded("Provider", 7, 0.5, 1))

    assert (
        [({"refresh_middleware.provider": "Provider", "refresh_middleware.outcome": "success"}, 1)],
        (),
    ) == (
        telemetry.points()["refresh_middleware.refreshes"],
        telemetry.spans(),
    )


def test_events_it_does_not_measure_record_nothing(telemetry: Telemetry) -> None:
    """An event with no metric of its own (an unrelated replacement) records nothing."""
    _otel.observe(UnrelatedReplacement("Provider", "Other"))

    assert ({}, ()) == (dict(telemetry.points()), telemetry.spans())


def test_concurrent_refreshes_of_one_generation_each_end_their_span(telemetry: Telemetry) -> None:
    """Two instances of one class refreshing the same generation end one span each."""
    _otel.observe(RefreshStarted("Provider", 0, "401"))
    _otel.observe(RefreshStarted("Provider", 0, "advisory"))
    _otel.observe(RefreshFailed("Provider", 0, 0.1, 1, "OSError: down"))
    _otel.observe(RefreshSucceeded("Provider", 0, 0.1, 1))

    assert [("401", "failure"), ("advisory", "success")] == [
        (
            (span.attributes or {})["refresh_middleware.trigger"],
            (span.attributes or {})["refresh_middleware.outcome"],
        )
        for span in telemetry.spans()
    ]


# --------------------------------------------------------------------------------------------------
# what it costs: nothing on the fast path, nothing without the API, nothing when turned off


class CountingDouble:
    """Stands for the instruments and the tracer: counts every use, whatever is asked of it."""

    def __init__(self) -> None:
        self.uses = 0

    def __getattr__(self, name: str) -> CountingDouble:
        self.uses += 1
        return self

    def __call__(self, *args: object, **kwargs: object) -> CountingDouble:
        self.uses += 1
        return self


async def test_the_fast_path_does_no_telemetry_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 calls and 1,000 stream chunks without a 401 reach no observer and no instrument."""
    double = CountingDouble()
    seen: list[object] = []
    monkeypatch.setattr(_otel, "instruments", double)
    _events.observers.append(seen.append)
    try:
        harness = Harness("instance", "async")
        harness.script.chats.extend([SUCCESS] * 1000)
        harness.script.streams.append([text("chunk")] * 1000 + [DONE])
        for _ in range(1000):
            await harness.chat()
        chunks = await harness.drain()
        fast = (len(chunks), len(seen), double.uses)
        harness.script.valid_from = 1  # and the 401 after them is seen, through the same double
        harness.script.chats.append(SUCCESS)
        await harness.chat()
    finally:
        _events.observers.remove(seen.append)

    assert (1001, 0, 0) == fast
    assert 0 < len(seen) <= double.uses


async def test_the_opt_out_records_nothing(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REFRESH_MIDDLEWARE_OTEL=off: a herd's 401s and refresh record no metric and no span."""
    monkeypatch.setenv("REFRESH_MIDDLEWARE_OTEL", "off")
    harness = Harness("instance", "async")
    harness.script.valid_from = 1
    harness.script.chats.extend([SUCCESS] * 5)
    await herd(harness, 5)

    assert (1, {}, ()) == (harness.script.refreshes, dict(telemetry.points()), telemetry.spans())


@contextlib.contextmanager
def without_the_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """As in a process without opentelemetry-api: yields whether the bridge registered."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    saved = list(_events.observers)
    _events.observers.clear()
    try:
        yield _otel.install()
    finally:
        _events.observers[:] = saved


def test_without_the_api_nothing_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    """With opentelemetry-api absent, no observer registers and a proxy keeps its hook as given."""
    with without_the_api(monkeypatch) as registered:
        harness = Harness("instance", "sync")
        harness.script.valid_from = 1
        harness.script.chats.append(SUCCESS)
        result = harness.run(harness.chat)  # a 401, a refresh and a retry, told to nobody
    options = harness.provider._self_core.options

    assert (False, SUCCESS, None) == (registered, result, options.on_event)


def test_without_the_api_a_failed_refresh_still_leaves_its_401(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no hook and no observer, a 401 whose refresh failed is raised with its note."""
    with without_the_api(monkeypatch):
        harness = Harness("instance", "sync")
        harness.script.valid_from = 1
        harness.script.refresh_error = OSError("auth server down")
        with pytest.raises(Unauthorized) as caught:
            harness.run(harness.chat)

    assert [
        "refresh_middleware: this 401 was not retried: refreshing credentials failed with OSError"
    ] == caught.value.__notes__


def test_installing_twice_registers_once() -> None:
    """The bridge observes each event once, however often it is installed."""
    assert (True, 1) == (_otel.install(), _events.observers.count(_otel.observe))


def test_an_api_that_fails_to_import_turns_the_bridge_off(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An opentelemetry package without a working API: events are let through, unrecorded."""
    import opentelemetry

    monkeypatch.delattr(opentelemetry, "metrics")
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)
    _otel.instruments.cache_clear()
    try:
        _otel.observe(RefreshStarted("Provider", 0, "401"))
        _otel.observe(CallRetried("Provider", "chat"))
    finally:
        _otel.instruments.cache_clear()

    assert ({}, ()) == (dict(telemetry.points()), telemetry.spans())


def test_nothing_is_recorded_until_the_application_loads_opentelemetry(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the API unloaded (so unconfigured), events are let through and import nothing."""
    for name in ("opentelemetry.metrics", "opentelemetry.trace"):
        monkeypatch.delitem(sys.modules, name)
    _otel.observe(RefreshStarted("Provider", 0, "401"))
    _otel.observe(RefreshSucceeded("Provider", 0, 0.1, 1))
    loaded = "opentelemetry.metrics" in sys.modules

    assert (False, {}, ()) == (loaded, dict(telemetry.points()), telemetry.spans())


def test_an_observer_that_raises_breaks_no_call(caplog: pytest.LogCaptureFixture) -> None:
    """An observer's error is logged at debug level; the call and its retry go on."""

    def broken(event: object) -> None:
        raise ValueError("observer bug")

    harness = Harness("instance", "sync")
    harness.script.valid_from = 1
    harness.script.chats.append(SUCCESS)
    _events.observers.append(broken)
    try:
        with caplog.at_level("DEBUG", logger="refresh_middleware"):
            result = harness.run(harness.chat)
    finally:
        _events.observers.remove(broken)

    assert SUCCESS == result
    assert "an event observer raised ValueError: observer bug" in caplog.text


def test_the_library_never_imports_the_api() -> None:
    """Neither importing refresh_middleware nor a refresh loads OpenTelemetry's API."""
    code = (
        "import sys, refresh_middleware\n"
        "class P:\n"
        "    def __init__(self, key): self.key = key\n"
        "    def chat(self): \n"
        "        if not self.key: raise PermissionError('HTTP 401 Unauthorized')\n"
        "refresh_on_401 = refresh_middleware.refresh_on_401\n"
        "refresh_on_401(P(0), refresh=lambda stale: P(1)).chat()\n"
        "print(sorted(name for name in sys.modules if name.startswith('opentelemetry.')))"
    )
    command = [sys.executable, "-c", code]
    ran = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603

    assert "[]\n" == ran.stdout
