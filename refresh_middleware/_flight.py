"""Single-flight refresh: one refresh per credential generation, whoever asks and however.

Every provider holder (a proxy, or an instance of a decorated class) has one `Flight`. It counts
credential *generations*: a caller remembers the generation its call used, and after a 401 asks
the flight to refresh *that* generation. Inside the lock, a caller whose generation is already
gone simply takes the fresh provider, so N callers failing together cause exactly one refresh.
Callers queued behind a refresh that failed share its failure. A refresher that is cancelled
releases the lock without a verdict, and the next waiter runs the refresh itself.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

import sniffio

__all__ = ["Flight", "RefreshOutcome", "attach_refresh_failure", "check_replacement"]

logger: Final = logging.getLogger("refresh_middleware")

# (fresh provider, None) on success, (None, refresh error) on failure.
RefreshOutcome = tuple[Any, Exception | None]


def check_replacement(
    stale: object, result: object, *, in_place: bool, names: tuple[str, ...]
) -> Any:
    """The provider to use after `refresh(stale)` returned `result`, or a TypeError to raise."""
    if result is None or result is stale:
        return stale
    if in_place:
        msg = (
            f"refresh returned a {type(result).__name__}; a decorated class is refreshed in "
            "place, so refresh must update the instance it is given and return None"
        )
        raise TypeError(msg)
    missing = [name for name in names if not callable(getattr(result, name, None))]
    if missing:
        msg = (
            f"refresh returned a {type(result).__name__}, which has no {', '.join(missing)}; "
            "return a replacement provider, or None after refreshing the stale one in place"
        )
        raise TypeError(msg)
    return result


class Flight:
    """The generation counter and refresh lock of one provider holder.

    `state` is `(generation, provider)`, replaced as one tuple so a thread never pairs a
    generation with another generation's provider. In class mode the provider slot holds None:
    the instance is the provider, refreshed in place.
    """

    __slots__ = ("__weakref__", "_async_locks", "_failure", "_thread_lock", "state")

    def __init__(self, provider: object) -> None:
        self.state: tuple[int, Any] = (0, provider)
        # (number of failed refreshes so far, the latest failure)
        self._failure: tuple[int, Exception | None] = (0, None)
        self._thread_lock = threading.Lock()
        self._async_locks: weakref.WeakKeyDictionary[object, Any] | None = None

    # -- the refresh itself ----------------------------------------------------------------------

    def _finish(
        self, generation: int, stale: object, fresh: object, install: Callable[[Any], None] | None
    ) -> Any:
        in_place = self.state[1] is None
        self.state = (generation + 1, None if in_place else fresh)
        if install is not None and fresh is not stale:
            install(fresh)
        logger.info("refresh_middleware: credentials refreshed (generation %d)", generation + 1)
        return fresh

    def _fail(self, error: Exception) -> RefreshOutcome:
        count, _ = self._failure
        self._failure = (count + 1, error)
        logger.warning(
            "refresh_middleware: refreshing credentials failed (%s); the original 401 is surfaced",
            type(error).__name__,
        )
        return None, error

    def _settled(self, generation: int, failures_seen: int) -> RefreshOutcome | None:
        """What a caller gets without refreshing, or None when it must refresh itself."""
        current, provider = self.state
        if current != generation:
            return provider, None
        count, error = self._failure
        if count != failures_seen:
            return None, error
        return None

    async def refresh_async(
        self,
        generation: int,
        stale: object,
        refresh: Callable[[Any], Any],
        check: Callable[[object, object], Any],
        install: Callable[[Any], None] | None,
    ) -> RefreshOutcome:
        """Refresh `generation` once, however many tasks ask; returns the outcome they share."""
        failures_seen = self._failure[0]
        async with self._async_lock():
            settled = self._settled(generation, failures_seen)
            if settled is not None:
                return settled if settled[1] is not None else (self._provider(stale), None)
            try:
                result = refresh(stale)
                if inspect.isawaitable(result):
                    result = await result
                fresh = check(stale, result)
            except Exception as error:  # noqa: BLE001 - any refresh failure surfaces the 401
                return self._fail(error)
            return self._finish(generation, stale, fresh, install), None

    def refresh_sync(
        self,
        generation: int,
        stale: object,
        refresh: Callable[[Any], Any],
        check: Callable[[object, object], Any],
        install: Callable[[Any], None] | None,
    ) -> RefreshOutcome:
        """The thread form of `refresh_async`, for synchronous providers."""
        failures_seen = self._failure[0]
        with self._thread_lock:
            settled = self._settled(generation, failures_seen)
            if settled is not None:
                return settled if settled[1] is not None else (self._provider(stale), None)
            try:
                result = refresh(stale)
                if inspect.isawaitable(result):
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()  # a never-awaited coroutine would warn at collection
                    msg = (
                        "refresh returned an awaitable, but a synchronous provider cannot await it"
                    )
                    raise TypeError(msg)
                fresh = check(stale, result)
            except Exception as error:  # noqa: BLE001 - any refresh failure surfaces the 401
                return self._fail(error)
            return self._finish(generation, stale, fresh, install), None

    def _provider(self, holder: object) -> Any:
        provider = self.state[1]
        return holder if provider is None else provider

    # -- locks, one per event loop ---------------------------------------------------------------

    def _async_lock(self) -> Any:
        """The lock of the running event loop, made on first use in that loop.

        A trio.Lock does not work under asyncio and an asyncio.Lock belongs to one loop, so each
        loop gets its own, keyed weakly by the loop (asyncio) or the run's token (trio).
        """
        library = sniffio.current_async_library()
        if library == "trio":
            import trio  # noqa: PLC0415 - asyncio users need not install trio

            key: object = trio.lowlevel.current_trio_token()
            factory: Callable[[], Any] = trio.Lock
        elif library == "asyncio":
            import asyncio  # noqa: PLC0415

            key = asyncio.get_running_loop()
            factory = asyncio.Lock
        else:
            msg = f"refresh_middleware supports trio and asyncio, not {library}"
            raise RuntimeError(msg)
        with self._thread_lock:
            if self._async_locks is None:
                self._async_locks = weakref.WeakKeyDictionary()
            lock = self._async_locks.get(key)
            if lock is None:
                lock = self._async_locks[key] = factory()
        return lock


def attach_refresh_failure(original: BaseException, error: Exception) -> None:
    """Attach a failed refresh to the 401 it was meant to fix, leaving the 401 itself as it was.

    The refresh error becomes the 401's `__context__` (reachable, and shown by tracebacks) and a
    PEP 678 note says what happened. Only the error's type is named: messages of auth errors can
    carry secrets.
    """
    original.add_note(
        "refresh_middleware: refreshing credentials after this 401 failed with "
        f"{type(error).__name__} (see __context__); the call was not retried"
    )
    # SDK errors are often raised `from None`: their context is hidden, so taking it over loses
    # nothing. A visible context of their own is left alone; the note still tells.
    if original.__context__ is None or original.__suppress_context__:
        original.__context__ = error
