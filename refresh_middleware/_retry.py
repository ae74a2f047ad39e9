"""The one retry policy that calls and streams share: open an attempt, refresh once, retry once.

A `Call` is one call of an intercepted method: its arguments, its `StreamGate` (which counts
the one retry and decides, item by item and error by error, what happens), and the attempt
open now. An intercepted *call* is an attempt whose result is a value; a *stream* is an
attempt whose result is read item by item through the gate (in `_streams`). Both open their
attempts here, so a 401 at the call, at the `await` or when a stream manager is entered is
handled in one place, and a method listed as a stream that returns a plain value (the SDKs'
`create(stream=False)`) is a call.

After a 401 the credentials are refreshed through the provider's `Flight` (one refresh for
every caller that failed on the same generation), the refresh is bounded by `refresh_timeout`
(a plain-function refresh runs in a worker thread, so a hanging token endpoint neither blocks
the event loop nor escapes the timeout), and the call is retried once on the fresh provider.
A failed refresh leaves the 401 as it was, with the failure attached.

The drivers come in pairs, async and sync. The sync ones are generated from the async ones by
`tools/unasync.py` (`nox -s lint` checks that they match), so the policy is written once; only
the primitives whose waiting truly differs (bounding a refresh, adopting and closing what a
method returned) are written twice, side by side.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, cast

import sniffio

from ._events import (
    CallRetried,
    NotReplayableError,
    RefreshError,
    RefreshFailed,
    RefreshStarted,
    RefreshSucceeded,
    RefreshTimedOut,
    RefreshTimeoutError,
    RetrySkipped,
    describe,
    emit,
    logger,
)
from ._flight import (
    Current,
    Outcome,
    bounded,
    call_in_thread_async,
    call_in_thread_sync,
    library,
    now,
)
from ._flight import trigger as reason
from ._gate import GateAction, StreamGate
from ._spec import epoch_seconds, reach

if TYPE_CHECKING:
    from ._flight import Flight
    from ._spec import Method, Options

__all__ = [
    "CLOSE_TIMEOUT",
    "NOTHING",
    "Attempt",
    "Call",
    "Started",
    "adopt_iterable",
    "attach_refresh_failure",
    "close_async",
    "close_sync",
    "in_event_loop",
    "open_async",
    "open_sync",
    "recover_async",
    "recover_sync",
    "run_async",
    "run_sync",
    "start_plain",
]

CLOSE_TIMEOUT: Final = 5.0
"""Seconds an abandoned attempt gets to close before it is left to itself."""

NOTHING: Final = cast("Any", object())
"""No first attempt started yet: `open_*` starts one itself."""

RETRY: Final = GateAction.RETRY

ADVISORY: Final = "advisory"
MANDATORY: Final = "mandatory"

AsyncCloser = Callable[[BaseException | None], Awaitable[object]] | None
SyncCloser = Callable[[BaseException | None], object] | None


class Attempt(NamedTuple):
    """An open attempt of a stream."""

    generation: int
    """The credential generation it was started on."""
    provider: Any
    """The provider it was started on."""
    stream: Any
    """What the consumer sees of it: the SDK's stream object, or the iterator itself."""
    items: Any
    """The iterator the gate reads."""
    close: Any
    """Ends it (an `AsyncCloser` or a `SyncCloser`); takes the exception that ended the
    consumer's block, for a stream manager's `__exit__`."""


class Started(NamedTuple):
    """A first attempt that a plain method returned when called, before it was awaited or read."""

    current: Current[Any]
    """The generation and provider it was started on."""
    value: Any
    """What the method returned."""


class Follower(Protocol):
    """What shows the consumer the current attempt's stream object (a view of it)."""

    def follow(self, stream: object) -> None:
        """Show `stream` from now on: a retry opened it."""


