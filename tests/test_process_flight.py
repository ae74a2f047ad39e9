"""One refresh for the whole process: loops, threads, forks, re-entrant and interrupted ones."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
from typing import Any

import pytest
import trio
import trio.testing
from conftest import AsyncProvider, Script, SyncProvider, Unauthorized, checkpoint

from refresh_middleware import refresh_on_401
from refresh_middleware._flight import Flight, Outcome, Signal, Worker, _after_fork_in_child
from refresh_middleware.events import RefreshTimeoutError

WAIT = 20.0  # seconds a thread of these tests may wait before the test fails instead of hanging


class Server:
    """The credential a provider must present, and what happened to it, shared across threads."""

    def __init__(self, callers: int) -> None:
        self.valid = 1
        self.callers = callers
        self.lock = threading.Lock()
        self.unauthorized = 0
        self.refreshes = 0
        self.all_failed = threading.Event()

    def check(self, key: int) -> int:
        if key == self.valid:
            return key
        with self.lock:
            self.unauthorized += 1
            if self.unauthorized == self.callers:
                self.all_failed.set()
        raise Unauthorized


class Both:
    """A provider with an async `chat` (for event loops) and a sync `embed` (for threads)."""

    def __init__(self, server: Server, key: int = 0) -> None:
        self.server = server
        self.key = key

    async def chat(self, request: str) -> int:
        key = self.key  # the credentials go out with the request
        await checkpoint()
        return self.server.check(key)

    def embed(self, request: str) -> int:
        return self.server.check(self.key)


class Ticks:
    """Ticks counted by a task of each event loop, to show the loop serves while it waits."""

    def __init__(self) -> None:
        self.by_loop: dict[str, int] = {}

    async def tick(self, name: str) -> None:
        while True:
            self.by_loop[name] = self.by_loop.get(name, 0) + 1
            await checkpoint()

    def wait_for_each(self, names: tuple[str, ...], more: int) -> None:
        """Block this thread until every loop named has ticked `more` times again."""
        seen = {name: self.by_loop.get(name, 0) for name in names}
        while any(self.by_loop.get(name, 0) < seen[name] + more for name in names):
            threading.Event().wait(0.001)


def run_in_thread(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def test_callers_of_every_loop_and_thread_share_one_refresh() -> None:
    """Two asyncio loops of 100 tasks, a trio run of 100 and 8 threads fail together: one
    refresh, every call answered, and every loop serves other tasks while its callers wait."""
    server = Server(callers=2 * 100 + 100 + 8)
    ticks = Ticks()

    def rebuild(stale: Both) -> Both:
        server.refreshes += 1
        assert server.all_failed.wait(WAIT)
        ticks.wait_for_each(("asyncio-1", "asyncio-2", "trio"), more=10)
        server.valid += 1
        return Both(server, server.valid)

    provider = refresh_on_401(Both(server), refresh=rebuild, refresh_timeout=WAIT)
    answers: list[int] = []

    async def on_asyncio(name: str) -> None:
        tick = asyncio.ensure_future(ticks.tick(name))
        answers.extend(await asyncio.gather(*(provider.chat("hi") for _ in range(100))))
        tick.cancel()

    async def on_trio() -> None:
        async def chat() -> None:
            answers.append(await provider.chat("hi"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticks.tick, "trio")
            async with trio.open_nursery() as callers:
                for _ in range(100):
                    callers.start_soon(chat)
            nursery.cancel_scope.cancel()

    threads = [
        run_in_thread(asyncio.run, on_asyncio("asyncio-1")),
        run_in_thread(asyncio.run, on_asyncio("asyncio-2")),
        run_in_thread(trio.run, on_trio),
        *(run_in_thread(lambda: answers.append(provider.embed("hi"))) for _ in range(8)),
    ]
    for thread in threads:
        thread.join(WAIT)

    assert (1, 308, [2] * 308) == (server.refreshes, server.unauthorized, answers)


def test_a_failed_refresh_is_shared_across_loops_and_threads() -> None:
    """Callers of an asyncio loop, a trio run and threads queued behind a refresh that fails
    all get that one failure, attached to their own 401."""
    server = Server(callers=3 + 3 + 3)
    failure = OSError("token endpoint down")

    def rebuild(stale: Both) -> Both:
        server.refreshes += 1
        assert server.all_failed.wait(WAIT)
        raise failure

    provider = refresh_on_401(Both(server), refresh=rebuild, refresh_timeout=WAIT)
    contexts: list[BaseException | None] = []

    async def chat() -> None:
        try:
            await provider.chat("hello")
        except Unauthorized as error:
            contexts.append(error.__context__)

    def embed() -> None:
        try:
            provider.embed("hello")
        except Unauthorized as error:
            contexts.append(error.__context__)

    async def on_asyncio() -> None:
        await asyncio.gather(chat(), chat(), chat())

    async def on_trio() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(chat)

    threads = [
        run_in_thread(asyncio.run, on_asyncio()),
        run_in_thread(trio.run, on_trio),
        *(run_in_thread(embed) for _ in range(3)),
    ]
    for thread in threads:
        thread.join(WAIT)

    assert (1, [failure] * 9) == (server.refreshes, contexts)


def test_a_cancelled_refresher_strands_no_caller_of_another_loop() -> None:
    """The refreshing asyncio task is cancelled: a trio caller and an asyncio caller of other
    threads, queued behind it, take over (one refreshes) and are answered."""
    server = Server(callers=3)
    refreshing = threading.Event()

    async def rebuild(stale: Both) -> Both:
        server.refreshes += 1
        if server.refreshes == 1:  # the first, in the refresher's asyncio loop: cancelled
            refreshing.set()
            await asyncio.sleep(WAIT)
        await checkpoint()
        server.valid += 1
        return Both(server, server.valid)

    provider = refresh_on_401(Both(server), refresh=rebuild, calls=("chat",))
    answers: list[int] = []

    async def refresher() -> None:
        task = asyncio.ensure_future(provider.chat("hello"))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, server.all_failed.wait, WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def waiter() -> None:
        answers.append(await provider.chat("hello"))

    def after_the_refresh_started(run: Any, main: Any) -> None:
        assert refreshing.wait(WAIT)
        run(main)

    threads = [
        run_in_thread(asyncio.run, refresher()),
        run_in_thread(after_the_refresh_started, trio.run, waiter),
        run_in_thread(after_the_refresh_started, asyncio.run, waiter()),
    ]
    for thread in threads:
        thread.join(WAIT)

    assert (2, [2, 2]) == (server.refreshes, answers)


# --------------------------------------------------------------------------------------------------
# fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("held", ["refresh", "lock"])
def test_a_child_forked_mid_refresh_starts_with_a_working_flight(held: str) -> None:
    """Forked while another thread runs a refresh (or holds the flight's lock), the child can
    refresh on its own: nothing it inherits waits for a thread that is not there."""
    script = Script(valid_from=1)
    script.chats.extend(["parent", "child"])
    inside = threading.Event()
    release = threading.Event()

    def rebuild(stale: SyncProvider) -> SyncProvider:
        if os.getpid() == parent:
            inside.set()
            release.wait(WAIT)
        return SyncProvider(script, stale.key + 1)

    parent = os.getpid()
    provider = refresh_on_401(SyncProvider(script), refresh=rebuild, refresh_timeout=None)
    if held == "refresh":
        thread = run_in_thread(provider.chat, "x")
    else:
        lock = provider._self_core.flight._lock
        thread = run_in_thread(lambda: (lock.acquire(), inside.set(), release.wait(WAIT)))
    assert inside.wait(WAIT)

    child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            code = 0 if provider.chat("x") == "parent" else 1
        finally:
            os._exit(locals().get("code", 2))
    release.set()
    if held == "lock":
        lock.release()
    thread.join(WAIT)
    _, status = os.waitpid(child, 0)

    assert 0 == os.waitstatus_to_exitcode(status)


# --------------------------------------------------------------------------------------------------
# a plain-function refresh on an async provider runs in a worker thread


async def test_a_hanging_plain_refresh_is_bounded_and_the_loop_serves_meanwhile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A plain refresh stuck on a token endpoint runs in a worker thread: the event loop serves
    other tasks, and the refresh timeout gives the caller its 401 back."""
    hanging = threading.Event()
    ticks = [0]

    def rebuild(stale: Any) -> Any:
        hanging.wait(WAIT)  # a token endpoint that never answers
        return stale  # pragma: no cover - abandoned before

    class Provider:
        async def chat(self, request: str) -> str:
            raise Unauthorized

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await trio.sleep(1)

    provider = refresh_on_401(Provider(), refresh=rebuild, refresh_timeout=5)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            with pytest.raises(Unauthorized) as caught:
                await provider.chat("x")
            nursery.cancel_scope.cancel()
    finally:
        hanging.set()

    assert RefreshTimeoutError is type(caught.value.__context__)
    assert 5 <= ticks[0]


async def test_a_plain_refresh_leaves_an_asyncio_loop_free() -> None:
    """Under asyncio too, a plain refresh that waits for the loop to make progress returns."""
    ticks = [0]

    def rebuild(stale: Any) -> Any:
        start = ticks[0]
        while ticks[0] < start + 10:  # only a free loop can tick meanwhile
            threading.Event().wait(0.001)
        return Fine()

    class Fine:
        async def chat(self, request: str) -> str:
            return "fresh"

    class Expired:
        async def chat(self, request: str) -> str:
            raise Unauthorized

    async def main() -> str:
        async def ticker() -> None:
            while True:
                ticks[0] += 1
                await asyncio.sleep(0)

        tick = asyncio.ensure_future(ticker())
        try:
            return await refresh_on_401(Expired(), refresh=rebuild).chat("x")
        finally:
            tick.cancel()

    assert "fresh" == await trio.to_thread.run_sync(asyncio.run, main())


# --------------------------------------------------------------------------------------------------
# re-entrant refreshes


class SelfChecking:
    """A provider whose refresh checks the new key by calling the provider itself."""

    def __init__(self) -> None:
        self.key = "expired"
        self.embeds = 0

    async def chat(self, request: str) -> str:
        if self.key != "fresh":
            raise Unauthorized
        return "hello"

    async def embed(self, text: str) -> list[float]:
        self.embeds += 1
        raise Unauthorized  # the new key is refused too


@pytest.mark.parametrize("timeout", [30.0, None])
async def test_a_refresh_calling_its_own_provider_neither_deadlocks_nor_waits(
    autojump_clock: trio.testing.MockClock,
    timeout: float | None,  # noqa: ASYNC109 - the refresh_timeout under test, not this test's
) -> None:
    """A class-mode refresh that checks the key with self.embed() and meets a 401 ends at once:
    the caller gets its 401, and the cause says the refresh's own call failed."""

    async def reload_key(provider: Any) -> None:
        provider.key = "rejected"
        await provider.embed("check")

    decorated = refresh_on_401(refresh=reload_key, refresh_timeout=timeout)(
        type("Checked", (SelfChecking,), {})
    )
    provider = decorated()

    with trio.fail_after(1):
        with pytest.raises(Unauthorized) as caught:
            await provider.chat("x")

    cause = caught.value.__context__
    assert Unauthorized is type(cause)
    assert "made by the refresh of the same credentials" in "".join(cause.__notes__)
    assert (0.0, 1) == (trio.current_time(), provider.embeds)


@pytest.mark.parametrize("timeout", [30.0, None])
def test_a_sync_refresh_calling_its_own_provider_neither_deadlocks_nor_waits(
    timeout: float | None,
) -> None:
    """The same in a thread: a sync refresh that calls the provider it refreshes."""

    class Sync:
        def __init__(self) -> None:
            self.key = "expired"

        def chat(self, request: str) -> str:
            raise Unauthorized

        def embed(self, text: str) -> list[float]:
            raise Unauthorized

    def reload_key(provider: Any) -> None:
        provider.embed("check")

    provider = refresh_on_401(refresh=reload_key, refresh_timeout=timeout)(
        type("SyncChecked", (Sync,), {})
    )()
    done: list[BaseException] = []

    def call() -> None:
        try:
            provider.chat("x")
        except Unauthorized as error:
            done.append(error)

    run_in_thread(call).join(WAIT)

    assert "made by the refresh of the same credentials" in "".join(done[0].__context__.__notes__)


# --------------------------------------------------------------------------------------------------
# interrupts


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("timeout", [30.0, None])
def test_an_interrupt_raised_by_a_sync_refresh_reaches_the_caller_as_itself(
    interrupt: type[BaseException], timeout: float | None
) -> None:
    """KeyboardInterrupt and SystemExit from a sync refresh are raised as they are, start no
    cooldown, and the next call refreshes again."""
    script = Script(valid_from=1)
    script.chats.append("ok")
    calls = [0]

    def rebuild(stale: SyncProvider) -> SyncProvider:
        calls[0] += 1
        if calls[0] == 1:
            raise interrupt
        return SyncProvider(script, stale.key + 1)

    provider = refresh_on_401(SyncProvider(script), refresh=rebuild, refresh_timeout=timeout)

    with pytest.raises(interrupt):
        provider.chat("x")

    assert ("ok", 2) == (provider.chat("x"), calls[0])


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
async def test_an_interrupt_from_a_plain_refresh_in_a_thread_reaches_the_async_caller(
    interrupt: type[BaseException],
) -> None:
    """A plain refresh on an async provider runs in a worker thread; its interrupt comes back."""

    def rebuild(stale: Any) -> Any:
        raise interrupt

    class Expired:
        async def chat(self, request: str) -> str:
            raise Unauthorized

    provider = refresh_on_401(Expired(), refresh=rebuild)

    with pytest.raises(interrupt):
        await provider.chat("x")


# --------------------------------------------------------------------------------------------------
# the flight's parts, one by one


def test_a_signal_set_twice_wakes_once_and_stays_set() -> None:
    """Setting a signal again changes nothing; a wait after it returns at once."""
    signal = Signal()
    signal.set()
    signal.set()

    assert True is signal.wait_sync(0)


def test_a_forked_child_resets_a_flight_before_its_first_claim() -> None:
    """What a child inherits (a refresh in progress, a held lock) is dropped at its first
    claim, and the refresher that was running in the parent cannot clear the child's."""
    flight: Flight[str] = Flight("stale")
    running = flight._claim(0, urgent=False, first=True)
    flight._lock.acquire()  # another thread held it when the process forked

    _after_fork_in_child()  # what os.register_at_fork runs in a child
    outcome = flight.refresh_sync(0, lambda: "fresh")
    flight._release(running)  # the parent's refresher, had it lived here: no effect

    assert (Outcome("fresh", None), False) == (outcome, flight.busy())


def test_a_result_handed_on_after_its_thread_ended_is_handed_on_at_once() -> None:
    """`then` on a worker whose thread has ended calls back at once, with its result."""
    worker = Worker(lambda: "fresh")
    worker.done.wait_sync(WAIT)
    results: list[str] = []

    worker.then(lambda result: results.append(result()))

    assert ["fresh"] == results


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_setting_a_signal_skips_loops_that_have_closed(backend: str) -> None:
    """A loop that waited and has closed since is not woken (it cannot be): set() goes on."""
    signal = Signal()

    async def wait_briefly() -> None:
        if backend == "trio":
            with trio.move_on_after(0):
                await signal.wait_async()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait_async(), 0)

    if backend == "trio":
        run_in_thread(trio.run, wait_briefly).join(WAIT)
    else:
        run_in_thread(asyncio.run, wait_briefly()).join(WAIT)
    signal.set()

    assert True is signal.wait_sync(0)


