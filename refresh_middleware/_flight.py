"""Single-flight refresh: one refresh per credential generation, whoever asks and however.

Every provider holder (a proxy, or an instance of a decorated class) has one `Flight`. It counts
credential *generations*: a caller remembers the generation its call used, and after a 401 asks
the flight to refresh *that* generation. A caller whose generation is already gone simply takes
the fresh provider, so N callers failing together cause exactly one refresh: one runs it, the
others wait for its end (on a per-loop event, or a thread lock) and then look again. Callers
queued behind a refresh that failed share its failure. A refresher that is cancelled ends
without a verdict, and the first waiter to look again runs the refresh itself.

After a failure the flight cools down: for a short, doubling, capped delay new 401s get the
failure at once instead of hammering an auth server that is down. The first success clears it.
"""

from __future__ import annotations

import contextvars
import inspect
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import sniffio

from ._events import (
    RefreshCooldownError,
    RefreshError,
    RefreshFailed,
    RefreshStarted,
    RefreshSucceeded,
    RefreshTimedOut,
    RefreshTimeoutError,
    describe,
    emit,
    logger,
)

if TYPE_CHECKING:
    from ._spec import MethodSpec, Options

__all__ = [
    "Flight",
    "RefreshOutcome",
    "attach_refresh_failure",
    "check_replacement",
    "flight_of",
    "now",
    "skipped_because",
]

# Guards the tiny read-modify-write of Flight._asking; shared, as it is held for nanoseconds.
_ASKING = threading.Lock()

# (fresh provider, None) on success, (None, the error to attach to the 401) on failure.
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


def now() -> tuple[object, float]:
    """The current time, with the clock it was read from.

    Trio's clock can be virtual (tests use `autojump_clock`), so each trio run is a clock of its
    own; asyncio and threads read `time.monotonic`. Times of different clocks never compare.
    """
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    if library == "trio":
        import trio  # noqa: PLC0415 - asyncio users need not install trio

        return trio.lowlevel.current_trio_token(), trio.current_time()
    return time.monotonic, time.monotonic()


