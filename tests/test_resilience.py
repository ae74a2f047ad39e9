"""Failure policy: refresh timeouts, cooldown after failures, replay safety, events, redaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any, cast

import pytest
import trio
import trio.testing
from conftest import AsyncProvider, Harness, Script, SyncProvider, Unauthorized, text

from refresh_middleware import refresh_on_401
from refresh_middleware._flight import Adoption, adoption
from refresh_middleware.events import (
    CallRetried,
    Event,
    RefreshFailed,
    RefreshStarted,
    RefreshSucceeded,
    RefreshTimedOut,
    RefreshTimeoutError,
    RetrySkipped,
)

SUCCESS = {"type": "message", "content": "ok"}


def expired_async(refresh: Any, **options: Any) -> tuple[Script, Any]:
    """An async provider on expired credentials, wrapped with `refresh` and `options`."""
    script = Script(valid_from=1)
    return script, refresh_on_401(AsyncProvider(script), refresh=refresh, **options)


# --------------------------------------------------------------------------------------------------
# timeouts


async def test_a_hung_refresh_times_out_under_trio(autojump_clock: trio.testing.MockClock) -> None:
    """A refresh that never returns is abandoned after refresh_timeout; the 401 surfaces."""
    events: list[Event] = []

    async def hang(stale: AsyncProvider) -> AsyncProvider:
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    _, provider = expired_async(hang, on_event=events.append)
    start = trio.current_time()

    with pytest.raises(Unauthorized) as caught:
        await provider.chat("x")

    assert 30.0 == trio.current_time() - start
    assert "did not finish within 30 s" in caught.value.__notes__[0]
    assert RefreshTimedOut("AsyncProvider", 0, 30.0, 1, 30.0) == events[1]


def test_a_hung_refresh_times_out_under_asyncio() -> None:
    """Under asyncio the same timeout applies."""

    async def hang(stale: AsyncProvider) -> AsyncProvider:
        await asyncio.sleep(60)
        raise AssertionError  # pragma: no cover

    _, provider = expired_async(hang, refresh_timeout=0.01)

    with pytest.raises(Unauthorized) as caught:
        asyncio.run(provider.chat("x"))

    assert RefreshTimeoutError is type(caught.value.__context__)


def test_a_refresh_raising_its_own_timeout_is_an_ordinary_failure() -> None:
    """A TimeoutError raised by the refresh itself is reported as that failure, not ours."""

    async def slow_auth(stale: AsyncProvider) -> AsyncProvider:
        raise TimeoutError

    _, provider = expired_async(slow_auth, refresh_timeout=5)

    with pytest.raises(Unauthorized) as caught:
        asyncio.run(provider.chat("x"))

    assert TimeoutError is type(caught.value.__context__)


async def test_without_a_timeout_the_refresh_is_awaited_as_long_as_it_takes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """refresh_timeout=None waits for the refresh, however slow."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)

    async def slow(stale: AsyncProvider) -> AsyncProvider:
        await trio.sleep(3600)
        return AsyncProvider(script, 1)

    provider = refresh_on_401(AsyncProvider(script), refresh=slow, refresh_timeout=None)

    assert SUCCESS == await provider.chat("x")


def test_a_hung_sync_refresh_times_out_in_its_helper_thread() -> None:
    """A sync refresh is run in a helper thread with a timeout, and abandoned when it overruns."""
    release = threading.Event()

    def hang(stale: SyncProvider) -> SyncProvider:
        release.wait()
        return stale

    script = Script(valid_from=1)
    provider = refresh_on_401(SyncProvider(script), refresh=hang, refresh_timeout=0.01)

    with pytest.raises(Unauthorized) as caught:
        provider.chat("x")
    release.set()

    assert "did not finish within 0.01 s" in caught.value.__notes__[0]


def test_a_sync_refresh_sees_the_callers_context_and_errors() -> None:
    """The helper thread runs the refresh in the caller's context and hands back its error."""
    import contextvars

    tenant = contextvars.ContextVar("tenant", default="none")
    seen: list[str] = []

    def broken(stale: SyncProvider) -> SyncProvider:
        seen.append(tenant.get())
        raise OSError("down")

    script = Script(valid_from=1)
    provider = refresh_on_401(SyncProvider(script), refresh=broken)
    tenant.set("acme")

    with pytest.raises(Unauthorized) as caught:
        provider.chat("x")

    assert (["acme"], OSError) == (seen, type(caught.value.__context__))