# --------------------------------------------------------------------------------------------------
# loops that close


def test_a_refresher_abandoned_by_a_closed_loop_and_collected_strands_no_later_caller() -> None:
    """A loop closes while its task refreshes; when the abandoned refresher is collected (in
    another context), the claim is released and the next caller runs the refresh."""
    server = Server(callers=1)
    started = threading.Event()

    async def rebuild(stale: Both) -> Both:
        server.refreshes += 1
        if server.refreshes == 1:  # the first, in the loop about to close: never ends
            started.set()
            await asyncio.Event().wait()
        server.valid += 1
        return Both(server, server.valid)

    provider = refresh_on_401(Both(server), refresh=rebuild, calls=("chat",))
    closing = asyncio.new_event_loop()
    task = closing.create_task(provider.chat("hello"))
    closing.run_until_complete(asyncio.to_thread(started.wait, WAIT))
    closing.close()  # the refreshing task is still pending: abandoned
    del task
    gc.collect()  # the refresher is closed here, in this context, not the task's

    async def later() -> int:
        with trio.fail_after(WAIT):
            return await provider.chat("hello")

    assert (2, 2) == (trio.run(later), server.refreshes)


async def test_a_task_a_refresh_started_is_retried_during_a_later_refresh() -> None:
    """A task started from inside one refresh outlives it; its 401 during a later refresh waits
    for that refresh and is retried, instead of being taken for a re-entrant call."""
    script = Script(valid_from=1)
    script.chats.extend(["ok"] * 3)
    second_started = trio.Event()
    second_may_end = trio.Event()
    answers: list[str] = []

    async def background() -> None:
        await second_started.wait()
        answers.append(await provider.chat("x"))  # on generation 1, refused meanwhile

    async def rebuild(stale: AsyncProvider) -> AsyncProvider:
        script.refreshes += 1
        if script.refreshes == 1:
            nursery.start_soon(background)  # started inside this refresh, lives on after it
        else:
            second_started.set()
            await second_may_end.wait()
        return AsyncProvider(script, stale.key + 1)

    async with trio.open_nursery() as nursery:
        provider = refresh_on_401(AsyncProvider(script), refresh=rebuild)
        await provider.chat("x")
        script.valid_from = 2  # the credentials of generation 1 expire
        nursery.start_soon(provider.chat, "x")
        await trio.testing.wait_all_tasks_blocked()
        second_may_end.set()

    assert (2, ["ok"]) == (script.refreshes, answers)


