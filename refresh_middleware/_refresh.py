"""Running one refresh, and refreshing ahead of expiry: the refresh policy.

`run_async` (and `run_sync`, generated from it) is what the `Flight` runs, in one caller at a
time, when credentials must be refreshed: it says so (`RefreshStarted`, a log line), calls the
host's `refresh` with the stale provider, bounded by `refresh_timeout` (a plain-function
refresh runs in a worker thread, so a hanging token endpoint neither blocks the event loop nor
escapes the timeout), checks what it returned, puts the fresh provider in place and says how it
went (`RefreshSucceeded`, `RefreshFailed`, `RefreshTimedOut`).

`ready_async` (and `ready_sync`) refreshes ahead of expiry: with `expires_at` set, credentials
in the advisory window are refreshed by one caller while the others go on (a failure there is
no failure: the credentials are still valid), and in the mandatory window every caller waits
for fresh ones. Why a refresh runs is its `Trigger`, set in `_flight.trigger` around the host's
`refresh` for what it calls (`refresh_middleware.shared` takes its fleet lock accordingly).

Whether to retry after a refresh is not decided here: that is the retry engine's (`_retry`).
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from ._backend import bounded, library, now
from ._events import (
    ADVISORY,
    MANDATORY,
    RefreshError,
    RefreshFailed,
    RefreshStarted,
    RefreshSucceeded,
    RefreshTimedOut,
    RefreshTimeoutError,
    Trigger,
    describe,
    emit,
    logger,
)
from ._flight import (
    Adoption,
    Current,
    Declined,
    Handover,
    Outcome,
    Worker,
    adoption,
    call_in_thread_sync,
    reset_quietly,
)
from ._flight import trigger as reason
from ._spec import depth, epoch_seconds, reach

if TYPE_CHECKING:
    from ._flight import Detached, Flight
    from ._spec import Method, Options

__all__ = [
    "Refreshable",
    "Window",
    "check_replacement",
    "ready_async",
    "ready_sync",
    "refused_again",
    "run_async",
    "run_sync",
    "unwrapped",
    "window_of",
]


class Refreshable(Protocol):
    """What a refresh needs of the call that asks for it (the retry engine's `Call` is one).

    `holder` is where the provider lives: the proxy (instance mode), or the instance itself
    (class mode, where the flight's value is None and the instance is refreshed in place).
    """

    @property
    def method(self) -> Method:
        """The intercepted method, with its options."""
        ...

    @property
    def flight(self) -> Flight[Any]:
        """The single flight of the provider's credentials."""
        ...

    @property
    def holder(self) -> object:
        """The proxy, or the instance of a decorated class."""
        ...

    def current(self) -> Current[Any]:
        """The generation and provider a new attempt starts on."""
        ...


def unwrapped(provider: object) -> object:
    """`provider` without our proxies around it: a refresh that wraps must not nest them."""
    while getattr(type(provider), "_refreshing_proxy", False):
        provider = cast("Any", provider).__wrapped__
    return provider


def check_replacement(call: Refreshable, stale: object, result: object) -> Any:
    """The flight's new value after `refresh(stale)` returned `result`; TypeError for nonsense.

    In class mode the instance is refreshed in place and the value stays None; in instance
    mode it is the replacement provider (or the stale one, refreshed in place).
    """
    method = call.method
    if method.in_place:
        if result is None or result is stale:
            return None
        msg = (
            f"refresh returned a {type(result).__name__}; a decorated class is refreshed in "
            "place, so refresh must update the instance it is given and return None"
        )
        raise TypeError(msg)
    if result is None or result is stale:
        return unwrapped(stale)
    fresh = unwrapped(result)
    missing = [name for name in method.intercepted or (method.name,) if reach(fresh, name) is None]
    if missing:
        msg = (
            f"refresh returned a {type(fresh).__name__}, which has no {', '.join(missing)}; "
            "return a replacement provider, or None after refreshing the stale one in place"
        )
        raise TypeError(msg)
    return fresh


class Window(NamedTuple):
    """A window before expiry that calls for a refresh ahead, and how long is left."""

    name: Trigger
    """`ADVISORY` or `MANDATORY`."""
    remaining: float


def window_of(call: Refreshable, current: Current[Any]) -> Window | None:
    """The window before expiry the current credentials are in, if it calls for a refresh.

    A generation is refreshed ahead at most once per window: credentials that are inside a
    window already when a refresh hands them over (tokens that live less than the advisory
    window, a host clock ahead of the issuer) are not refreshed ahead in that window again,
    which would only fetch the same again and again; the 401 safety net stays.
    """
    expiry = _expiry(call.method.options, current.value)
    name = call.flight.handover.window(current.generation, expiry.depth)
    return None if name is None else Window(name, expiry.remaining)


class _Expiry(NamedTuple):
    depth: int
    """0 outside the windows (or expiry unknown), 1 in the advisory one, 2 in the mandatory."""
    remaining: float


def _expiry(options: Options, provider: object) -> _Expiry:
    """How deep into the windows before expiry the provider's credentials are."""
    expires_at = cast("Callable[[object], object]", options.expires_at)
    try:
        expiry = expires_at(provider)
    except Exception as error:  # noqa: BLE001 - an unknown expiry leaves the 401 safety net
        logger.debug("refresh_middleware: expires_at raised %s", describe(error))
        return _Expiry(0, math.inf)
    seconds = epoch_seconds(expiry)
    remaining = math.inf if seconds is None else seconds - options.clock()
    return _Expiry(depth(remaining, options.refresh_ahead), remaining)


def _ahead(
    call: Refreshable, current: Current[Any], window: Window, outcome: Outcome[Any]
) -> Current[Any]:
    """What a caller goes on with after refreshing ahead in `window`."""
    if outcome.error is None:
        return call.current()
    if window.name == ADVISORY:
        return current  # still valid: a later caller in the window tries again
    name = type(current.value).__name__
    why = outcome.error
    text = describe(why) if isinstance(why, RefreshError) else type(why).__name__
    msg = (
        f"the credentials of {name} expire in {max(window.remaining, 0):.3g} s and refreshing "
        f"them failed ({text})"
    )
    raise RefreshError(msg) from why


def _began(call: Refreshable, generation: int, stale: object, trigger: Trigger) -> float:
    """Say a refresh began; the time it began, on the clock `now` reads."""
    hook = call.method.options.on_event
    if hook is not None:
        emit(hook, RefreshStarted(type(stale).__name__, generation, trigger))
    return now()[1]


def _succeeded(
    call: Refreshable, generation: int, stale: object, fresh: object, duration: float
) -> None:
    """Put the fresh provider in place and say so (the flight records the new generation)."""
    options = call.method.options
    if not call.method.in_place:
        cast("Any", call.holder).__wrapped__ = fresh
    if options.expires_at is not None:
        # A refresh that hands over credentials inside a window does not call for another.
        provider = call.holder if fresh is None else fresh
        call.flight.handover = Handover(generation + 1, _expiry(options, provider).depth)
    name = type(stale).__name__
    logger.info(
        "refresh_middleware: %s credentials refreshed in %.3f s (generation %d)",
        name,
        duration,
        generation + 1,
    )
    shared_by = call.flight.asked(generation)
    emit(options.on_event, RefreshSucceeded(name, generation, duration, shared_by))


def _adopted(call: Refreshable, generation: int, said: Adoption) -> None:
    """Mark the generation after `generation` adopted, when the host's `refresh` said so."""
    if said.adopted:
        call.flight.adopted = generation + 1


def _failed(
    call: Refreshable, generation: int, stale: object, error: Exception, duration: float
) -> None:
    options = call.method.options
    name, shared_by = type(stale).__name__, call.flight.asked(generation)
    if isinstance(error, RefreshTimeoutError):
        timeout = options.refresh_timeout or 0.0
        event: Any = RefreshTimedOut(name, generation, duration, shared_by, timeout)
    else:
        event = RefreshFailed(name, generation, duration, shared_by, describe(error))
    logger.warning(
        "refresh_middleware: refreshing %s credentials failed after %.3f s (%s)",
        name,
        duration,
        describe(error) if isinstance(error, RefreshError) else type(error).__name__,
    )
    emit(options.on_event, event)


def refused_again(
    call: Refreshable, generation: int, error: BaseException, *, retried: bool
) -> None:
    """A call's last attempt failed: said, if it was a retry on fresh credentials met by a 401.

    `retried` is True when that attempt, on `generation`, followed a refresh. Then the refresh
    brought back credentials the provider still refuses: the 401 gets a note, the
    log a warning, and the flight cools down as after a failed refresh (`Flight.refused`),
    unless the refresh adopted them (stored by another process), when the next one fetches.
    """
    if not retried or not call.method.options.is_unauthorized(error):
        return
    error.add_note(f"refresh_middleware: refused again after a refresh to generation {generation}")
    adopted = call.flight.adopted == generation
    made = "that adopted them (the next one fetches)" if adopted else "that made them"
    logger.warning(
        "refresh_middleware: %s credentials of generation %d were refused right after the "
        "refresh %s",
        type(call.current().value).__name__,
        generation,
        made,
    )
    call.flight.refused(generation)


def _timed_out(timeout: float) -> RefreshTimeoutError:
    return RefreshTimeoutError(f"the refresh did not finish within {timeout:g} s")


def _sync_refresh_of_async(
    call: Refreshable, what: str = "refresh is a coroutine function"
) -> TypeError:
    return TypeError(
        f"{what}, but {call.method.name} was called synchronously and cannot await it; pass a "
        "plain function as refresh, or call the method from async code"
    )


# --------------------------------------------------------------------------------------------------
# primitives, written twice: bounding a refresh


async def bounded_async(call: Refreshable, stale: object) -> Any:
    """Run `refresh(stale)` within the refresh timeout, never blocking the event loop.

    A coroutine refresh is awaited here; a plain function runs in a worker thread (which the
    timeout abandons, not kills, when it overruns). A caller cancelled while that thread runs
    leaves the refresh to it: its result settles the refresh for the waiters (`_detach`).
    """
    options = call.method.options
    refresh, timeout = options.refresh, options.refresh_timeout
    if options.refresh_is_async:

        async def run() -> Any:
            result = refresh(stale)
            return await result if inspect.isawaitable(result) else result

        if timeout is None:
            return await run()
        return await bounded(run, timeout, functools.partial(_timed_out, timeout))
    began_at = time.monotonic()
    worker = Worker(functools.partial(refresh, stale))
    try:
        if timeout is None:
            result = await worker.wait_async()
        else:
            result = await bounded(
                worker.wait_async, timeout, functools.partial(_timed_out, timeout)
            )
    except BaseException as error:
        if not isinstance(error, Exception):  # cancelled (a timeout is an Exception by now)
            _detach(call, stale, worker, began_at)
        raise
    return await result if inspect.isawaitable(result) else result


def _detach(call: Refreshable, stale: object, worker: Worker[Any], began_at: float) -> None:
    """Leave a refresh whose caller was cancelled to its worker thread, within the timeout.

    A second refresh meanwhile would reuse what the first one spends (a rotating refresh
    token), so the claim stays until the thread ends or the refresh timeout passes, whichever
    comes first, and that settles the refresh for every waiter.
    """
    detached = call.flight.detach()
    worker.then(functools.partial(_settle, call, stale, detached, began_at))
    timeout = call.method.options.refresh_timeout
    if timeout is not None:
        overrun = functools.partial(_overran, call, stale, detached, began_at, timeout)
        timer = threading.Timer(max(0.0, began_at + timeout - time.monotonic()), overrun)
        timer.daemon = True
        timer.start()


def _settle(
    call: Refreshable,
    stale: object,
    detached: Detached[Any],
    began_at: float,
    result: Callable[[], Any],
) -> None:
    """The end of a detached refresh, in its worker thread: what every waiter gets."""
    detached.settle(functools.partial(_ended, call, stale, detached.generation, began_at, result))


def _ended(
    call: Refreshable,
    stale: object,
    generation: int,
    began_at: float,
    result: Callable[[], Any],
) -> Outcome[Any] | None:
    try:
        fresh = check_replacement(call, stale, result())
    except BaseException as error:  # noqa: BLE001 - nobody is left to raise it to
        if not isinstance(error, Exception):
            return None  # an interrupt in the thread: no verdict, the next caller refreshes
        _failed(call, generation, stale, error, time.monotonic() - began_at)
        return Outcome(None, error)
    _succeeded(call, generation, stale, fresh, time.monotonic() - began_at)
    return Outcome(fresh, None)


def _overran(
    call: Refreshable, stale: object, detached: Detached[Any], began_at: float, timeout: float
) -> None:
    """A detached refresh still running at its timeout: it failed, as an attached one would."""

    def end() -> Outcome[Any]:
        error = _timed_out(timeout)
        _failed(call, detached.generation, stale, error, time.monotonic() - began_at)
        return Outcome(None, error)

    detached.settle(end)


def bounded_sync(call: Refreshable, stale: object) -> Any:
    """Run a plain-function `refresh(stale)` within the refresh timeout, in this thread's stead.

    With a timeout the refresh runs in a helper thread, abandoned when it overruns.
    """
    options = call.method.options
    refresh, timeout = options.refresh, options.refresh_timeout
    if timeout is None:
        result = refresh(stale)
    else:
        try:
            result = call_in_thread_sync(functools.partial(refresh, stale), timeout)
        except TimeoutError:
            raise _timed_out(timeout) from None
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # a never-awaited coroutine would warn when collected
        raise _sync_refresh_of_async(call, "refresh returned an awaitable")
    return result


def _runs_here_async(call: Refreshable) -> None:
    """Any `refresh` can run in async code: a coroutine one is awaited, a plain one threaded."""


def _runs_here_sync(call: Refreshable) -> None:
    """A coroutine `refresh` cannot run in sync code: that call fails alone (`Declined`).

    Nothing ran, so nothing is reported and no cooldown starts: an async caller refreshes.
    """
    if call.method.options.refresh_is_async:
        raise Declined(_sync_refresh_of_async(call))


# unasync source begins


async def run_async(call: Refreshable, generation: int, stale: object, trigger: Trigger) -> Any:
    """The refresh of `generation`, as the flight runs it: in at most one caller at a time."""
    _runs_here_async(call)
    began_at = _began(call, generation, stale, trigger)
    why, said = reason.set(trigger), Adoption()
    told = adoption.set(said)
    try:
        fresh = check_replacement(call, stale, await bounded_async(call, stale))
    except Exception as error:
        _failed(call, generation, stale, error, now()[1] - began_at)
        raise
    finally:
        reset_quietly(adoption, told)
        reset_quietly(reason, why)
    _adopted(call, generation, said)
    _succeeded(call, generation, stale, fresh, now()[1] - began_at)
    return fresh


async def ready_async(call: Refreshable) -> Current[Any]:
    """The generation and provider to start on, refreshed first when about to expire."""
    current = call.current()
    window = window_of(call, current)
    if window is None or (window.name == ADVISORY and call.flight.busy()):
        return current
    library()  # async only: an unsupported event loop is said at once, not as a failure
    run = functools.partial(run_async, call, current.generation, current.value, window.name)
    urgent = window.name == MANDATORY
    outcome = await call.flight.refresh_async(current.generation, run, urgent=urgent)
    return _ahead(call, current, window, outcome)


# unasync source ends
# unasync output begins
# Written by tools/unasync.py from the source above: edit that, then run it.


def run_sync(call: Refreshable, generation: int, stale: object, trigger: Trigger) -> Any:
    """The refresh of `generation`, as the flight runs it: in at most one caller at a time."""
    _runs_here_sync(call)
    began_at = _began(call, generation, stale, trigger)
    why, said = reason.set(trigger), Adoption()
    told = adoption.set(said)
    try:
        fresh = check_replacement(call, stale, bounded_sync(call, stale))
    except Exception as error:
        _failed(call, generation, stale, error, now()[1] - began_at)
        raise
    finally:
        reset_quietly(adoption, told)
        reset_quietly(reason, why)
    _adopted(call, generation, said)
    _succeeded(call, generation, stale, fresh, now()[1] - began_at)
    return fresh


def ready_sync(call: Refreshable) -> Current[Any]:
    """The generation and provider to start on, refreshed first when about to expire."""
    current = call.current()
    window = window_of(call, current)
    if window is None or (window.name == ADVISORY and call.flight.busy()):
        return current
    run = functools.partial(run_sync, call, current.generation, current.value, window.name)
    urgent = window.name == MANDATORY
    outcome = call.flight.refresh_sync(current.generation, run, urgent=urgent)
    return _ahead(call, current, window, outcome)


# unasync output ends