def test_a_sync_refresh_without_a_timeout_runs_in_the_calling_thread() -> None:
    """refresh_timeout=None runs a sync refresh right in the caller's thread."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)
    threads: list[threading.Thread] = []

    def rebuild(stale: SyncProvider) -> SyncProvider:
        threads.append(threading.current_thread())
        return SyncProvider(script, 1)

    provider = refresh_on_401(SyncProvider(script), refresh=rebuild, refresh_timeout=None)

    assert (SUCCESS, [threading.current_thread()]) == (provider.chat("x"), threads)


# --------------------------------------------------------------------------------------------------
# cooldown


async def test_401s_during_the_cooldown_do_not_refresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Right after a failed refresh, new 401s get the failure at once: the server is spared."""
    events: list[Event] = []
    harness = Harness("instance", "async")
    harness.script.valid_from = 1
    harness.script.refresh_error = OSError("down")
    harness.provider = refresh_on_401(
        harness.provider.__wrapped__,
        refresh=lambda stale: (_ for _ in ()).throw(OSError("down")),
        on_event=events.append,
        clock=trio.current_time,
    )

    for _ in range(2):
        with pytest.raises(Unauthorized) as caught:
            await harness.chat()

    assert (
        "refresh_middleware: this 401 was not retried: the last refresh failed moments ago, "
        "and the next is not tried for another 1 s (cooldown)"
    ) == caught.value.__notes__[0]
    assert [RefreshStarted, RefreshFailed, RetrySkipped, RetrySkipped] == [
        type(event) for event in events
    ]