class Flight:
    """The generation counter, refresh in progress and failure memory of one provider holder.

    `state` is `(generation, provider)`, replaced as one tuple so a thread never pairs a
    generation with another generation's provider. In class mode the provider slot holds None:
    the instance is the provider, refreshed in place.
    """

    __slots__ = (
        "__weakref__",
        "_asking",
        "_cooldown",
        "_failure",
        "_running",
        "_thread_lock",
        "state",
    )

    def __init__(self, provider: object) -> None:
        self.state: tuple[int, Any] = (0, provider)
        # (number of failed refreshes so far, the latest failure)
        self._failure: tuple[int, Exception | None] = (0, None)
        # (clock, when the last refresh failed, how long to wait after it)
        self._cooldown: tuple[object, float, float] | None = None
        # (generation, how many callers asked to refresh it)
        self._asking = (0, 0)
        self._thread_lock: threading.Lock | None = None  # made on the first sync refresh
        # The refresh in progress in each event loop, by loop; empty between refreshes.
        self._running: dict[object, Any] = {}

    def current(self, holder: object) -> tuple[int, Any]:
        """The generation and provider a call starts on (the holder itself in class mode)."""
        generation, provider = self.state
        return generation, holder if provider is None else provider

    def busy_async(self) -> bool:
        """True while a task of this event loop is refreshing."""
        return _event_loop()[0] in self._running

    def busy_sync(self) -> bool:
        """True while a thread is refreshing."""
        return self._thread_lock is not None and self._thread_lock.locked()

    # -- bookkeeping shared by both forms --------------------------------------------------------

    def _ask(self, generation: int) -> int:
        """Count one more caller for `generation`; returns the failure count it saw.

        Called before waiting: a failure that happens while we wait is shared.
        """
        with _ASKING:
            asked_for, count = self._asking
            self._asking = (generation, count + 1 if asked_for == generation else 1)
        return self._failure[0]

    def _settled(
        self, generation: int, failures_seen: int, holder: object, spec: MethodSpec, trigger: str
    ) -> RefreshOutcome | None:
        """What a caller gets without refreshing, or None when it must refresh itself.

        Credentials in the mandatory window are about to lapse: there the cooldown is never
        longer than its first delay, so a recovered auth server is noticed within a second or
        so, while a down one still sees at most one attempt per delay.
        """
        current, provider = self.state
        if current != generation:
            return (holder if provider is None else provider), None
        count, error = self._failure
        if count != failures_seen:
            return None, error
        if self._cooldown is not None:
            clock, failed_at, delay = self._cooldown
            if trigger == "mandatory" and spec.options.cooldown is not None:
                delay = min(delay, spec.options.cooldown[0])
            until = failed_at + delay
            here, moment = now()
            if clock is here and moment < until:
                return None, RefreshCooldownError(
                    "the last refresh failed moments ago, and the next is not tried for "
                    f"another {until - moment:.3g} s (cooldown)"
                )
        return None

    def _shared_by(self, generation: int) -> int:
        asked_for, count = self._asking
        return count if asked_for == generation else 0

    def _finish(
        self,
        generation: int,
        stale: object,
        fresh: object,
        install: Callable[[Any], None] | None,
        spec: MethodSpec,
        started: float,
    ) -> None:
        in_place = self.state[1] is None
        self.state = (generation + 1, None if in_place else fresh)
        self._cooldown = None
        if install is not None and fresh is not stale:
            install(fresh)
        duration = now()[1] - started
        logger.info(
            "refresh_middleware: %s credentials refreshed in %.3f s (generation %d)",
            type(stale).__name__,
            duration,
            generation + 1,
        )
        emit(
            spec.options.on_event,
            RefreshSucceeded(
                type(stale).__name__, generation, duration, self._shared_by(generation)
            ),
        )

    def _fail(
        self, error: Exception, generation: int, stale: object, spec: MethodSpec, started: float
    ) -> RefreshOutcome:
        count, _ = self._failure
        self._failure = (count + 1, error)
        clock, moment = now()
        duration = moment - started
        cooldown = spec.options.cooldown
        if cooldown is not None:
            first, cap = cooldown
            delay = first if self._cooldown is None else min(cap, self._cooldown[2] * 2)
            self._cooldown = (clock, moment, delay)
        name, shared_by = type(stale).__name__, self._shared_by(generation)
        if isinstance(error, RefreshTimeoutError):
            timeout = spec.options.refresh_timeout or 0.0
            event: Any = RefreshTimedOut(name, generation, duration, shared_by, timeout)
        else:
            event = RefreshFailed(name, generation, duration, shared_by, describe(error))
        logger.warning(
            "refresh_middleware: refreshing %s credentials failed after %.3f s (%s)",
            name,
            duration,
            describe(error) if isinstance(error, RefreshError) else type(error).__name__,
        )
        emit(spec.options.on_event, event)
        return None, error

    # -- the refresh itself ----------------------------------------------------------------------

    async def refresh_async(
        self,
        generation: int,
        stale: object,
        spec: MethodSpec,
        install: Callable[[Any], None] | None,
        trigger: str = "401",
    ) -> RefreshOutcome:
        """Refresh `generation` once, however many tasks ask; returns the outcome they share.

        `trigger` says why, for the event: a "401", or the "advisory" or "mandatory" window of
        a proactive refresh.
        """
        failures_seen = self._ask(generation)
        loop, new_event = _event_loop()
        while True:
            settled = self._settled(generation, failures_seen, stale, spec, trigger)
            if settled is not None:
                return settled
            running = self._running.get(loop)
            if running is None:
                break
            # Every waiter wakes in the same scheduler batch when the refresh ends (a lock would
            # hand over one waiter at a time), then looks again: the usual answer is settled.
            # When the refresher was cancelled nothing is settled, and one waiter takes over.
            await running.wait()
        done = self._running[loop] = new_event()
        try:
            options = spec.options
            started = now()[1]
            if options.on_event is not None:
                emit(options.on_event, RefreshStarted(type(stale).__name__, generation, trigger))
            try:
                result = await _bounded(options, stale)
                fresh = spec.check(stale, result)
            except Exception as error:  # noqa: BLE001 - any refresh failure surfaces the 401
                return self._fail(error, generation, stale, spec, started)
            self._finish(generation, stale, fresh, install, spec, started)
            return fresh, None
        finally:
            del self._running[loop]
            done.set()

    def refresh_sync(
        self,
        generation: int,
        stale: object,
        spec: MethodSpec,
        install: Callable[[Any], None] | None,
        trigger: str = "401",
    ) -> RefreshOutcome:
        """The thread form of `refresh_async`, for synchronous providers."""
        failures_seen = self._ask(generation)
        if self._thread_lock is None:
            with _ASKING:  # racing threads must end up with one lock
                self._thread_lock = self._thread_lock or threading.Lock()
        with self._thread_lock:
            settled = self._settled(generation, failures_seen, stale, spec, trigger)
            if settled is not None:
                return settled
            options = spec.options
            started = now()[1]
            if options.on_event is not None:
                emit(options.on_event, RefreshStarted(type(stale).__name__, generation, trigger))
            try:
                result = _bounded_sync(options, stale)
                if inspect.isawaitable(result):
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()  # a never-awaited coroutine would warn at collection
                    msg = (
                        "refresh returned an awaitable, but a synchronous provider cannot await it"
                    )
                    raise TypeError(msg)
                fresh = spec.check(stale, result)
            except Exception as error:  # noqa: BLE001 - any refresh failure surfaces the 401
                return self._fail(error, generation, stale, spec, started)
            self._finish(generation, stale, fresh, install, spec, started)
            return fresh, None


