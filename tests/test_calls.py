"""Calls (`chat`, `embed`): one refresh and one retry after a 401, everything else untouched."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
import trio
import trio.testing
from conftest import AsyncProvider, Harness, Script, ServerError, SyncProvider, Unauthorized

from refresh_middleware import refresh_on_401
from refresh_middleware.classify import ItemKind

SUCCESS = {"type": "message", "content": "ok"}


def test_raised_401_is_refreshed_and_retried(harness: Harness) -> None:
    """A raised 401 causes one refresh and one retry, whose result is returned."""
    harness.script.chats.extend([Unauthorized(), SUCCESS])

    assert SUCCESS == harness.run(harness.chat)
    assert (1, 2) == (harness.script.refreshes, harness.script.chat_calls)


def test_other_errors_are_raised_untouched(harness: Harness) -> None:
    """An error that is not a 401 propagates as it is, with no refresh and no note."""
    error = ServerError()
    harness.script.chats.append(error)

    with pytest.raises(ServerError) as caught:
        harness.run(harness.chat)

    assert (error, None, 0) == (
        caught.value,
        getattr(error, "__notes__", None),
        harness.script.refreshes,
    )


def test_error_results_that_are_not_401_are_returned(harness: Harness) -> None:
    """An error value that is not a 401 is returned without a refresh."""
    overloaded = {"type": "error", "message": "overloaded"}
    harness.script.chats.append(overloaded)

    assert overloaded is harness.run(harness.chat)
    assert 0 == harness.script.refreshes


def test_the_retry_is_final_even_when_it_is_another_401(harness: Harness) -> None:
    """A 401 from the retry is raised: one refresh, two calls, never a third."""
    second = Unauthorized("401 again")
    harness.script.chats.extend([Unauthorized(), second])

    with pytest.raises(Unauthorized) as caught:
        harness.run(harness.chat)

    assert second is caught.value
    assert (1, 2) == (harness.script.refreshes, harness.script.chat_calls)


def test_failed_refresh_raises_the_original_401_with_the_failure_attached(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed refresh surfaces the original 401 with a note, the refresh error as context."""
    original = Unauthorized()
    harness.script.chats.append(original)
    harness.script.refresh_error = OSError("auth server unreachable: Bearer sk-secret-123")

    with (
        caplog.at_level(logging.WARNING, logger="refresh_middleware"),
        pytest.raises(Unauthorized) as caught,
    ):
        harness.run(harness.chat)

    assert original is caught.value
    assert harness.script.refresh_error is original.__context__
    assert [
        "refresh_middleware: this 401 was not retried: refreshing credentials failed with OSError"
    ] == original.__notes__
    assert 1 == harness.script.chat_calls
    assert ["WARNING"] == [record.levelname for record in caplog.records]
    assert "sk-secret" not in caplog.text


def test_failed_refresh_keeps_a_visible_context_of_the_401(mode: str) -> None:
    """A 401 that already has a visible context keeps it; the note still tells."""
    harness = Harness(mode, "sync")
    try:
        raise KeyError("while parsing")
    except KeyError as parsing:
        original = Unauthorized()
        original.__context__ = parsing
    harness.script.chats.append(original)
    harness.script.refresh_error = OSError("down")

    with pytest.raises(Unauthorized):
        harness.run(harness.chat)

    assert (KeyError, 1) == (type(original.__context__), len(original.__notes__))


def test_embed_is_intercepted_too() -> None:
    """`embed` is a call by default: a 401 there is refreshed and retried."""
    script = Script(valid_from=1)

    class Embedder:
        def __init__(self, key: int) -> None:
            self.key = key

        def embed(self, text: str) -> list[float]:
            if self.key < 1:
                raise Unauthorized
            return [1.0]

    def rebuild(stale: Embedder) -> Embedder:
        script.refreshes += 1
        return Embedder(stale.key + 1)

    embedder = refresh_on_401(Embedder(0), refresh=rebuild)

    assert ([1.0], 1) == (embedder.embed("x"), script.refreshes)