async def test_the_cooldown_doubles_up_to_its_cap_and_clears_on_success(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each failure doubles the cooldown up to the cap; the first success clears it."""
    script = Script(valid_from=1)
    attempts: list[float] = []
    failing = [True]

    async def flaky(stale: AsyncProvider) -> AsyncProvider:
        attempts.append(trio.current_time())
        if failing[0]:
            raise OSError("down")
        return AsyncProvider(script, stale.key + 1)

    provider = refresh_on_401(
        AsyncProvider(script), refresh=flaky, cooldown=(1, 3), clock=trio.current_time
    )
    start = trio.current_time()
    while trio.current_time() - start < 10:
        with pytest.raises(Unauthorized):
            await provider.chat("x")
        await trio.sleep(0.5)
    failing[0] = False
    await trio.sleep(3)
    script.chats.append(SUCCESS)

    assert [0, 1, 3, 6, 9] == [round(moment - start, 1) for moment in attempts]
    assert SUCCESS == await provider.chat("x")
    assert None is provider._self_core.flight._cooldown


@pytest.mark.parametrize(
    ("first", "then"),
    [("thread", "trio"), ("trio", "trio"), ("asyncio", "trio"), ("trio", "asyncio")],
)
def test_the_cooldown_holds_in_every_thread_trio_run_and_asyncio_loop(
    first: str, then: str
) -> None:
    """A failure seen in one thread, trio run or asyncio loop cools the credential down for the
    next caller, whichever it is: the cooldown is on one process-wide clock."""
    calls = []

    def failing(stale: Any) -> Any:
        calls.append(1)
        raise OSError("down")

    class Both:
        async def chat(self, request: str) -> Any:
            raise Unauthorized

        def embed(self, request: str) -> Any:
            raise Unauthorized

    provider = refresh_on_401(Both(), refresh=failing, cooldown=(60, 60))
    run = {
        "thread": lambda: provider.embed("x"),
        "trio": lambda: trio.run(provider.chat, "x"),
        "asyncio": lambda: asyncio.run(provider.chat("x")),
    }
    for where in (first, then):
        with pytest.raises(Unauthorized):
            run[where]()

    assert 1 == len(calls)


async def test_the_cooldown_runs_on_the_clock_given() -> None:
    """With `clock=` given, the cooldown is timed on it: it ends when that clock says so."""
    now = [1000.0]
    calls = []

    def failing(stale: Any) -> Any:
        calls.append(now[0])
        raise OSError("down")

    _, provider = expired_async(failing, clock=lambda: now[0], cooldown=(5, 5))
    for moment in (1000.0, 1004.0, 1005.0):
        now[0] = moment
        with pytest.raises(Unauthorized):
            await provider.chat("x")

    assert [1000.0, 1005.0] == calls


def refused_every_time(refreshed_at: list[float], **options: Any) -> Any:
    """An async provider whose every refresh succeeds but brings back credentials still refused."""

    async def rebuild(stale: AsyncProvider) -> AsyncProvider:
        refreshed_at.append(trio.current_time())
        return AsyncProvider(stale.script, stale.key + 1)

    return refresh_on_401(
        AsyncProvider(Script(valid_from=10**6)), refresh=rebuild, clock=trio.current_time, **options
    )


async def test_a_401_right_after_a_refresh_says_it_was_refused_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The retry on fresh credentials meets a 401 again: the final 401 says so."""
    provider = refused_every_time([])

    with pytest.raises(Unauthorized) as caught:
        await provider.chat("x")

    assert ["refresh_middleware: refused again after a refresh to generation 1"] == (
        caught.value.__notes__
    )


async def test_credentials_refused_right_after_their_refresh_cool_down_as_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A refresh that achieved nothing is a failure for the cooldown: later 401s do not refresh
    again at once, and each such refresh doubles the wait."""
    refreshed_at: list[float] = []
    provider = refused_every_time(refreshed_at, cooldown=(1, 8))
    start = trio.current_time()
    while trio.current_time() - start < 4:
        with pytest.raises(Unauthorized):
            await provider.chat("x")
        await trio.sleep(0.5)

    assert [0, 1, 3] == [round(moment - start, 1) for moment in refreshed_at]


async def test_callers_refused_together_after_one_refresh_cool_down_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Callers that shared one refresh and were all refused start the first delay, not one
    doubling each."""
    refreshed_at: list[float] = []
    provider = refused_every_time(refreshed_at, cooldown=(1, 8))

    async def chat() -> None:
        with pytest.raises(Unauthorized):
            await provider.chat("x")

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(chat)
    await trio.sleep(1)
    await chat()

    assert [0, 1] == [round(moment - start, 1) for moment in refreshed_at]


def adopted_every_time(refreshed_at: list[float], **options: Any) -> Any:
    """As `refused_every_time`, but every refresh says it adopted what it hands over (a fleet
    record another process fetched)."""

    async def rebuild(stale: AsyncProvider) -> AsyncProvider:
        refreshed_at.append(trio.current_time())
        cast("Adoption", adoption.get()).adopted = True
        return AsyncProvider(stale.script, stale.key + 1)

    return refresh_on_401(
        AsyncProvider(Script(valid_from=10**6)), refresh=rebuild, clock=trio.current_time, **options
    )


async def test_credentials_adopted_and_refused_are_refreshed_again_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Adopted credentials refused right away start no cooldown: the next 401 refreshes."""
    refreshed_at: list[float] = []
    provider = adopted_every_time(refreshed_at, cooldown=(1, 8))
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await provider.chat("x")

    assert 2 == len(refreshed_at)


async def test_adopted_credentials_refused_after_an_adoption_cool_down_and_double(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only one adoption in a row is let off: refused again, the cooldown starts and doubles."""
    refreshed_at: list[float] = []
    provider = adopted_every_time(refreshed_at, cooldown=(1, 8))
    start = trio.current_time()
    while trio.current_time() - start < 4:
        with pytest.raises(Unauthorized):
            await provider.chat("x")
        await trio.sleep(0.5)

    assert [0, 0.5, 1.5, 3.5] == [round(moment - start, 1) for moment in refreshed_at]


async def test_without_a_cooldown_every_401_refreshes(mode: str) -> None:
    """cooldown=None lets every 401 after a failure try again."""
    calls: list[int] = []

    def failing(stale: Any) -> None:
        calls.append(1)
        raise OSError("down")

    _, provider = expired_async(failing, cooldown=None)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await provider.chat("x")

    assert 3 == len(calls)


# --------------------------------------------------------------------------------------------------
# replay safety


@pytest.mark.parametrize("as_keyword", [False, True])
async def test_a_consumed_iterator_argument_is_not_replayed(as_keyword: bool) -> None:
    """A call whose argument was a one-shot iterator is not retried; the note says why."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)
    events: list[Event] = []
    provider = refresh_on_401(
        AsyncProvider(script),
        refresh=lambda stale: AsyncProvider(script, 1),
        on_event=events.append,
    )
    messages = iter(["hello"])

    with pytest.raises(Unauthorized) as caught:
        await (provider.chat(request=messages) if as_keyword else provider.chat(messages))

    name = "'request'" if as_keyword else "0"
    assert f"argument {name} is a one-shot list_iterator" in caught.value.__notes__[0]
    assert RetrySkipped is type(events[-1])
    assert (1, SUCCESS) == (provider.key, await provider.chat("x"))  # refreshed all the same


def test_a_stream_with_a_generator_argument_is_not_replayed() -> None:
    """Streams follow the same rule: a 401 before output is not retried over a used generator."""
    script = Script()
    script.streams.append([{"type": "error", "message": "401 Unauthorized"}])
    provider = refresh_on_401(SyncProvider(script), refresh=lambda stale: stale)

    with contextlib.closing(provider.chat_stream(x for x in "abc")) as stream:
        items = list(stream)

    assert ([{"type": "error", "message": "401 Unauthorized"}], 1) == (items, script.stream_opens)


# --------------------------------------------------------------------------------------------------
# events


async def test_events_tell_the_story_of_a_shared_refresh() -> None:
    """Ten callers on expired credentials: one refresh started and succeeded, shared by ten."""
    events: list[Event] = []
    script = Script(valid_from=1)
    script.chats.extend([SUCCESS] * 10)

    async def rebuild(stale: AsyncProvider) -> AsyncProvider:
        await trio.lowlevel.checkpoint()
        return AsyncProvider(script, 1)

    provider = refresh_on_401(AsyncProvider(script), refresh=rebuild, on_event=events.append)

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(provider.chat, "x")

    started, succeeded, *retried = events
    assert RefreshStarted("AsyncProvider", 0) == started
    assert (RefreshSucceeded, 10) == (type(succeeded), succeeded.shared_by)  # type: ignore[attr-defined]
    assert [CallRetried("AsyncProvider", "chat")] * 10 == retried


async def test_a_failing_event_hook_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """An on_event hook that raises never breaks the call."""

    def broken(event: Event) -> None:
        raise ValueError("hook bug")

    script = Script(valid_from=1)
    script.chats.append(SUCCESS)
    provider = refresh_on_401(
        AsyncProvider(script), refresh=lambda stale: AsyncProvider(script, 1), on_event=broken
    )

    assert SUCCESS == await provider.chat("x")
    assert "on_event hook raised ValueError: hook bug" in caplog.text


# --------------------------------------------------------------------------------------------------
# secrets


SECRETS = ("sk-live-PLANTED0123456789", "PLANTED-bearer-token-42", "PLANTED-x-api-key-7")


class Leaky(AsyncProvider):
    """A provider that holds credentials and shows them wherever it can."""

    token = SECRETS[0]

    def __repr__(self) -> str:
        return f"Leaky(token={self.token!r})"

    async def chat(self, request: str) -> Any:
        if self.key < 1:
            error = Unauthorized(f"401: x-api-key: {SECRETS[2]} rejected for {self!r}")
            raise error
        return SUCCESS

    async def chat_stream(self, request: str) -> Any:
        yield {"type": "error", "message": f"401 Unauthorized: Bearer {SECRETS[1]}"}


async def test_no_secret_reaches_a_log_line_or_an_event(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """Planted keys and tokens appear in no log record and no event, in success and failure."""
    events: list[Event] = []
    failing = [True]

    def rebuild(stale: Leaky) -> Leaky:
        if failing[0]:
            raise OSError(f"token endpoint said no to Authorization: Bearer {SECRETS[1]}")
        return Leaky(stale.script, 1)

    provider = refresh_on_401(
        Leaky(Script()),
        refresh=rebuild,
        on_event=events.append,
        refresh_timeout=1,
        clock=trio.current_time,
    )
    with caplog.at_level(logging.DEBUG, logger="refresh_middleware"):
        with pytest.raises(Unauthorized):
            await provider.chat("x")
        with pytest.raises(Unauthorized):
            await provider.chat("x")  # cooldown
        await trio.sleep(2)
        async with contextlib.aclosing(provider.chat_stream("x")) as stream:
            assert [text("x")] != [item async for item in stream]
        failing[0] = False
        await trio.sleep(5)
        assert SUCCESS == await provider.chat("x")

    told = caplog.text + "".join(repr(event) for event in events)
    assert len(events) >= 6
    assert [] == [secret for secret in SECRETS if secret in told]
    assert "[REDACTED]" in "".join(repr(event) for event in events)


# --------------------------------------------------------------------------------------------------
# options


@pytest.mark.parametrize("value", [0, -1, "30", True])
def test_refresh_timeout_must_be_positive_seconds(value: Any) -> None:
    """refresh_timeout takes a positive number of seconds, or None."""
    with pytest.raises(ValueError, match="refresh_timeout must be a positive number"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda p: p, refresh_timeout=value)


@pytest.mark.parametrize("value", [(2, 1), (1,), "1", (0, 1)])
def test_cooldown_must_be_first_and_cap(value: Any) -> None:
    """cooldown takes (first, cap) with first <= cap, or None."""
    with pytest.raises(ValueError, match="cooldown must be"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda p: p, cooldown=value)


def test_on_event_must_be_callable() -> None:
    """on_event takes a callable or None."""
    with pytest.raises(TypeError, match="on_event must be callable"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda p: p, on_event="print")  # type: ignore[arg-type]


def test_sync_providers_send_the_same_events() -> None:
    """A refresh in a thread reports started, succeeded and the retry, as the async one does."""
    events: list[Event] = []
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)
    provider = refresh_on_401(
        SyncProvider(script), refresh=lambda stale: SyncProvider(script, 1), on_event=events.append
    )

    assert SUCCESS == provider.chat("x")
    assert [RefreshStarted, RefreshSucceeded, CallRetried] == [type(event) for event in events]


# --------------------------------------------------------------------------------------------------
# statuses


class Forbidden(Exception):
    """A provider that answers an expired token with 403, as some gateways do."""

    status_code = 403


def expired_with_403(**options: Any) -> tuple[Script, Any]:
    script = Script()

    class Gateway(SyncProvider):
        def chat(self, request: str) -> Any:
            if self.key < 1:
                raise Forbidden("403 Forbidden: token expired")
            return SUCCESS

    def rebuild(stale: Gateway) -> Gateway:
        script.refreshes += 1
        return Gateway(script, 1)

    return script, refresh_on_401(Gateway(script), refresh=rebuild, **options)


def test_a_403_is_not_refreshed_by_default() -> None:
    """By default only 401s are refreshed: a 403 passes through."""
    script, provider = expired_with_403()

    with pytest.raises(Forbidden):
        provider.chat("x")
    assert 0 == script.refreshes


@pytest.mark.parametrize("statuses", [{403}, [403, 418], 403])
def test_statuses_opt_more_statuses_in(statuses: Any) -> None:
    """statuses= adds HTTP statuses that mean expired credentials, for one wrapper."""
    script, provider = expired_with_403(statuses=statuses)

    assert (SUCCESS, 1) == (provider.chat("x"), script.refreshes)


@pytest.mark.parametrize("statuses", [{200}, ["403"], {True}, object()])
def test_statuses_must_be_http_error_statuses(statuses: Any) -> None:
    """statuses takes HTTP error statuses, 400 to 599."""
    with pytest.raises(ValueError, match="statuses must be HTTP error statuses"):
        refresh_on_401(SyncProvider(Script()), refresh=lambda p: p, statuses=statuses)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Forbidden(), 403),
        ({"status": "403"}, 403),
        (type("E", (), {"response": type("R", (), {"status_code": 429})()})(), 429),
        ("403 Forbidden", None),
        (type("Hostile", (), {"__getattr__": lambda self, name: 1 / 0})(), None),
    ],
    ids=["exception", "mapping", "response", "text", "hostile"],
)
def test_status_of_reads_structure_only_and_never_raises(value: object, expected: Any) -> None:
    """status_of reads status fields and response.status_code, nothing else, and never raises."""
    from refresh_middleware._unauthorized import status_of

    assert expected == status_of(value)


def test_a_proxy_with_statuses_pickles() -> None:
    """The statuses predicate pickles with the proxy when its parts do."""
    import pickle

    from test_proxy import Chatty, rebuild

    provider = refresh_on_401(Chatty(Script()), refresh=rebuild, statuses={403})
    restored = pickle.loads(pickle.dumps(provider))  # noqa: S301 - our own bytes

    assert restored._self_core.options.is_unauthorized(Forbidden())