class _Flights:
    """The flight of each instance of a decorated class, kept beside it rather than on it.

    Nothing is stored on the instance, so `__slots__`, `__eq__` without `__hash__`, copies and
    pickles all keep working. Entries are dropped when their instance is collected.
    """

    def __init__(self) -> None:
        self.by_id: dict[int, tuple[weakref.ref[Any], Flight]] = {}

    def of(self, instance: object) -> Flight:
        entry = self.by_id.get(id(instance))
        if entry is None:
            # setdefault is atomic, so racing threads agree on one flight. An id is reused only
            # after its object died, and the weak reference's callback has removed it by then.
            by_id, key = self.by_id, id(instance)
            ref = weakref.ref(instance, lambda _: by_id.pop(key, None))
            entry = by_id.setdefault(key, (ref, Flight(None)))
        return entry[1]


flights: Final = _Flights()
flight_of: Final = flights.of


def _event_loop() -> tuple[object, Callable[[], Any]]:
    """The running event loop, and how to make an event in it.

    A trio.Event does not work under asyncio and an asyncio.Event belongs to one loop, so a
    refresh in progress is recorded per loop: keyed by the trio run's token or the asyncio loop.
    """
    library = sniffio.current_async_library()
    if library == "trio" or library == "asyncio":  # noqa: PLR1714 - cheaper than a set here
        # The running library is imported already; this is every 401's path, so no import.
        module = sys.modules[library]
        if library == "trio":
            return module.lowlevel.current_trio_token(), module.Event
        return module.get_running_loop(), module.Event
    msg = f"refresh_middleware supports trio and asyncio, not {library}"
    raise RuntimeError(msg)


def _timed_out(timeout: float) -> RefreshTimeoutError:
    return RefreshTimeoutError(f"the refresh did not finish within {timeout:g} s")


async def _bounded(options: Options, stale: object) -> Any:
    """Run the refresh, awaiting it if it is async, within the refresh timeout."""
    timeout = options.refresh_timeout
    if timeout is None:
        result = options.refresh(stale)
        return await result if inspect.isawaitable(result) else result
    if sniffio.current_async_library() == "trio":
        import trio  # noqa: PLC0415

        with trio.move_on_after(timeout):
            result = options.refresh(stale)
            return await result if inspect.isawaitable(result) else result
        raise _timed_out(timeout)
    import asyncio  # noqa: PLC0415

    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            result = options.refresh(stale)
            return await result if inspect.isawaitable(result) else result
    except TimeoutError:
        if scope.expired():
            raise _timed_out(timeout) from None
        raise


def _bounded_sync(options: Options, stale: object) -> Any:
    """Run a sync refresh within the refresh timeout.

    A thread cannot be interrupted, so with a timeout the refresh runs in a helper thread (with
    the caller's context variables) that is abandoned, not killed, when it overruns.
    """
    timeout = options.refresh_timeout
    if timeout is None:
        return options.refresh(stale)
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome.append((True, context.run(options.refresh, stale)))
        except Exception as error:  # noqa: BLE001 - handed to the waiting caller
            outcome.append((False, error))
        finally:
            done.set()

    threading.Thread(target=run, name="refresh_middleware refresh", daemon=True).start()
    if not done.wait(timeout):
        raise _timed_out(timeout)
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


def skipped_because(error: Exception) -> str:
    """Why a 401 was not retried, in words safe for notes, logs and events."""
    if isinstance(error, RefreshError):
        return str(error)
    return f"refreshing credentials failed with {type(error).__name__}"


def attach_refresh_failure(original: BaseException, error: Exception) -> None:
    """Attach a failed refresh to the 401 it was meant to fix, leaving the 401 itself as it was.

    The refresh error becomes the 401's `__context__` (reachable, and shown by tracebacks) and a
    PEP 678 note says what happened. Only the type of a foreign error is named: messages of auth
    errors can carry secrets. Our own errors say what happened in their message.
    """
    original.add_note(f"refresh_middleware: this 401 was not retried: {skipped_because(error)}")
    # SDK errors are often raised `from None`: their context is hidden, so taking it over loses
    # nothing. A visible context of their own is left alone; the note still tells.
    if original.__context__ is None or original.__suppress_context__:
        original.__context__ = error