@pytest.mark.parametrize("mode", ["instance", "class"])
async def test_async_refresh_is_awaited(mode: str) -> None:
    """An async provider accepts a coroutine function as refresh, and awaits it."""
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)

    async def rebuild(stale: AsyncProvider) -> AsyncProvider | None:
        await trio.lowlevel.checkpoint()
        script.refreshes += 1
        if mode == "class":
            stale.key += 1
            return None
        return AsyncProvider(script, stale.key + 1)

    if mode == "instance":
        provider = refresh_on_401(AsyncProvider(script), refresh=rebuild)
    else:
        provider = refresh_on_401(refresh=rebuild)(type("P", (AsyncProvider,), {}))(script)

    assert (SUCCESS, 1) == (await provider.chat("x"), script.refreshes)


@pytest.mark.parametrize("nonsense", ["a string", 42, True, object()])
async def test_refresh_returning_nonsense_surfaces_the_401(nonsense: object) -> None:
    """A replacement without the intercepted methods is a refresh failure, with a clear error."""
    script = Script(valid_from=1)
    provider = refresh_on_401(AsyncProvider(script), refresh=lambda _: nonsense)

    with pytest.raises(Unauthorized) as caught:
        await provider.chat("x")

    context = caught.value.__context__
    assert TypeError is type(context)
    assert "which has no chat, chat_stream" in str(context)


async def test_class_mode_refresh_returning_a_replacement_is_refused() -> None:
    """In class mode refresh must work in place: a returned replacement is a clear TypeError."""
    script = Script(valid_from=1)
    decorated = refresh_on_401(refresh=lambda stale: AsyncProvider(script, 1))(
        type("P", (AsyncProvider,), {})
    )

    with pytest.raises(Unauthorized) as caught:
        await decorated(script).chat("x")

    assert "refreshed in place" in str(caught.value.__context__)


def test_sync_provider_refresh_returning_an_awaitable_is_refused(recwarn: Any) -> None:
    """A sync provider cannot await: a refresh returning a coroutine fails cleanly, no warning."""
    script = Script(valid_from=1)

    async def later() -> SyncProvider:
        return SyncProvider(script, 1)  # pragma: no cover - closed, never run

    provider = refresh_on_401(SyncProvider(script), refresh=lambda _: later())

    with pytest.raises(Unauthorized) as caught:
        provider.chat("x")

    assert "cannot await" in str(caught.value.__context__)
    assert [] == list(recwarn)


# --------------------------------------------------------------------------------------------------
# single flight


async def test_500_trio_callers_share_one_refresh(mode: str) -> None:
    """500 concurrent trio callers failing on one generation cause exactly one refresh."""
    harness = Harness(mode, "async")
    harness.script.valid_from = 1
    harness.script.chats.extend([SUCCESS] * 500)
    outcomes: list[object] = []

    async def one() -> None:
        outcomes.append(await harness.chat())

    async with trio.open_nursery() as nursery:
        for _ in range(500):
            nursery.start_soon(one)

    assert ([SUCCESS] * 500, 1) == (outcomes, harness.script.refreshes)


def test_32_threads_share_one_refresh(mode: str) -> None:
    """32 threads failing together on a sync provider cause exactly one refresh."""
    harness = Harness(mode, "sync")
    script = harness.script
    script.valid_from = 1
    script.chats.extend([SUCCESS] * 32)
    barrier = threading.Barrier(32)
    original = script.take_chat
    outcomes: list[object] = []

    def take_chat(args: Any, kwargs: Any, *, expired: bool) -> Any:
        if expired:
            barrier.wait()  # every thread holds the old credentials before any refresh
        return original(args, kwargs, expired=expired)

    script.take_chat = take_chat  # type: ignore[method-assign]
    threads = [
        threading.Thread(target=lambda: outcomes.append(harness.provider.chat("x")))
        for _ in range(32)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert ([SUCCESS] * 32, 1) == (outcomes, script.refreshes)


async def test_waiters_behind_a_failed_refresh_share_its_failure(mode: str) -> None:
    """Callers queued behind a refresh that failed get its failure instead of refreshing again."""
    harness = Harness(mode, "async")
    script = harness.script
    script.valid_from = 1
    script.refresh_error = OSError("auth server down")
    failures: list[BaseException | None] = []

    async def one() -> None:
        with pytest.raises(Unauthorized) as caught:
            await harness.chat()
        failures.append(caught.value.__context__)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)

    assert ([script.refresh_error] * 20, 1) == (failures, script.refreshes)