# --------------------------------------------------------------------------------------------------
# a refresher cancelled while its worker thread runs


class Blocked:
    """A plain refresh that blocks its worker thread until released, then ends as told."""

    def __init__(self, script: Script, end: BaseException | None = None) -> None:
        self.script = script
        self.end = end
        self.inside = threading.Event()
        self.release = threading.Event()

    def __call__(self, stale: AsyncProvider) -> AsyncProvider:
        self.script.refreshes += 1
        if self.script.refreshes == 1:
            self.inside.set()
            self.release.wait(WAIT)
            if self.end is not None:
                raise self.end
        return AsyncProvider(self.script, stale.key + 1)


async def cancel_the_refresher_then_release(
    provider: Any, refresh: Blocked, *, release: bool = True
) -> list[object]:
    """A refresher is cancelled while its thread runs; a waiter is queued; the thread ends
    (unless `release` is False)."""
    outcomes: list[object] = []

    async def refresher(task_status: Any) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await provider.chat("x")

    async def waiter() -> None:
        try:
            outcomes.append(await provider.chat("x"))
        except Unauthorized as error:
            outcomes.append(type(error.__context__))

    async with trio.open_nursery() as nursery:
        scope = await nursery.start(refresher)
        await trio.to_thread.run_sync(refresh.inside.wait, WAIT)
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        if release:
            refresh.release.set()
    return outcomes


