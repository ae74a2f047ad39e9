"""Proactive refresh: credentials renewed ahead of expiry, so steady traffic sees no 401."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import threading
from collections.abc import AsyncIterator
from typing import Any

import hour
import pytest
import trio
import trio.testing
from conftest import Script, Unauthorized, text

from refresh_middleware import refresh_on_401
from refresh_middleware.events import Event, RefreshError, RefreshStarted

# --------------------------------------------------------------------------------------------------
# a simulated hour (see tests/hour.py; the figures are quoted in docs/howto/proactive.md)


async def test_reactive_hour_sees_a_401_per_expiry(autojump_clock: trio.testing.MockClock) -> None:
    """Reactive only: every expiry of a five-minute token costs a 401 and a retry, no failure."""
    figures = await hour.simulate("reactive")

    assert (11, 11, 0) == (figures.unauthorized, figures.refreshes, figures.failed_calls)


async def test_proactive_hour_sees_no_401(autojump_clock: trio.testing.MockClock) -> None:
    """Proactive: no 401 at all, no failure, and every token is refreshed exactly once."""
    figures = await hour.simulate("proactive")

    assert (0, 0, 0) == (figures.unauthorized, figures.failed_calls, figures.tokens_refreshed_twice)
    assert 19 == figures.refreshes  # a token is used for 180 of its 300 s: 3600 / 180 - 1


async def test_an_auth_outage_in_the_advisory_window_costs_no_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An auth server down from 170 s to 260 s (advisory window 180-270 s) fails no call."""
    figures = await hour.simulate("proactive", down=(170, 260))

    assert (0, 0) == (figures.unauthorized, figures.failed_calls)


async def test_an_auth_outage_into_the_mandatory_window_raises_refresh_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Still down in the mandatory window: calls fail with RefreshError, never with a 401."""
    figures = await hour.simulate("proactive", down=(170, 400))

    assert 0 == figures.unauthorized
    assert 0 < figures.failed_calls == figures.refresh_errors


# --------------------------------------------------------------------------------------------------
# the windows, one by one


class Expiring:
    """An async provider with a token that expires at `expires_at` on trio's clock."""

    def __init__(self, script: Script, expires_at: float, key: int = 0) -> None:
        self.script = script
        self.expires_at = expires_at
        self.key = key

    async def chat(self, request: str) -> Any:
        if trio.current_time() >= self.expires_at:
            raise Unauthorized
        await trio.sleep(1)
        return self.key

    async def chat_stream(self, request: str) -> Any:
        yield text(str(self.key))


def expiring(script: Script, expires_at: float, *, slow: float = 0.0, **options: Any) -> Any:
    async def rebuild(stale: Expiring) -> Expiring:
        script.refreshes += 1
        await trio.sleep(slow)
        if script.refresh_error is not None:
            raise script.refresh_error
        return Expiring(script, trio.current_time() + 600, stale.key + 1)

    return refresh_on_401(
        Expiring(script, expires_at),
        refresh=rebuild,
        expires_at=lambda p: p.expires_at,
        clock=trio.current_time,
        **options,
    )


async def test_in_the_advisory_window_only_one_caller_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """In the advisory window one caller refreshes; the others go on with the valid token."""
    script = Script()
    provider = expiring(script, trio.current_time() + 100, slow=5)
    finished: dict[int, float] = {}
    start = trio.current_time()

    async def one(index: int) -> None:
        await provider.chat("x")
        finished[index] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        for index in range(5):
            nursery.start_soon(one, index)

    assert (1, [1.0, 1.0, 1.0, 1.0, 6.0]) == (script.refreshes, sorted(finished.values()))


async def test_in_the_mandatory_window_everyone_waits_for_one_refresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """In the mandatory window all callers wait for the single refresh, then use its result."""
    script = Script()
    provider = expiring(script, trio.current_time() + 10, slow=5)
    keys: list[int] = []

    async def one() -> None:
        keys.append(await provider.chat("x"))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)

    assert (1, [1] * 5) == (script.refreshes, keys)