async def test_a_later_401_after_the_cooldown_refreshes_again(
    mode: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A failure is not sticky: the first 401 after the cooldown runs a refresh of its own."""
    harness = Harness(mode, "async", clock=trio.current_time)
    harness.script.valid_from = 1
    harness.script.refresh_error = OSError("auth server down")
    with pytest.raises(Unauthorized):
        await harness.chat()
    await trio.sleep(1)
    harness.script.refresh_error = None
    harness.script.chats.append(SUCCESS)

    assert (SUCCESS, 2) == (await harness.chat(), harness.script.refreshes)


async def test_a_cancelled_refresher_strands_nobody(autojump_clock: trio.testing.MockClock) -> None:
    """When the refreshing caller is cancelled, a waiter takes over and everyone else succeeds."""
    script = Script(valid_from=1)
    script.chats.extend([SUCCESS] * 3)
    started = trio.Event()

    async def slow_rebuild(stale: AsyncProvider) -> AsyncProvider:
        script.refreshes += 1
        started.set()
        await trio.sleep(10)
        return AsyncProvider(script, stale.key + 1)

    provider = refresh_on_401(AsyncProvider(script), refresh=slow_rebuild)
    outcomes: list[object] = []

    async def one() -> None:
        outcomes.append(await provider.chat("x"))

    first = trio.CancelScope()

    async def refresher() -> None:
        with first:
            await provider.chat("x")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresher)
        await started.wait()
        for _ in range(3):
            nursery.start_soon(one)
        await trio.sleep(1)
        first.cancel()

    assert ([SUCCESS] * 3, 2) == (outcomes, script.refreshes)


async def test_the_fast_path_takes_no_lock(mode: str) -> None:
    """Calls that succeed never start or wait for a refresh."""
    harness = Harness(mode, "async")
    harness.script.chats.extend([SUCCESS] * 3)
    for _ in range(3):
        await harness.chat()

    from refresh_middleware._decorator import _flights

    provider = harness.provider
    flight = provider._self_core.flight if mode == "instance" else _flights.of(provider, None)
    assert (0, False) == (flight.asked(0), flight.busy())


def test_one_proxy_across_successive_event_loops(mode: str) -> None:
    """One proxy refreshes under trio, then under two successive asyncio.run calls."""
    harness = Harness(mode, "async")
    script = harness.script
    script.chats.extend([Unauthorized(), SUCCESS] * 3)

    outcomes = [
        trio.run(harness.chat),
        asyncio.run(harness.chat()),
        asyncio.run(harness.chat()),
    ]

    assert ([SUCCESS] * 3, 3) == (outcomes, script.refreshes)


async def test_an_unsupported_event_loop_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refreshing under an async library other than trio or asyncio says so."""

    class Immediate:
        async def chat(self, request: str) -> None:
            raise Unauthorized

    provider = refresh_on_401(Immediate(), refresh=lambda stale: stale)
    monkeypatch.setattr("sniffio.current_async_library", lambda: "curio")

    with pytest.raises(RuntimeError, match="not curio"):
        await provider.chat("x")


def test_sync_refresh_returning_a_non_coroutine_awaitable_is_refused() -> None:
    """An awaitable without close (a future, say) is refused the same way."""
    script = Script(valid_from=1)

    class Later:
        def __await__(self) -> Any:
            yield  # pragma: no cover - never awaited

    provider = refresh_on_401(SyncProvider(script), refresh=lambda _: Later())

    with pytest.raises(Unauthorized) as caught:
        provider.chat("x")

    assert "cannot await" in str(caught.value.__context__)


async def test_a_sync_call_that_cannot_await_the_refresh_fails_alone() -> None:
    """A sync call meeting a 401 cannot await a coroutine refresh: it fails with its TypeError,
    reports no refresh and starts no cooldown; the next async caller refreshes."""
    events: list[object] = []
    script = Script(valid_from=1)
    script.chats.append(SUCCESS)

    class Mixed(AsyncProvider):
        def embed(self, request: str) -> Any:
            return self.script.next_chat(self.key)

    async def rebuild(stale: Mixed) -> Mixed:
        script.refreshes += 1
        return Mixed(script, stale.key + 1)

    provider = refresh_on_401(Mixed(script), refresh=rebuild, on_event=events.append)
    with pytest.raises(Unauthorized) as caught:
        provider.embed("x")
    answer = await provider.chat("x")

    assert TypeError is type(caught.value.__context__)
    assert (SUCCESS, 1) == (answer, script.refreshes)
    assert ["RetrySkipped", "RefreshStarted", "RefreshSucceeded", "CallRetried"] == [
        type(event).__name__ for event in events
    ]


# --------------------------------------------------------------------------------------------------
# the quick first attempt (`_calls.awaiting_method`, `calling_method`)


class Keyed:
    """An async provider whose `chat` returns what it is given, or refuses with key 0.

    It refuses with a 401 raised, or with `refusal`, an error item, when one is set.
    """

    refusal: object = None

    def __init__(self, key: int = 1) -> None:
        self.key = key

    def answer(self, value: object) -> object:
        if self.key >= 1:
            return value
        if self.refusal is None:
            raise Unauthorized
        return self.refusal

    async def chat(self, value: object) -> object:
        return self.answer(value)


class SyncKeyed(Keyed):
    """The same as a sync provider."""

    def chat(self, value: object) -> object:  # type: ignore[override]
        return self.answer(value)


class SdkKeyed(Keyed):
    """The same as the SDKs' `create`: a plain method that returns a coroutine."""

    def chat(self, value: object) -> Any:  # type: ignore[override]
        return Keyed.chat(self, value)


SHAPES = {"async": Keyed, "sync": SyncKeyed, "sdk": SdkKeyed}


def keyed(mode: str, shape: str, key: int, **options: Any) -> Any:
    cls = SHAPES[shape]

    def renew(stale: Keyed) -> Keyed | None:
        if mode == "class":
            stale.key += 1
            return None
        return cls(stale.key + 1)

    if mode == "instance":
        return refresh_on_401(cls(key), refresh=renew, **options)
    return refresh_on_401(refresh=renew, **options)(type("K", (cls,), {}))(key)


async def outcome(shape: str, result: Any) -> Any:
    return result if shape == "sync" else await result


MODES_AND_SHAPES = pytest.mark.parametrize(
    ("mode", "shape"), [(mode, shape) for mode in ("instance", "class") for shape in SHAPES]
)


@MODES_AND_SHAPES
async def test_a_custom_kind_of_is_asked_of_every_call_result(mode: str, shape: str) -> None:
    """A `kind_of` of the user's sees each result, even text, which the default never reads."""
    seen: list[object] = []

    def kinds(item: object) -> ItemKind:
        seen.append(item)
        return ItemKind.OUTPUT

    provider = keyed(mode, shape, 1, kind_of=kinds)
    results = [await outcome(shape, provider.chat("a")), await outcome(shape, provider.chat("b"))]

    assert (["a", "b"], ["a", "b"]) == (results, seen)


@MODES_AND_SHAPES
async def test_a_401_on_the_quick_attempt_is_refreshed_and_retried(mode: str, shape: str) -> None:
    """The quick attempt's 401 goes to the engine, which refreshes once and retries."""
    provider = keyed(mode, shape, 0)

    assert "ok" == await outcome(shape, provider.chat("ok"))


@MODES_AND_SHAPES
async def test_an_error_item_on_the_quick_attempt_is_refreshed_and_retried(
    mode: str, shape: str
) -> None:
    """A result that may be an error item is read by the engine: a 401 one is retried."""
    provider = keyed(mode, shape, 0)
    provider.refusal = {"type": "error", "error": {"type": "authentication_error"}}

    assert "ok" == await outcome(shape, provider.chat("ok"))


@MODES_AND_SHAPES
async def test_a_value_that_is_no_error_item_is_returned_as_it_is(mode: str, shape: str) -> None:
    """A mapping that names no error goes through the engine and comes back untouched."""
    provider = keyed(mode, shape, 1)
    message = {"type": "message", "content": "ok"}

    assert message is await outcome(shape, provider.chat(message))


@pytest.mark.parametrize("mode", ["instance", "class"])
@pytest.mark.parametrize("shape", ["async", "sdk"])
async def test_an_awaitable_result_is_awaited_as_before(mode: str, shape: str) -> None:
    """A coroutine method that returns an awaitable gives what the awaitable resolves to."""

    async def later() -> str:
        return "resolved"

    provider = keyed(mode, shape, 1)

    assert "resolved" == await provider.chat(later())
