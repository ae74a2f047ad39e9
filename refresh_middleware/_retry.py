"""The one retry policy that calls and streams share: open an attempt, refresh once, retry once.

A `Call` is one call of an intercepted method: its arguments and its `StreamGate` (which counts
the one retry and decides, item by item and error by error, what happens). An intercepted
*call* is an attempt whose result is a value; a *stream* is an attempt whose result is read item
by item through the gate (in `_streams`). Both open their attempts here, so a 401 at the call,
at the `await` or when a stream manager is entered is handled in one place, and a method listed
as a stream that returns a plain value (the SDKs' `create(stream=False)`) is a call.

What opening a *stream* means is not known here: the stream drivers hand `open_async` the
callback that adopts what the method returned (`_streams.adopt_async`), which answers `OPENED`
when it opened a stream attempt, or the value when there was none.

After a 401 the credentials are refreshed through the provider's `Flight` (one refresh for
every caller that failed on the same generation; running it is `_refresh`'s) and the call is
retried once on the fresh provider. A failed refresh leaves the 401 as it was, with the
failure attached.

The drivers come in pairs, async and sync. The sync ones are generated from the async ones by
`tools/unasync.py` (`nox -s lint` checks that they match), so the policy is written once.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import CodeType, CoroutineType, FrameType
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

import wrapt

from ._backend import in_event_loop, library
from ._events import (
    UNAUTHORIZED,
    CallRetried,
    NotReplayableError,
    RefreshError,
    RetrySkipped,
    emit,
)
from ._flight import Current, Outcome
from ._gate import GateAction, StreamGate
from ._kinds import ItemKind
from ._refresh import ready_async, ready_sync, refused_again, run_async, run_sync, window_of

if TYPE_CHECKING:
    from ._flight import Flight
    from ._spec import Method

__all__ = [
    "NOTHING",
    "OPENED",
    "AheadAttempt",
    "Call",
    "FirstAttempt",
    "LaterAttempt",
    "RefusedAttempt",
    "Site",
    "attach_refresh_failure",
    "open_async",
    "open_sync",
    "recover_async",
    "recover_sync",
    "restart_plain",
    "runs_attempts",
    "start_plain",
    "wrapped_of",
]

NOTHING: Final = cast("Any", object())
"""No first attempt started yet: `open_*` starts one itself."""

OPENED: Final = cast("Any", object())
"""What an adopt callback answers when it opened a stream attempt (kept in `Call.opened`)."""

RETRY: Final = GateAction.RETRY
ERROR: Final = ItemKind.ERROR
# The commonest awaitable, checked before `inspect.isawaitable`'s slower checks; a plain type,
# so that the check narrows nothing for the type checkers.
_COROUTINE: Final[type[Any]] = CoroutineType


class FirstAttempt(NamedTuple):
    """What a plain method returned when called at once, before it was awaited or read."""

    current: Current[Any]
    """The generation and provider it was started on."""
    value: Any
    """What the method returned."""


class LaterAttempt(FirstAttempt):
    """A first attempt of a plain stream method whose rest waits for the consumer's first await.

    Inside an event loop nothing may block: what would (a refresh) runs when the consumer first
    enters, awaits or reads the stream (`_streams.PendingStream`).
    """

    __slots__ = ()


class AheadAttempt(LaterAttempt):
    """A stream started in a window before expiry on a loop, refreshed ahead when opened.

    It is an async stream or manager, which sends nothing until entered or read; the refresh
    ahead runs at that point (`_streams.PendingStream`).
    """

    __slots__ = ()


class RefusedAttempt(LaterAttempt):
    """A plain stream method that raised a 401 at its call inside an event loop: `value` is it.

    Recovering at the call would block the loop for the whole refresh (and for good when
    another task of that loop runs it), so the refresh and the call again wait for the
    consumer's first `async with`, await or read (`_streams.RefusedStream`).
    """

    __slots__ = ()


# The provider an instance-mode holder (a proxy) wraps now, read through the proxy's own
# descriptor: its attribute hook, which the proxy classes' subclasses get, costs three times as
# much on every call.
wrapped_of: Final[Callable[[Any], Any]] = wrapt.BaseObjectProxy.__dict__["__wrapped__"].__get__

Site = tuple["Method", "Flight[Any]", object]
"""Where a call of an intercepted method runs: the method, its flight, and the holder."""


class Call:
    """One call of an intercepted method: its arguments, its gate, and the attempt open now.

    `holder` is where the provider lives: the proxy (instance mode), or the instance itself
    (class mode, where the flight's value is None and the instance is refreshed in place).
    `opened`, `view` and `reparse` belong to the stream drivers (`_streams`): the stream attempt
    open now, the view that shows it, and how a raw response's body was read as a stream. They
    live here so that a call is one object; this module never reads them. The gate is built
    when first asked for: a call that meets no 401 and returns no error value never needs one.
    """

    __slots__ = (
        "_gate",
        "args",
        "flight",
        "holder",
        "kwargs",
        "method",
        "opened",
        "reparse",
        "view",
    )

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
        self._gate: StreamGate | None = None
        self.opened: Any = None
        self.view: Any = None
        self.reparse: Any = None

    @property
    def gate(self) -> StreamGate:
        """The call's gate: it counts the one retry and decides what each item or error does."""
        gate = self._gate
        if gate is None:
            options = self.method.options
            gate = self._gate = StreamGate(
                is_unauthorized=options.is_unauthorized,
                kind_of=options.kind_of,
                usage=options.usage,
            )
        return gate

    def current(self) -> Current[Any]:
        """The generation and provider a new attempt starts on."""
        current = self.flight.current
        if current.value is None:  # class mode: the instance is the provider
            return Current(current.generation, self.holder)
        # Instance mode: the provider is what the proxy wraps now, which the user may have
        # assigned (`proxy.__wrapped__ = other`), not the flight's copy. The generation is
        # read first: a refresh landing in between pairs it with the fresh provider, whose
        # 401 then finds that generation refreshed already, never the reverse. When the proxy
        # wraps the flight's provider (it nearly always does), the flight's pair is the answer.
        provider = wrapped_of(self.holder)
        return current if provider is current.value else Current(current.generation, provider)

    def start(self, provider: object) -> Any:
        """Call the original method on `provider`: a new attempt, not yet awaited or opened."""
        return self.method.invoke(provider, self.args, self.kwargs)


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
        reason, kind = skipped_because(failure), type(failure).__name__
        emit(hook, RetrySkipped(type(provider).__name__, method.name, reason, kind))
    return failure


# --------------------------------------------------------------------------------------------------
# nested intercepted calls

# The functions in whose frames an intercepted call's attempt runs the original method (each
# holds that `Call` as its local `call`), and those in whose frames a refresh runs.
_ATTEMPTS: Final[set[CodeType]] = set()
_REFRESHES: Final = frozenset({run_async.__code__, run_sync.__code__})


def runs_attempts(*functions: Callable[..., Any]) -> None:
    """Say that `functions` run attempts of the `Call` named `call` in them (see `nested`)."""
    _ATTEMPTS.update(function.__code__ for function in functions)


def nested(call: Call) -> bool:
    """Whether `call` runs inside an attempt of another intercepted call of the same flight.

    A class whose `chat` reads its own `chat_stream`, or a decorated subclass calling a
    decorated parent through `super()`: each level refreshing and retrying on its own would
    cost n refreshes and 2**n requests for a lasting 401. The outer call, which can still
    retry the whole (nothing of it committed), handles the 401 instead: the inner one passes
    it on as it came. What runs inside is read from the stack, only after a 401: nothing on
    the way of a call that succeeds, and nothing that outlives the outer attempt or leaves
    its stack (a task or thread it starts, a refresh it runs) is taken for nested.
    """
    flight = call.flight
    frame = inspect.currentframe()
    # The frame that awaits the call's own engine frame: the call's own method when it ran its
    # first attempt itself. Known without reading its locals, which costs microseconds a frame.
    own: FrameType | None = None
    while frame is not None:
        code = frame.f_code
        if code in _REFRESHES:
            return False
        if code in _ATTEMPTS and frame is not own:
            seen = frame.f_locals
            outer = cast("Call | None", seen.get("call"))
            if outer is call:
                own = frame.f_back
            elif outer is None:
                # A quick first attempt (`_calls.awaiting_method`), which makes its `Call` only
                # when it fails: a call commits nothing.
                if seen["flight"] is flight:
                    return True
            elif outer.flight is flight and not outer.gate.committed:
                return True
        frame = frame.f_back
    return False


# --------------------------------------------------------------------------------------------------
# the drivers (the sync forms below are generated from these)

# unasync source begins


async def recover_async(
    call: Call, generation: int, stale: object, failed: BaseException | None
) -> bool:
    """After a 401 on `generation`: refresh (shared) and say whether to retry.

    When not, the refresh failure is attached to `failed`, the 401 raised (if it was raised).
    Inside an attempt of an outer intercepted call of the same flight, the 401 goes on to that
    call as it is (`nested`).
    """
    if nested(call):
        return False
    library()  # async only: an unsupported event loop is said at once, not as a failure
    run = functools.partial(run_async, call, generation, stale, UNAUTHORIZED)
    outcome = await call.flight.refresh_async(generation, run)
    reason = _retrying(call, stale, outcome)
    if reason is None:
        return True
    if failed is not None:
        attach_refresh_failure(failed, reason)
    return False


async def open_async(
    call: Call,
    first: FirstAttempt | None = None,
    adopt: Callable[[Call, Current[Any], Any], Awaitable[Any]] | None = None,
) -> Any:
    """Start an attempt and open it; a 401 on the way is refreshed and retried as the gate says.

    `first` is a first attempt the method already returned, with what it was started on.
    `adopt(call, current, returned)`, given by a stream driver, opens what the method returned:
    it answers `OPENED` when it opened a stream attempt, which is returned; otherwise the
    value a call (or a stream method called for a value) resolved to is returned.
    """
    options = call.method.options
    ahead, kind_of = options.expires_at is not None, options.kind_of
    retried = False
    while True:
        current, value = first or (await ready_async(call) if ahead else call.current(), NOTHING)
        try:
            value = call.start(current.value) if value is NOTHING else value
            if adopt is not None:
                value = await adopt(call, current, value)
            while type(value) is _COROUTINE or inspect.isawaitable(value):  # async only
                value = await value  # async only
        except Exception as error:  # noqa: BLE001 - the gate says which are retried, or raised
            failed: BaseException | None = error
            verdict = call.gate.on_exception(error)
        else:
            # Only an error item can be retried: any other value is the result as it is, and
            # the gate (built on first use) is never needed on a call that meets no 401.
            if value is OPENED or kind_of(value) is not ERROR:
                return value
            failed, verdict = None, call.gate.on_item(value)[0]
        # Outside the `except` block: the retry's own errors must not be chained to the 401,
        # or a classifier reading their context would see a 401.
        if verdict is RETRY:
            first = None
            if await recover_async(call, current.generation, current.value, failed):
                retried = True
                continue
        if failed is None:
            return value
        refused_again(call, current.generation, failed, retried=retried)
        raise failed


# unasync source ends
# unasync output begins
# Written by tools/unasync.py from the source above: edit that, then run it.


def recover_sync(call: Call, generation: int, stale: object, failed: BaseException | None) -> bool:
    """After a 401 on `generation`: refresh (shared) and say whether to retry.

    When not, the refresh failure is attached to `failed`, the 401 raised (if it was raised).
    Inside an attempt of an outer intercepted call of the same flight, the 401 goes on to that
    call as it is (`nested`).
    """
    if nested(call):
        return False
    run = functools.partial(run_sync, call, generation, stale, UNAUTHORIZED)
    outcome = call.flight.refresh_sync(generation, run)
    reason = _retrying(call, stale, outcome)
    if reason is None:
        return True
    if failed is not None:
        attach_refresh_failure(failed, reason)
    return False


def open_sync(
    call: Call,
    first: FirstAttempt | None = None,
    adopt: Callable[[Call, Current[Any], Any], Any] | None = None,
) -> Any:
    """Start an attempt and open it; a 401 on the way is refreshed and retried as the gate says.

    `first` is a first attempt the method already returned, with what it was started on.
    `adopt(call, current, returned)`, given by a stream driver, opens what the method returned:
    it answers `OPENED` when it opened a stream attempt, which is returned; otherwise the
    value a call (or a stream method called for a value) resolved to is returned.
    """
    options = call.method.options
    ahead, kind_of = options.expires_at is not None, options.kind_of
    retried = False
    while True:
        current, value = first or (ready_sync(call) if ahead else call.current(), NOTHING)
        try:
            value = call.start(current.value) if value is NOTHING else value
            if adopt is not None:
                value = adopt(call, current, value)
        except Exception as error:  # noqa: BLE001 - the gate says which are retried, or raised
            failed: BaseException | None = error
            verdict = call.gate.on_exception(error)
        else:
            # Only an error item can be retried: any other value is the result as it is, and
            # the gate (built on first use) is never needed on a call that meets no 401.
            if value is OPENED or kind_of(value) is not ERROR:
                return value
            failed, verdict = None, call.gate.on_item(value)[0]
        # Outside the `except` block: the retry's own errors must not be chained to the 401,
        # or a classifier reading their context would see a 401.
        if verdict is RETRY:
            first = None
            if recover_sync(call, current.generation, current.value, failed):
                retried = True
                continue
        if failed is None:
            return value
        refused_again(call, current.generation, failed, retried=retried)
        raise failed


# unasync output ends

runs_attempts(open_async, open_sync)


# --------------------------------------------------------------------------------------------------
# plain methods: called at once, as their callers expect


def start_plain(
    call: Call, *, defer: Callable[[Call, object], bool] | None = None
) -> FirstAttempt | None:
    """Call a plain method now, as its caller expects; None when its start must wait.

    A plain method (the SDKs' `create`, `anthropic`'s `messages.stream()`) is called at once,
    and what it returns decides the rest. A refresh it needs first runs here, synchronously,
    outside an event loop. Inside one nothing may block, so no refresh ahead of expiry runs
    here: credentials inside a window are still valid, and the method is called on them. A
    coroutine it returned has sent nothing yet: it is closed (None) and started again when
    awaited, after the refresh ahead; an async stream or manager is marked `ahead`, for the
    refresh to run when it is opened. A sync client's stream or value is what the caller
    gets, as it is: refreshing ahead synchronously here would block the loop (and wait
    forever on a refresh that another task of the same loop runs), so it is left to the next
    awaited call, and a 401 meanwhile takes the 401 path.
    A 401 the method raises itself, before anything could be awaited, is refreshed here;
    inside an event loop, when `defer(call, provider)` says the caller can wait (a stream of
    an async client, opened later), it is handed back as a `RefusedAttempt`, for the refresh
    to run when the stream is first used.
    """
    current = call.current()
    ahead = call.method.options.expires_at is not None and window_of(call, current) is not None
    if ahead and not in_event_loop():
        current, ahead = ready_sync(call), False
    try:
        value = call.start(current.value)
    except Exception as error:  # noqa: BLE001 - the gate decides, in restart_plain
        failed = error
    else:
        if ahead and inspect.iscoroutine(value):
            value.close()  # never started, so nothing was sent: the awaited call starts anew
            return None
        if ahead and (hasattr(value, "__aiter__") or hasattr(value, "__aenter__")):
            return AheadAttempt(current, value)
        return FirstAttempt(current, value)
    return restart_plain(call, current, failed, defer=defer)


def restart_plain(
    call: Call,
    current: Current[Any],
    failed: Exception,
    *,
    defer: Callable[[Call, object], bool] | None = None,
) -> FirstAttempt:
    """After a plain method's first attempt on `current` raised `failed`: start it again.

    A 401 is refreshed (synchronously; see `start_plain` for `defer`) and the method called
    again; anything else, or a refresh that fails, raises `failed`.
    """
    if call.gate.on_exception(failed) is not GateAction.RETRY:
        raise failed
    if defer is not None and in_event_loop() and defer(call, current.value):
        return RefusedAttempt(current, failed)
    if not recover_sync(call, current.generation, current.value, failed):
        raise failed
    current = call.current()
    return FirstAttempt(current, call.start(current.value))


runs_attempts(start_plain, restart_plain)
