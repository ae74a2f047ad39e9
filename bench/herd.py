"""The herd: many callers fail with 401 on the same expired credential at once.

Ours is measured against a floor written here: the least any single-flight wrapper can do
(catch the 401, wait on one event, retry). Both must cause exactly one refresh; the figure is
the wall time of the whole herd, ours against the floor's, in the same run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

import trio
from doubles import Unauthorized
from measure import Config, Table, best_of, verdict, wall

from refresh_middleware import refresh_on_401

TARGET_RATIO = 2.0  # the floor's own figures allow no less than about 1.9


class Credentials:
    """The credential the server accepts, and how many times it was refreshed."""

    def __init__(self) -> None:
        self.valid = 2  # the providers start on generation 1: expired before the herd arrives
        self.refreshes = 0


class Loop(NamedTuple):
    """What the herd needs of an event loop library."""

    name: str
    checkpoint: Callable[[], Awaitable[None]]  # yield to the loop once, as I/O would
    event: Callable[[], Any]  # a fresh event: `await event.wait()`, `event.set()`
    run: Callable[[Callable[[], Awaitable[float]]], float]
    gather: Callable[[Callable[[], Awaitable[Any]], int], Awaitable[None]]  # run `count` tasks


async def asyncio_checkpoint() -> None:
    await asyncio.sleep(0)


async def asyncio_gather(call: Callable[[], Awaitable[Any]], count: int) -> None:
    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(call())


async def trio_gather(call: Callable[[], Awaitable[Any]], count: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(call)


TRIO = Loop("trio", trio.lowlevel.checkpoint, trio.Event, trio.run, trio_gather)
ASYNCIO = Loop(
    "asyncio",
    asyncio_checkpoint,
    asyncio.Event,
    lambda main: asyncio.run(main()),
    asyncio_gather,
)


class HerdProvider:
    """An async provider whose call yields to the loop once, as a network call would."""

    def __init__(self, token: int, credentials: Credentials, loop: Loop) -> None:
        self.token = token
        self.credentials = credentials
        self.loop = loop

    async def chat(self, request: object) -> object:
        await self.loop.checkpoint()
        if self.token != self.credentials.valid:
            raise Unauthorized("HTTP 401 Unauthorized: token_expired")
        return request


async def refresh(stale: HerdProvider) -> HerdProvider:
    """A new provider on a new credential; the fetch is I/O too, so the herd piles up behind it."""
    await stale.loop.checkpoint()
    credentials = stale.credentials
    credentials.refreshes += 1
    credentials.valid += 1
    return HerdProvider(credentials.valid, credentials, stale.loop)


class Event(Protocol):
    async def wait(self) -> Any: ...
    def set(self) -> Any: ...


class FloorWrapper:
    """The least a single-flight wrapper can do: catch the 401, wait on one event, retry.

    No classification beyond the exception's type, no failure sharing, no hand-over when the
    refresher is cancelled, no cooldown, no events: what is left is what every single-flight
    wrapper has to do, so no wrapper can be faster.
    """

    def __init__(self, provider: HerdProvider) -> None:
        self.provider = provider
        self.refreshing: Event | None = None

    async def chat(self, request: object) -> object:
        provider = self.provider
        try:
            return await provider.chat(request)
        except Unauthorized:
            if provider is self.provider:  # not replaced yet: refresh, or wait for the refresh
                if self.refreshing is None:
                    self.refreshing = event = provider.loop.event()
                    try:
                        self.provider = await refresh(provider)
                    finally:
                        self.refreshing = None
                        event.set()
                else:
                    await self.refreshing.wait()
            return await self.provider.chat(request)


WRAPPERS: dict[str, Callable[[HerdProvider], Any]] = {
    "floor": FloorWrapper,
    "ours": lambda stale: refresh_on_401(stale, refresh=refresh),
}


def herd(loop: Loop, wrapper: str, callers: int) -> Callable[[], float]:
    """One herd as a timed run: seconds of wall time, after checking there was one refresh."""

    def run() -> float:
        credentials = Credentials()
        provider = WRAPPERS[wrapper](HerdProvider(1, credentials, loop))

        async def main() -> float:
            start = time.perf_counter()
            await loop.gather(lambda: provider.chat(None), callers)
            return time.perf_counter() - start

        elapsed = loop.run(main)
        if credentials.refreshes != 1:
            raise RuntimeError(
                f"{wrapper} on {loop.name}: {callers:,} callers made "
                f"{credentials.refreshes} refreshes, not 1"
            )
        return elapsed

    return run


def run(config: Config) -> list[Table]:
    """Every herd size under trio and asyncio, ours and the floor interleaved."""
    table = Table(
        f"The herd: callers failing with 401 on one expired credential, each refreshed once "
        f"(wall time, best of {config.herd_rounds})",
        ("Herd", "floor", "ours", "ours / floor", "refreshes", "target", "verdict"),
    )
    print(f"\n== {table.title}", flush=True)
    for loop in (TRIO, ASYNCIO):
        for callers in config.herd_sizes:
            best = best_of(
                {name: herd(loop, name, callers) for name in WRAPPERS}, config.herd_rounds
            )
            ratio = best["ours"] / best["floor"]
            judged = loop is TRIO and callers == config.herd_judged
            table.add(
                f"{loop.name}, {callers:,} callers",
                wall(best["floor"]),
                wall(best["ours"]),
                f"{ratio:.2f}x",
                "1",
                f"≤ {TARGET_RATIO}x" if judged else "",
                verdict(ratio <= TARGET_RATIO) if judged else "",
            )
    table.notes.append(
        "Every run is checked to make exactly one refresh, ours and the floor's; a run that "
        "makes more stops the benchmark."
    )
    return [table]