@pytest.mark.parametrize("timeout", [WAIT, None])
async def test_cancelling_the_refresher_of_a_plain_refresh_starts_no_second_refresh(
    timeout: float | None,  # noqa: ASYNC109 - the refresh_timeout under test, not this test's
) -> None:
    """The caller whose plain refresh runs in a worker thread is cancelled: the waiters get
    that thread's result, and no second refresh starts meanwhile."""
    script = Script(valid_from=1)
    script.chats.append("ok")
    refresh = Blocked(script)
    provider = refresh_on_401(AsyncProvider(script), refresh=refresh, refresh_timeout=timeout)

    outcomes = await cancel_the_refresher_then_release(provider, refresh)

    assert (1, ["ok"]) == (script.refreshes, outcomes)


async def test_the_failure_of_a_refresh_whose_refresher_was_cancelled_is_shared() -> None:
    """The thread of a cancelled refresher fails: the waiters share that failure."""
    script = Script(valid_from=1)
    refresh = Blocked(script, OSError("token endpoint down"))
    provider = refresh_on_401(AsyncProvider(script), refresh=refresh)

    outcomes = await cancel_the_refresher_then_release(provider, refresh)

    assert (1, [OSError]) == (script.refreshes, outcomes)


async def test_an_interrupted_refresh_whose_refresher_was_cancelled_leaves_no_verdict() -> None:
    """The thread of a cancelled refresher is interrupted: nobody is left to raise it to, and
    the waiter runs the refresh itself."""
    script = Script(valid_from=1)
    script.chats.append("ok")
    refresh = Blocked(script, KeyboardInterrupt())
    provider = refresh_on_401(AsyncProvider(script), refresh=refresh)

    outcomes = await cancel_the_refresher_then_release(provider, refresh)

    assert (2, ["ok"]) == (script.refreshes, outcomes)


async def test_a_refresh_whose_refresher_was_cancelled_is_still_bounded_by_the_timeout() -> None:
    """The thread of a cancelled refresher overruns the refresh timeout: the waiters get a
    RefreshTimeoutError then, and the thread's late result is thrown away."""
    script = Script(valid_from=1)
    refresh = Blocked(script)
    provider = refresh_on_401(AsyncProvider(script), refresh=refresh, refresh_timeout=1.0)

    outcomes = await cancel_the_refresher_then_release(provider, refresh, release=False)
    refresh.release.set()
    for thread in threading.enumerate():
        if thread.name == "refresh_middleware refresh":
            thread.join(WAIT)

    assert ([RefreshTimeoutError], 0) == (outcomes, provider.__wrapped__.key)
