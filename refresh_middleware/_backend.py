"""Every difference between trio and asyncio, in one place: the rest of the code asks here.

As anyio's `get_async_backend()` does, `current()` names the backend of the running event loop
(`_Trio` or `_Asyncio`, each the whole of what that library does differently), and the module
functions below answer for it: the loop's key, its events and how another thread posts to it
(`loop`), a bounded wait (`bounded`), the shielded, bounded close of an abandoned stream
(`close_shielded`), the clock (`now`), `sleep`, a cancellation another library swallowed
(`cancellations`, `checkpoint_if_cancelled`), and whether an event loop runs here at all
(`in_event_loop`). No other module of the package imports trio or asyncio; an import-linter
contract in `nox -s lint` keeps it so.

trio is imported where it is first used, never at import: asyncio users need not install it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, NamedTuple, Protocol, TypeVar

import sniffio

__all__ = [
    "Backend",
    "Loop",
    "bounded",
    "cancellations",
    "checkpoint_if_cancelled",
    "close_shielded",
    "current",
    "in_event_loop",
    "library",
    "loop",
    "now",
    "run_on_private_loop",
    "shielded",
    "sleep",
]

R = TypeVar("R")


class Loop(NamedTuple):
    """The running event loop, as a waiter in another thread needs it."""

    key: Hashable
    """What tells this loop from every other (a trio run's token, an asyncio loop)."""
    event: Callable[[], Any]
    """Makes an event of this loop: a `trio.Event` or an `asyncio.Event`."""
    post: Callable[[Callable[[], object]], object]
    """Schedules a callback in this loop from any thread (`run_sync_soon`, ...)."""


class Backend(Protocol):
    """What one async library does its own way."""

    name: str

    def loop(self) -> Loop:
        """The running event loop."""
        ...

    async def bounded(
        self, run: Callable[[], Awaitable[R]], seconds: float, timed_out: Callable[[], Exception]
    ) -> R:
        """`await run()`, cancelled after `seconds`; `timed_out()` is raised then."""
        ...

    async def close_shielded(
        self, closing: Callable[[], Awaitable[object]], seconds: float
    ) -> None:
        """`await closing()`, shielded from cancellation and cut short after `seconds`."""
        ...

    async def shielded(self, run: Callable[[], Awaitable[R]]) -> R:
        """`await run()` to its end, shielded from cancellation; `run` bounds itself."""
        ...

    def clock(self) -> tuple[object, float]:
        """The clock of this loop and the time on it."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep in this loop."""
        ...

    def cancellations(self) -> int:
        """What `checkpoint_if_cancelled` compares with: asyncio's count of requests."""
        ...

    async def checkpoint_if_cancelled(self, before: int) -> None:
        """Raise this task's cancellation if one is pending (requested since `before`)."""
        ...


class _Trio:
    """trio: tokens, its own events, cancel scopes; a run's clock may be virtual."""

    name = "trio"

    def loop(self) -> Loop:
        import trio

        token = trio.lowlevel.current_trio_token()
        return Loop(token, trio.Event, token.run_sync_soon)

    async def bounded(
        self, run: Callable[[], Awaitable[R]], seconds: float, timed_out: Callable[[], Exception]
    ) -> R:
        import trio

        with trio.move_on_after(seconds):
            return await run()
        raise timed_out()

    async def close_shielded(
        self, closing: Callable[[], Awaitable[object]], seconds: float
    ) -> None:
        # Trio finalizes an abandoned async generator inside a cancelled scope, where an
        # unshielded close would be cut short without a word.
        import trio

        with trio.move_on_after(seconds, shield=True):
            await closing()

    async def shielded(self, run: Callable[[], Awaitable[R]]) -> R:
        import trio

        # The caller's cancellation is delivered at its next checkpoint after `run`. (A list,
        # since the checkers cannot know that a shielded scope never swallows the return.)
        results: list[R] = []
        with trio.CancelScope(shield=True):
            results.append(await run())
        return results[0]

    def clock(self) -> tuple[object, float]:
        # Trio's clock can be virtual (tests use `autojump_clock`): each run is a clock of its own.
        import trio

        return trio.lowlevel.current_trio_token(), trio.current_time()

    async def sleep(self, seconds: float) -> None:
        import trio

        await trio.sleep(seconds)

    def cancellations(self) -> int:
        return 0  # a cancelled scope stays cancelled: nothing to count

    async def checkpoint_if_cancelled(self, before: int) -> None:  # noqa: ARG002 - asyncio's
        import trio

        await trio.lowlevel.checkpoint_if_cancelled()


class _Asyncio:
    """asyncio: loops, their events, `asyncio.timeout`; the clock is `time.monotonic`."""

    name = "asyncio"

    def loop(self) -> Loop:
        running = asyncio.get_running_loop()
        return Loop(running, asyncio.Event, running.call_soon_threadsafe)

    async def bounded(
        self, run: Callable[[], Awaitable[R]], seconds: float, timed_out: Callable[[], Exception]
    ) -> R:
        # Only a timeout of this scope becomes `timed_out()`: a `TimeoutError` that `run`
        # raises itself passes as it is.
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                return await run()
        except TimeoutError:
            if scope.expired():
                raise timed_out() from None
            raise

    async def close_shielded(
        self, closing: Callable[[], Awaitable[object]], seconds: float
    ) -> None:
        async def close() -> None:
            async with asyncio.timeout(seconds):
                await closing()

        await self.shielded(close)

    async def shielded(self, run: Callable[[], Awaitable[R]]) -> R:
        # The shield is a task of its own, which a cancellation landing meanwhile does not
        # interrupt: `run` goes on, and the cancellation is delivered after.
        async def whole() -> R:
            return await run()

        task = asyncio.ensure_future(whole())
        interrupted: BaseException | None = None
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError as cancelled:
                interrupted = cancelled
        if interrupted is not None:
            raise interrupted
        return task.result()

    def clock(self) -> tuple[object, float]:
        return time.monotonic, time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def cancellations(self) -> int:
        task = asyncio.current_task()
        assert task is not None  # called from a coroutine  # noqa: S101
        return task.cancelling()

    async def checkpoint_if_cancelled(self, before: int) -> None:
        # A CancelledError that was caught and replaced leaves only its count behind, which
        # `asyncio.timeout` or the canceller waits to see resolved by a CancelledError.
        if self.cancellations() > before:
            raise asyncio.CancelledError


_BACKENDS: Final[dict[str, Backend]] = {"trio": _Trio(), "asyncio": _Asyncio()}


def current() -> Backend:
    """The backend of the event loop running this task; anything but trio or asyncio is refused."""
    name = sniffio.current_async_library()
    backend = _BACKENDS.get(name)
    if backend is None:
        msg = f"refresh_middleware supports trio and asyncio, not {name}"
        raise RuntimeError(msg)
    return backend


def library() -> str:
    """The async library running this task: "trio" or "asyncio"; anything else is refused."""
    return current().name


def in_event_loop() -> bool:
    """True when an event loop runs in this thread (async work can wait for an `await`)."""
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True


def loop() -> Loop:
    """The running event loop: its key, how to make an event in it, how to wake it."""
    return current().loop()


def bounded(
    run: Callable[[], Awaitable[R]], seconds: float, timed_out: Callable[[], Exception]
) -> Awaitable[R]:
    """`await run()`, cancelled after `seconds` under trio or asyncio; `timed_out()` then."""
    return current().bounded(run, seconds, timed_out)


def close_shielded(closing: Callable[[], Awaitable[object]], seconds: float) -> Awaitable[None]:
    """`await closing()` shielded from cancellation, for at most `seconds`.

    An abandoned stream's close must run to its end even in a cancelled task; a cancellation
    that lands meanwhile is delivered after it.
    """
    return current().close_shielded(closing, seconds)


def shielded(run: Callable[[], Awaitable[R]]) -> Awaitable[R]:
    """`await run()` to its end even when the caller is cancelled meanwhile.

    For what must not be cut in half: a grant the identity provider may already have processed
    and the write that keeps its rotated refresh token. `run` bounds itself. The caller's
    cancellation is delivered once `run` is done (trio: at the caller's next checkpoint;
    asyncio: raised here, after `run` ended in a task of its own).
    """
    return current().shielded(run)


def sleep(seconds: float) -> Awaitable[None]:
    """Sleep in the running event loop, whichever it is."""
    return current().sleep(seconds)


def now() -> tuple[object, float]:
    """The current time, with the clock it was read from.

    Each trio run is a clock of its own; asyncio and threads read `time.monotonic`. Times of
    different clocks never compare.
    """
    try:
        name = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        name = None
    backend = _BACKENDS.get(name) if name is not None else None
    if backend is None:
        return time.monotonic, time.monotonic()
    return backend.clock()


def cancellations() -> int:
    """A mark for `checkpoint_if_cancelled`: the cancellations requested of this task so far.

    asyncio counts them; under trio it is 0, since a cancelled scope stays cancelled.
    """
    return current().cancellations()


def checkpoint_if_cancelled(before: int) -> Awaitable[None]:
    """Raise this task's cancellation if one is pending, though something swallowed it.

    A library that catches a cancellation and raises another error (coredis does, while it
    connects) would have it pass as that error. Under trio the cancelled scope says so; under
    asyncio, a request made since `before` (from `cancellations()`) was counted.
    """
    return current().checkpoint_if_cancelled(before)


def run_on_private_loop(run: Callable[[], Awaitable[R]]) -> R:
    """Run `run()` to its end on a new asyncio loop of its own, in this thread (which has none)."""
    return asyncio.run(_coroutine(run))


async def _coroutine(run: Callable[[], Awaitable[R]]) -> R:
    return await run()
