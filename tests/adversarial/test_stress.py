"""Single flight under load: many threads, many trio streams, and one proxy across event loops."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from typing import Any

import pytest
import sniffio
import trio
import trio.testing

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import UnauthorizedError as Unauthorized

THREADS = 64
ROUNDS = 4
STREAMS = 200
TASKS_PER_LOOP = 32


@dataclasses.dataclass
class State:
    """Shared by every provider of one test: which keys are valid, and what happened."""

    valid_from: int = 1
    refreshes: int = 0
    opens: int = 0
    closes: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    barrier: threading.Barrier | None = None
    stream_401: str = "exception"
    all_open: Any = None

    def count_refresh(self) -> None:
        with self.lock:
            self.refreshes += 1


# --------------------------------------------------------------------------------------------------
# threads


class ThreadProvider:
    """A sync provider whose expired calls all wait for each other before answering 401."""

    def __init__(self, state: State, key: int = 0) -> None:
        self.state = state
        self.key = key

    def chat(self, request: str) -> str:
        key = self.key
        if key < self.state.valid_from:
            assert self.state.barrier is not None
            self.state.barrier.wait(timeout=30)  # every thread holds a 401 of one generation
            raise Unauthorized("HTTP 401 Unauthorized")
        return f"{request}: ok"


def _rebuild_thread(stale: ThreadProvider) -> ThreadProvider:
    stale.state.count_refresh()
    time.sleep(0.005)  # the auth server's round trip, so that the other threads pile up
    return ThreadProvider(stale.state, stale.key + 1)


def _reload_thread(stale: ThreadProvider) -> None:
    stale.state.count_refresh()
    time.sleep(0.005)
    stale.key += 1


DecoratedThreadProvider = refresh_on_401(refresh=_reload_thread)(
    type("DecoratedThreadProvider", (ThreadProvider,), {})
)


@pytest.mark.parametrize("mode", ["instance", "class"])
def test_64_threads_on_expired_credentials_share_one_refresh_per_round(mode: str) -> None:
    """64 threads that get a 401 on the same credentials cause one refresh, round after round."""
    state = State()
    if mode == "class":
        provider: Any = DecoratedThreadProvider(state)
    else:
        provider = refresh_on_401(ThreadProvider(state), refresh=_rebuild_thread)
    per_round = []
    for round_number in range(ROUNDS):
        state.valid_from = round_number + 1  # the credentials of the last round expire
        state.barrier = threading.Barrier(THREADS)
        state.refreshes = 0
        results: list[str] = []

        def call(index: int) -> None:
            results.append(provider.chat(f"call {index}"))  # noqa: B023 - joined before the next round

        threads = [threading.Thread(target=call, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        per_round.append((state.refreshes, sorted(results)))
    expected = sorted(f"call {i}: ok" for i in range(THREADS))
    assert [(1, expected)] * ROUNDS == per_round


# --------------------------------------------------------------------------------------------------
# one proxy, successive event loops


async def _checkpoint() -> None:
    if sniffio.current_async_library() == "trio":
        await trio.lowlevel.checkpoint()
    else:
        await asyncio.sleep(0)


class LoopProvider:
    """An async provider that runs under trio and asyncio alike."""

    def __init__(self, state: State, key: int = 0) -> None:
        self.state = state
        self.key = key

    async def chat(self, request: str) -> str:
        key = self.key
        for _ in range(3):
            await _checkpoint()
        if key < self.state.valid_from:
            raise Unauthorized("HTTP 401 Unauthorized")
        return f"{request}: ok"

    async def chat_stream(self, request: str) -> Any:
        key = self.key
        self.state.opens += 1
        try:
            await _checkpoint()
            if key < self.state.valid_from:
                raise Unauthorized("HTTP 401 Unauthorized")
            for part in ("a", "b"):
                await _checkpoint()
                yield {"type": "text_delta", "text": f"{request} {part}"}
        finally:
            self.state.closes += 1


async def _rebuild_loop(stale: LoopProvider) -> LoopProvider:
    stale.state.count_refresh()
    for _ in range(5):
        await _checkpoint()
    return LoopProvider(stale.state, stale.key + 1)


async def _loop_round(provider: Any) -> list[Any]:
    """TASKS_PER_LOOP calls and as many streams at once, in whichever loop is running."""

    async def call(index: int) -> Any:
        return await provider.chat(f"call {index}")

    async def stream(index: int) -> Any:
        async with contextlib.aclosing(provider.chat_stream(f"stream {index}")) as items:
            return [item["text"] async for item in items]

    jobs = [call(i) for i in range(TASKS_PER_LOOP)] + [stream(i) for i in range(TASKS_PER_LOOP)]
    if sniffio.current_async_library() == "asyncio":
        return list(await asyncio.gather(*jobs))
    results: list[Any] = [None] * len(jobs)

    async def keep(index: int, job: Any) -> None:
        results[index] = await job

    async with trio.open_nursery() as nursery:
        for index, job in enumerate(jobs):
            nursery.start_soon(keep, index, job)
    return results


def test_one_proxy_refreshes_once_per_round_across_trio_and_two_asyncio_runs() -> None:
    """A proxy used under trio, then in two asyncio.run()s, refreshes once per expiry in each."""
    state = State()
    provider = refresh_on_401(LoopProvider(state), refresh=_rebuild_loop)
    runners = [trio.run, asyncio.run, asyncio.run]
    per_round = []
    for round_number, runner in enumerate(runners):
        state.valid_from = round_number + 1
        state.refreshes = 0
        if runner is trio.run:
            results = trio.run(_loop_round, provider)
        else:
            results = asyncio.run(_loop_round(provider))
        per_round.append((state.refreshes, results))
    expected = [f"call {i}: ok" for i in range(TASKS_PER_LOOP)]
    expected += [[f"stream {i} a", f"stream {i} b"] for i in range(TASKS_PER_LOOP)]
    assert ([(1, expected)] * len(runners), state.opens) == (per_round, state.closes)


# --------------------------------------------------------------------------------------------------
# many trio streams


class StreamProvider:
    """Streams whose expired attempts all open before any of them reports its 401."""

    def __init__(self, state: State, key: int = 0) -> None:
        self.state = state
        self.key = key

    async def chat_stream(self, request: str) -> Any:
        state, key = self.state, self.key
        state.opens += 1
        if state.opens == STREAMS:
            state.all_open.set()
        try:
            await trio.sleep(1)
            if key < state.valid_from:
                await state.all_open.wait()  # every stream holds credentials of one generation
                yield {"type": "message_start", "usage": {"input_tokens": 7}}
                if state.stream_401 == "exception":
                    raise Unauthorized("HTTP 401 Unauthorized")
                yield {"type": "error", "error": {"type": "authentication_error"}}
            for part in range(3):
                await trio.sleep(1)
                yield {"type": "text_delta", "text": f"{request} {part}"}
            yield {"type": "message_delta", "usage": {"input_tokens": 5}}
            yield {"type": "message_stop"}
        finally:
            state.closes += 1


async def _rebuild_stream(stale: StreamProvider) -> StreamProvider:
    stale.state.count_refresh()
    await trio.sleep(3)
    return StreamProvider(stale.state, stale.key + 1)


async def _reload_stream(stale: StreamProvider) -> None:
    stale.state.count_refresh()
    await trio.sleep(3)
    stale.key += 1


DecoratedStreamProvider = refresh_on_401(refresh=_reload_stream)(
    type("DecoratedStreamProvider", (StreamProvider,), {})
)


@pytest.mark.parametrize("reported_as", ["exception", "error item"])
@pytest.mark.parametrize("mode", ["instance", "class"])
async def test_200_trio_streams_with_a_401_before_output_share_one_refresh(
    mode: str, reported_as: str, autojump_clock: trio.testing.MockClock
) -> None:
    """200 streams that meet a 401 before output refresh once and each complete, once."""
    state = State(stream_401=reported_as, all_open=trio.Event())
    if mode == "class":
        provider: Any = DecoratedStreamProvider(state)
    else:
        provider = refresh_on_401(StreamProvider(state), refresh=_rebuild_stream)
    seen: dict[int, list[Any]] = {}

    async def consume(index: int) -> None:
        async with contextlib.aclosing(provider.chat_stream(f"s{index}")) as stream:
            seen[index] = [item async for item in stream]

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for index in range(STREAMS):
                nursery.start_soon(consume, index)

    def expected(index: int) -> list[Any]:
        return [
            {"type": "message_start", "usage": {"input_tokens": 7}},
            *({"type": "text_delta", "text": f"s{index} {part}"} for part in range(3)),
            {"type": "message_delta", "usage": {"input_tokens": 12}},  # 5 + the abandoned 7
            {"type": "message_stop"},
        ]

    assert (1, {i: expected(i) for i in range(STREAMS)}, 2 * STREAMS) == (
        state.refreshes,
        seen,
        state.closes,
    )