async def test_a_failed_advisory_refresh_is_logged_not_surfaced(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A refresh that fails in the advisory window leaves the call on the still-valid token."""
    script = Script(refresh_error=OSError("down"))
    provider = expiring(script, trio.current_time() + 100)

    assert 0 == await provider.chat("x")
    assert "refreshing Expiring credentials failed" in caplog.text


async def test_a_failed_mandatory_refresh_raises_a_clear_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A refresh that fails in the mandatory window raises RefreshError saying so."""
    script = Script(refresh_error=OSError("down"))
    provider = expiring(script, trio.current_time() + 10)

    with pytest.raises(
        RefreshError, match=r"expire in 10 s and refreshing them failed \(OSError\)"
    ):
        await provider.chat("x")
    with pytest.raises(RefreshError, match="cooldown"):
        await provider.chat("x")


@pytest.mark.parametrize(
    ("lifetime", "trigger"), [(100, "advisory"), (10, "mandatory"), (-5, "mandatory")]
)
async def test_refresh_events_say_which_window_triggered_them(
    autojump_clock: trio.testing.MockClock, lifetime: float, trigger: str
) -> None:
    """RefreshStarted carries the window that triggered the refresh."""
    events: list[Event] = []
    provider = expiring(Script(), trio.current_time() + lifetime, on_event=events.append)

    await provider.chat("x")

    assert [RefreshStarted("Expiring", 0, trigger)] == events[:1]


@pytest.mark.parametrize("expires_at", [lambda p: None, lambda p: 1 / 0])
async def test_an_unknown_expiry_leaves_only_the_401_safety_net(expires_at: Any) -> None:
    """expires_at returning None, or raising, means no proactive refresh."""
    script = Script()
    provider = refresh_on_401(
        Expiring(script, float("inf")), refresh=lambda stale: stale, expires_at=expires_at
    )

    assert (0, 0) == (await provider.chat("x"), script.refreshes)


async def test_streams_are_refreshed_before_they_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stream opened in the mandatory window runs on the refreshed provider."""
    provider = expiring(Script(), trio.current_time() + 10)

    async with contextlib.aclosing(provider.chat_stream("x")) as stream:
        assert [text("1")] == [item async for item in stream]


# --------------------------------------------------------------------------------------------------
# sync providers and the plain-function stream shape


class SyncExpiring:
    def __init__(self, expires_at: float, key: int = 0) -> None:
        self.expires_at = expires_at
        self.key = key

    def chat(self, request: str) -> int:
        return self.key

    def chat_stream(self, request: str) -> Any:
        return iter([text(str(self.key))])


class FakeClock:
    """A settable clock for threads."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sync_expiring(clock: FakeClock, expires_in: float, refresh: Any = None) -> Any:
    def rebuild(stale: SyncExpiring) -> SyncExpiring:
        return SyncExpiring(clock.now + 600, stale.key + 1)

    return refresh_on_401(
        SyncExpiring(clock.now + expires_in),
        refresh=refresh or rebuild,
        expires_at=lambda p: p.expires_at,
        clock=clock,
    )


@pytest.mark.parametrize(("expires_in", "key"), [(1000, 0), (100, 1), (10, 1)])
def test_sync_providers_refresh_ahead_too(expires_in: float, key: int) -> None:
    """Sync calls and plain-function streams refresh in the advisory and mandatory windows."""
    clock = FakeClock()

    assert key == sync_expiring(clock, expires_in).chat("x")
    assert [text(str(key))] == list(sync_expiring(clock, expires_in).chat_stream("x"))


def test_a_sync_advisory_refresh_in_progress_is_not_waited_for() -> None:
    """While one thread refreshes in the advisory window, another goes on without waiting."""
    clock = FakeClock()
    entered, release = threading.Event(), threading.Event()

    def slow(stale: SyncExpiring) -> SyncExpiring:
        entered.set()
        release.wait()
        return SyncExpiring(clock.now + 600, 1)

    provider = sync_expiring(clock, 100, refresh=slow)
    refresher = threading.Thread(target=provider.chat, args=("x",))
    refresher.start()
    entered.wait()

    assert 0 == provider.chat("x")
    release.set()
    refresher.join()
    assert 1 == provider.chat("x")


def test_a_failed_sync_mandatory_refresh_raises_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sync callers get the same RefreshError in the mandatory window."""

    def broken(stale: SyncExpiring) -> SyncExpiring:
        raise OSError("down")

    provider = sync_expiring(FakeClock(), 10, refresh=broken)

    with caplog.at_level(logging.WARNING), pytest.raises(RefreshError):
        provider.chat("x")


async def test_plain_stream_methods_with_an_async_refresh_refresh_when_opened(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A plain method returning an async stream cannot await a refresh at the call; the call
    waits for the first read, refreshes ahead, and reads from the fresh provider."""
    script = Script()

    class Plain(Expiring):
        def chat_stream(self, request: str) -> Any:
            return Expiring.chat_stream(self, request)

    async def rebuild(stale: Plain) -> Plain:
        return Plain(script, trio.current_time() + 600, stale.key + 1)

    provider = refresh_on_401(
        Plain(script, trio.current_time() + 10),
        refresh=rebuild,
        expires_at=lambda p: p.expires_at,
        clock=trio.current_time,
    )

    async with contextlib.aclosing(provider.chat_stream("x")) as stream:
        assert [text("1")] == [item async for item in stream]


# --------------------------------------------------------------------------------------------------
# options


def test_expires_at_and_clock_must_be_callable() -> None:
    """expires_at takes a callable or None; clock a callable."""
    with pytest.raises(TypeError, match="expires_at must be callable"):
        refresh_on_401(SyncExpiring(0), refresh=lambda p: p, expires_at=3600)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock must be callable"):
        refresh_on_401(SyncExpiring(0), refresh=lambda p: p, clock=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [(30, 120), (120,), "120", (-1, -2), (True, 0)])
def test_refresh_ahead_must_be_advisory_then_mandatory(value: Any) -> None:
    """refresh_ahead takes (advisory, mandatory) with advisory >= mandatory >= 0."""
    with pytest.raises(ValueError, match="refresh_ahead must be"):
        refresh_on_401(SyncExpiring(0), refresh=lambda p: p, refresh_ahead=value)


# --------------------------------------------------------------------------------------------------
# no storm: credentials that are inside a window already when they arrive


class Issued:
    """An async provider whose credentials the issuer dates by its own (skewed) clock."""

    def __init__(self, expires_at: object, key: int = 0) -> None:
        self.expires_at = expires_at
        self.key = key

    async def chat(self, request: str) -> int:
        await trio.lowlevel.checkpoint()
        return self.key


def issued(lifetime: Any) -> tuple[list[int], Any]:
    """A provider whose every refresh hands over credentials `lifetime(now)` says expire at."""
    refreshes: list[int] = []

    async def rebuild(stale: Issued) -> Issued:
        refreshes.append(stale.key)
        return Issued(lifetime(trio.current_time()), stale.key + 1)

    provider = refresh_on_401(
        Issued(lifetime(trio.current_time())),
        refresh=rebuild,
        expires_at=lambda p: p.expires_at,
        clock=trio.current_time,
    )
    return refreshes, provider


@pytest.mark.parametrize(
    "lifetime",
    [
        pytest.param(lambda now: now + 60, id="tokens living less than the advisory window"),
        pytest.param(lambda now: now - 200, id="a host clock ahead of the issuer"),
        pytest.param(lambda now: -1.0, id="a negative expiry"),
    ],
)
async def test_credentials_born_inside_a_window_are_not_refreshed_again_and_again(
    autojump_clock: trio.testing.MockClock, lifetime: Any
) -> None:
    """Fresh credentials that are inside a window already are refreshed ahead at most once per
    window (not on every call); the calls go on with them."""
    refreshes, provider = issued(lifetime)

    keys = [await provider.chat("x") for _ in range(20)]

    assert (1, 20) == (len(refreshes), keys.count(1))


async def test_short_tokens_are_refreshed_once_more_when_they_reach_the_mandatory_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 60 s token (inside the 120 s advisory window from birth) is refreshed ahead once, at
    the mandatory window, and not before: one refresh per token lifetime."""
    refreshes, provider = issued(lambda now: now + 60)
    keys = []
    for _ in range(100):  # 100 s of one call a second
        keys.append(await provider.chat("x"))
        await trio.sleep(1)

    assert [0, 1, 2, 3] == refreshes  # the first at once, then at every 30 s left


@pytest.mark.parametrize("expiry", [math.nan, math.inf])
async def test_nan_and_infinite_expiries_never_refresh_ahead(expiry: float) -> None:
    """NaN says nothing and infinity never expires: no refresh ahead, the 401 net stays."""
    refreshes, provider = issued(lambda now: expiry)

    assert (0, []) == (await provider.chat("x"), refreshes)


async def test_an_aware_datetime_expiry_is_accepted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An expires_at returning an aware datetime is compared as epoch seconds."""
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    provider = refresh_on_401(
        Issued(soon), refresh=lambda stale: Issued(later, 1), expires_at=lambda p: p.expires_at
    )

    assert 1 == await provider.chat("x")


@pytest.mark.parametrize(
    ("expiry", "message"),
    [
        (dt.datetime(2030, 1, 1), "naive datetime"),  # noqa: DTZ001 - the point of the test
        ("2030-01-01", "epoch seconds, an aware datetime or None"),
    ],
)
async def test_an_expiry_of_the_wrong_kind_is_refused_clearly(expiry: object, message: str) -> None:
    """A naive datetime or a string from expires_at is a TypeError, never silently ignored."""
    provider = refresh_on_401(
        Issued(expiry), refresh=lambda stale: stale, expires_at=lambda p: p.expires_at
    )

    with pytest.raises(TypeError, match=message):
        await provider.chat("x")


# --------------------------------------------------------------------------------------------------
# an async refresh with plain stream methods (anthropic's messages.stream() shape)


class Sent:
    """What reached the server: the key of each request, when it was sent."""

    def __init__(self) -> None:
        self.keys: list[int] = []


class PlainStreams:
    """Only plain stream methods: one returns a manager, one an async iterator."""

    def __init__(self, sent: Sent, expires_at: float, key: int = 0) -> None:
        self.sent = sent
        self.expires_at = expires_at
        self.key = key

    def managed(self, request: str) -> Any:
        provider = self

        class Manager:
            async def __aenter__(self) -> Any:
                provider.sent.keys.append(provider.key)  # the request goes out on enter
                return provider.items()

            async def __aexit__(self, *exc_info: object) -> None:
                pass

        return Manager()

    def returned(self, request: str) -> Any:
        return self.items()

    async def items(self) -> AsyncIterator[Any]:
        if not self.sent.keys or self.sent.keys[-1] != self.key:
            self.sent.keys.append(self.key)  # a lazy stream sends on the first read
        yield text(str(self.key))


@pytest.mark.parametrize("method", ["managed", "returned"])
@pytest.mark.parametrize("refresh_kind", ["coroutine function", "async __call__"])
async def test_an_async_refresh_works_with_only_plain_stream_methods(
    autojump_clock: trio.testing.MockClock, method: str, refresh_kind: str
) -> None:
    """Accepted when wrapped, run at the first enter or read: the refresh ahead of expiry has
    happened by the time the request is sent."""
    sent = Sent()

    class AsyncRefresh:
        async def __call__(self, stale: PlainStreams) -> PlainStreams:
            await trio.sleep(1)
            return PlainStreams(sent, trio.current_time() + 600, stale.key + 1)

    refresh = AsyncRefresh() if refresh_kind == "async __call__" else AsyncRefresh().__call__
    provider = refresh_on_401(
        PlainStreams(sent, trio.current_time() + 10),
        refresh=refresh,
        calls=(),
        streams=("managed", "returned"),
        expires_at=lambda p: p.expires_at,
        clock=trio.current_time,
    )

    stream = getattr(provider, method)("x")
    if method == "managed":
        async with stream as opened:
            items = [item async for item in opened]
    else:
        async with contextlib.aclosing(stream):
            items = [item async for item in stream]

    assert ([text("1")], [1]) == (items, sent.keys)


@pytest.mark.parametrize("expires_in", [100, 10], ids=["advisory", "mandatory"])
async def test_a_sync_stream_method_called_from_async_code_in_a_window_returns_its_stream(
    expires_in: float,
) -> None:
    """A sync stream method called on an event loop inside a window returns its iterator."""
    clock = FakeClock()

    assert [text("0")] == list(sync_expiring(clock, expires_in).chat_stream("x"))


async def test_a_sync_method_streaming_a_value_in_a_window_returns_the_value() -> None:
    """A sync stream method that returns a value, called on an event loop in a window, gives it."""
    clock = FakeClock()
    provider = refresh_on_401(
        SyncExpiring(clock.now + 100),
        refresh=lambda stale: SyncExpiring(clock.now + 600, 1),
        expires_at=lambda p: p.expires_at,
        clock=clock,
        calls=(),
        streams=("chat",),
    )

    assert 0 == provider.chat("x")