class Call:
    """One call of an intercepted method: its arguments, its gate, and the attempt open now.

    `holder` is where the provider lives: the proxy (instance mode), or the instance itself
    (class mode, where the flight's value is None and the instance is refreshed in place).
    """

    __slots__ = ("args", "flight", "gate", "holder", "kwargs", "method", "opened", "view")

    def __init__(
        self,
        method: Method,
        flight: Flight[Any],
        holder: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.method = method
        self.flight = flight
        self.holder = holder
        self.args = args
        self.kwargs = kwargs
        options = method.options
        self.gate = StreamGate(
            is_unauthorized=options.is_unauthorized, kind_of=options.kind_of, usage=options.usage
        )
        self.opened: Attempt | None = None
        self.view: Follower | None = None

    def current(self) -> Current[Any]:
        """The generation and provider a new attempt starts on."""
        current = self.flight.current
        if current.value is None:  # class mode: the instance is the provider
            return Current(current.generation, self.holder)
        return current

    def start(self, provider: object) -> Any:
        """Call the original method on `provider`: a new attempt, not yet awaited or opened."""
        return self.method.invoke(provider, self.args, self.kwargs)

    def adopt(self, attempt: Attempt) -> Attempt:
        """Make `attempt` the open one; the view, if any, shows its stream from now on."""
        self.opened = attempt
        if self.view is not None:
            self.view.follow(attempt.stream)
        return attempt


def in_event_loop() -> bool:
    """True when an event loop runs in this thread (async work can wait for an `await`)."""
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# the policy's pure steps


# Argument types that are never one-shot, checked before the (slower) ABC check.
_REPLAYABLE: Final = frozenset({type(None), str, bytes, int, float, bool, tuple, list, dict})


def unreplayable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why the arguments cannot be sent again, or None when they can.

    An iterator or generator argument was consumed by the first attempt; a retry would send
    what is left of it, silently different.
    """
    for name, value in itertools.chain(enumerate(args), kwargs.items()):
        if type(value) in _REPLAYABLE or not isinstance(value, Iterator | AsyncIterator):
            continue
        kind = type(cast("object", value)).__name__
        where = f"argument {name!r}" if isinstance(name, str) else f"argument {name}"
        return f"{where} is a one-shot {kind}, consumed by the first attempt"
    return None


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


def unwrapped(provider: object) -> object:
    """`provider` without our proxies around it: a refresh that wraps must not nest them."""
    while getattr(type(provider), "_refreshing_proxy", False):
        provider = cast("Any", provider).__wrapped__
    return provider


def check_replacement(call: Call, stale: object, result: object) -> Any:
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

    name: str
    """`ADVISORY` or `MANDATORY`."""
    remaining: float


def _window(call: Call, current: Current[Any]) -> Window | None:
    """The window before expiry the current credentials are in, if it calls for a refresh.

    A generation is refreshed ahead at most once per window: credentials that are inside a
    window already when a refresh hands them over (tokens that live less than the advisory
    window, a host clock ahead of the issuer) are not refreshed ahead in that window again,
    which would only fetch the same again and again; the 401 safety net stays.
    """
    expiry = _expiry(call.method.options, current.value)
    born = call.flight.memo
    floor = born.depth if isinstance(born, _Born) and born.generation == current.generation else 0
    if expiry.depth <= floor:
        return None
    return Window(ADVISORY if expiry.depth == 1 else MANDATORY, expiry.remaining)


class _Born(NamedTuple):
    """The window a generation was already in when a refresh handed it over."""

    generation: int
    depth: int


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
    advisory, mandatory = options.refresh_ahead
    if math.isnan(remaining) or remaining > advisory:
        return _Expiry(0, remaining)
    return _Expiry(1 if remaining > mandatory else 2, remaining)


def _ahead(
    call: Call, current: Current[Any], window: Window, outcome: Outcome[Any]
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


def _started(call: Call, generation: int, stale: object, trigger: str) -> float:
    hook = call.method.options.on_event
    if hook is not None:
        emit(hook, RefreshStarted(type(stale).__name__, generation, trigger))
    return now()[1]


def _succeeded(call: Call, generation: int, stale: object, fresh: object, started: float) -> None:
    """Put the fresh provider in place and say so (the flight records the new generation)."""
    options = call.method.options
    if not call.method.in_place:
        cast("Any", call.holder).__wrapped__ = fresh
    if options.expires_at is not None:
        # A refresh that hands over credentials inside a window does not call for another.
        provider = call.holder if fresh is None else fresh
        call.flight.memo = _Born(generation + 1, _expiry(options, provider).depth)
    duration = now()[1] - started
    name = type(stale).__name__
    logger.info(
        "refresh_middleware: %s credentials refreshed in %.3f s (generation %d)",
        name,
        duration,
        generation + 1,
    )
    shared_by = call.flight.asked(generation)
    emit(options.on_event, RefreshSucceeded(name, generation, duration, shared_by))


def _failed(call: Call, generation: int, stale: object, error: Exception, started: float) -> None:
    options = call.method.options
    duration = now()[1] - started
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


def _retrying(call: Call, provider: object, outcome: Outcome[Any]) -> Exception | None:
    """After a refresh: None to retry (with the arguments to retry with), or why not."""
    method, hook = call.method, call.method.options.on_event
    failure = outcome.error
    if failure is None and (call.args or call.kwargs):
        reason = unreplayable(call.args, call.kwargs)
        if reason is not None:
            failure = NotReplayableError(reason)
    if failure is None:
        rebuild = method.options.retry_arguments
        if rebuild is not None:
            fresh = call.current().value
            call.args, call.kwargs = rebuild(fresh, call.args, call.kwargs)
        if hook is not None:
            emit(hook, CallRetried(type(provider).__name__, method.name))
        return None
    if hook is not None:
        emit(hook, RetrySkipped(type(provider).__name__, method.name, skipped_because(failure)))
    return failure


def _timed_out(timeout: float) -> RefreshTimeoutError:
    return RefreshTimeoutError(f"the refresh did not finish within {timeout:g} s")


def _sync_refresh_of_async(call: Call, what: str = "refresh is a coroutine function") -> TypeError:
    return TypeError(
        f"{what}, but {call.method.name} was called synchronously and cannot await it; pass a "
        "plain function as refresh, or call the method from async code"
    )


# --------------------------------------------------------------------------------------------------
# primitives, written twice: bounding a refresh


async def bounded_async(call: Call, stale: object) -> Any:
    """Run `refresh(stale)` within the refresh timeout, never blocking the event loop.

    A coroutine refresh is awaited here; a plain function runs in a worker thread (which the
    timeout abandons, not kills, when it overruns).
    """
    options = call.method.options
    refresh, timeout = options.refresh, options.refresh_timeout

    async def run() -> Any:
        if options.refresh_is_async:
            result = refresh(stale)
        else:
            result = await call_in_thread_async(functools.partial(refresh, stale))
        return await result if inspect.isawaitable(result) else result

    if timeout is None:
        return await run()
    return await bounded(run, timeout, functools.partial(_timed_out, timeout))


def bounded_sync(call: Call, stale: object) -> Any:
    """Run a plain-function `refresh(stale)` within the refresh timeout, in this thread's stead.

    With a timeout the refresh runs in a helper thread, abandoned when it overruns.
    """
    options = call.method.options
    if options.refresh_is_async:
        raise _sync_refresh_of_async(call)
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


# --------------------------------------------------------------------------------------------------
# primitives, written twice: adopting what a method returned, and closing it


async def adopt_async(call: Call, current: Current[Any], started: Any) -> Any:
    """Open what a stream method returned: await an awaitable, enter a manager, find the items.

    It is a stream when it can be iterated asynchronously (`__anext__` or `__aiter__`), a
    manager when it can only be entered (`anthropic`'s `messages.stream()`, pydantic-ai's
    `request_stream()`); anything else is a value, returned as it is.
    """
    while True:
        if hasattr(started, "__aiter__"):
            return call.adopt(_async_attempt(current, started, None))
        if hasattr(started, "__aenter__"):
            stream = await started.__aenter__()
            return call.adopt(_async_attempt(current, stream, started))
        if not inspect.isawaitable(started):
            return started
        started = await started


def adopt_iterable(call: Call, started: Started) -> Attempt:
    """Open a returned async iterator at once: nothing needs awaiting to read it."""
    return call.adopt(_async_attempt(started.current, started.value, None))


def _async_attempt(current: Current[Any], stream: Any, manager: Any) -> Attempt:
    """An open async attempt: the stream shown, the iterator read, and how to end both.

    An object that is only iterable (pydantic-ai's `StreamedResponse`) is shown as it is and
    read through the iterator it hands out, which is ours to close. A stream that came out of
    a manager is the manager's to close: leaving it (with the consumer's exception, if any)
    does that.
    """
    items = stream if hasattr(stream, "__anext__") else stream.__aiter__()
    closers = [] if items is stream else [_closer_of(items)]
    if manager is None:
        closers.append(_closer_of(stream))

    async def close(error: BaseException | None) -> None:
        try:
            for closer in closers:
                if closer is not None:
                    result = closer()
                    if inspect.isawaitable(result):
                        await result
        finally:
            if manager is not None:
                if error is None:
                    await manager.__aexit__(None, None, None)
                else:
                    await manager.__aexit__(type(error), error, error.__traceback__)

    return Attempt(current.generation, current.value, stream, items, close)


def _closer_of(stream: object) -> Callable[[], object] | None:
    return getattr(stream, "aclose", None) or getattr(stream, "close", None)


def adopt_sync(call: Call, current: Current[Any], started: Any) -> Any:
    """The sync form of `adopt_async`: a sync stream is an iterator (`__next__`)."""
    if not hasattr(started, "__next__"):
        return started
    close = getattr(started, "close", None)

    def closer(_: BaseException | None) -> None:
        if close is not None:
            close()

    return call.adopt(Attempt(current.generation, current.value, started, started, closer))


async def close_async(call: Call, error: BaseException | None = None) -> None:
    """Close the open attempt, if any: shielded from cancellation, bounded in time, quiet.

    Trio finalizes an abandoned async generator inside a cancelled scope, where an unshielded
    close would be cut short without a word; asyncio gets the same shield from a task of its
    own, which a cancellation landing meanwhile does not interrupt (it is delivered after).
    """
    attempt, call.opened = call.opened, None
    if attempt is None or attempt.close is None:
        return
    closing = cast("Callable[[BaseException | None], Awaitable[object]]", attempt.close)
    try:
        if library() == "trio":
            import trio  # noqa: PLC0415

            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await closing(error)
            return
        import asyncio  # noqa: PLC0415

        async def bounded() -> None:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await closing(error)

        task = asyncio.ensure_future(bounded())
        interrupted: BaseException | None = None
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError as cancelled:
                interrupted = cancelled  # the close goes on; the cancellation comes after
        if interrupted is not None:
            raise interrupted
    except Exception as failure:  # noqa: BLE001 - the attempt is abandoned; closing is best effort
        logger.debug("refresh_middleware: closing an abandoned stream failed: %r", type(failure))


def close_sync(call: Call, error: BaseException | None = None) -> None:
    """Close the open sync attempt, if any, never raising."""
    attempt, call.opened = call.opened, None
    if attempt is None or attempt.close is None:
        return
    try:
        attempt.close(error)
    except Exception as failure:  # noqa: BLE001 - as in close_async
        logger.debug("refresh_middleware: closing an abandoned stream failed: %r", type(failure))


# --------------------------------------------------------------------------------------------------
# the drivers (the sync forms below are generated from these)

# unasync source begins


async def run_async(call: Call, generation: int, stale: object, trigger: str) -> Any:
    """The refresh of `generation`, as the flight runs it: in at most one caller at a time."""
    started = _started(call, generation, stale, trigger)
    why = reason.set(trigger)
    try:
        fresh = check_replacement(call, stale, await bounded_async(call, stale))
    except Exception as error:
        _failed(call, generation, stale, error, started)
        raise
    finally:
        reason.reset(why)
    _succeeded(call, generation, stale, fresh, started)
    return fresh


async def ready_async(call: Call) -> Current[Any]:
    """The generation and provider to start on, refreshed first when about to expire."""
    current = call.current()
    window = _window(call, current)
    if window is None or (window.name == ADVISORY and call.flight.busy()):
        return current
    library()  # async only: an unsupported event loop is said at once, not as a failure
    run = functools.partial(run_async, call, current.generation, current.value, window.name)
    urgent = window.name == MANDATORY
    outcome = await call.flight.refresh_async(current.generation, run, urgent=urgent)
    return _ahead(call, current, window, outcome)


async def recover_async(
    call: Call, generation: int, stale: object, failed: BaseException | None
) -> bool:
    """After a 401 on `generation`: refresh (shared) and say whether to retry.

    When not, the refresh failure is attached to `failed`, the 401 raised (if it was raised).
    """
    library()  # async only: an unsupported event loop is said at once, not as a failure
    run = functools.partial(run_async, call, generation, stale, "401")
    outcome = await call.flight.refresh_async(generation, run)
    reason = _retrying(call, stale, outcome)
    if reason is None:
        return True
    if failed is not None:
        attach_refresh_failure(failed, reason)
    return False


async def open_async(call: Call, started: Started | None = None) -> Any:
    """Start an attempt and open it; a 401 on the way is refreshed and retried as the gate says.

    Returns the open `Attempt` of a stream, or the value a call (or a stream method called
    for a value) resolved to. `started` is a first attempt the method already returned, with
    what it was started on.
    """
    gate, ahead = call.gate, call.method.options.expires_at is not None
    while True:
        current, value = started or (await ready_async(call) if ahead else call.current(), NOTHING)
        try:
            value = call.start(current.value) if value is NOTHING else value
            if call.method.stream:
                value = await adopt_async(call, current, value)
            while inspect.isawaitable(value):  # async only
                value = await value  # async only
        except Exception as error:  # noqa: BLE001 - the gate says which are retried, or raised
            failed: BaseException | None = error
            verdict = gate.on_exception(error)
        else:
            if type(value) is Attempt:
                return value
            failed, verdict = None, gate.on_item(value)[0]
        # Outside the `except` block: the retry's own errors must not be chained to the 401,
        # or a classifier reading their context would see a 401.
        if verdict is RETRY:
            started = None
            if await recover_async(call, current.generation, current.value, failed):
                continue
        if failed is None:
            return value
        raise failed


# unasync source ends
# unasync output begins
# Written by tools/unasync.py from the source above: edit that, then run it.


def run_sync(call: Call, generation: int, stale: object, trigger: str) -> Any:
    """The refresh of `generation`, as the flight runs it: in at most one caller at a time."""
    started = _started(call, generation, stale, trigger)
    why = reason.set(trigger)
    try:
        fresh = check_replacement(call, stale, bounded_sync(call, stale))
    except Exception as error:
        _failed(call, generation, stale, error, started)
        raise
    finally:
        reason.reset(why)
    _succeeded(call, generation, stale, fresh, started)
    return fresh


def ready_sync(call: Call) -> Current[Any]:
    """The generation and provider to start on, refreshed first when about to expire."""
    current = call.current()
    window = _window(call, current)
    if window is None or (window.name == ADVISORY and call.flight.busy()):
        return current
    run = functools.partial(run_sync, call, current.generation, current.value, window.name)
    urgent = window.name == MANDATORY
    outcome = call.flight.refresh_sync(current.generation, run, urgent=urgent)
    return _ahead(call, current, window, outcome)


def recover_sync(call: Call, generation: int, stale: object, failed: BaseException | None) -> bool:
    """After a 401 on `generation`: refresh (shared) and say whether to retry.

    When not, the refresh failure is attached to `failed`, the 401 raised (if it was raised).
    """
    run = functools.partial(run_sync, call, generation, stale, "401")
    outcome = call.flight.refresh_sync(generation, run)
    reason = _retrying(call, stale, outcome)
    if reason is None:
        return True
    if failed is not None:
        attach_refresh_failure(failed, reason)
    return False


def open_sync(call: Call, started: Started | None = None) -> Any:
    """Start an attempt and open it; a 401 on the way is refreshed and retried as the gate says.

    Returns the open `Attempt` of a stream, or the value a call (or a stream method called
    for a value) resolved to. `started` is a first attempt the method already returned, with
    what it was started on.
    """
    gate, ahead = call.gate, call.method.options.expires_at is not None
    while True:
        current, value = started or (ready_sync(call) if ahead else call.current(), NOTHING)
        try:
            value = call.start(current.value) if value is NOTHING else value
            if call.method.stream:
                value = adopt_sync(call, current, value)
        except Exception as error:  # noqa: BLE001 - the gate says which are retried, or raised
            failed: BaseException | None = error
            verdict = gate.on_exception(error)
        else:
            if type(value) is Attempt:
                return value
            failed, verdict = None, gate.on_item(value)[0]
        # Outside the `except` block: the retry's own errors must not be chained to the 401,
        # or a classifier reading their context would see a 401.
        if verdict is RETRY:
            started = None
            if recover_sync(call, current.generation, current.value, failed):
                continue
        if failed is None:
            return value
        raise failed


# unasync output ends


# --------------------------------------------------------------------------------------------------
# plain methods: called at once, as their callers expect


def start_plain(call: Call) -> Started | None:
    """Call a plain method now, as its caller expects; None when its start must wait.

    A plain method (the SDKs' `create`, `anthropic`'s `messages.stream()`) is called at once,
    and what it returns decides the rest. A refresh it needs first runs here, synchronously,
    outside an event loop. Inside one nothing may block, so a refresh ahead of expiry waits
    for the first await, enter or read of what the caller gets: a stream method is not called
    until then (None), and a call that returned a coroutine is started again when awaited.
    A 401 the method raises itself, before anything could be awaited, is refreshed here.
    """
    current = call.current()
    method = call.method
    ahead = method.options.expires_at is not None and _window(call, current) is not None
    if ahead and not in_event_loop():
        current, ahead = ready_sync(call), False
    elif ahead and method.stream:
        return None
    try:
        value = call.start(current.value)
    except Exception as error:
        if call.gate.on_exception(error) is not GateAction.RETRY:
            raise
        failed = error
    else:
        if ahead and inspect.iscoroutine(value):
            value.close()  # never started, so nothing was sent: the awaited call starts anew
            return None
        return Started(current, value)
    if not recover_sync(call, current.generation, current.value, failed):
        raise failed
    current = call.current()
    return Started(current, call.start(current.value))
