"""Single flight: one refresh per credential generation, for the whole process.

A `Flight` counts credential *generations*. A caller remembers the generation its request used
and, after a 401, asks the flight to refresh *that* generation. A caller whose generation is
already gone takes the current value without refreshing, so N callers failing together cause
one refresh: the first to ask runs it and the others wait for its end, then look again.

The waiting works across everything a process may run at once: tasks of one trio run, of
several trio runs and asyncio loops in different threads, and plain threads. A refresh in
progress is a process-wide record guarded by a `threading.Lock` (held for nanoseconds, never
across an await), and its end is a `Signal` that each event loop waits for on an event of its
own, woken through its own loop; threads wait on a `threading.Event`. No loop is ever blocked.

- Callers queued behind a refresh that fails share its failure instead of running it again;
  nothing keeps the failure once they are done (its traceback holds the stale provider).
- A refresher that is cancelled (or interrupted) ends without a verdict: the first waiter to
  look again runs the refresh itself, so nobody is stranded. Its claim is released before
  anything that can raise (a refresher collected after its loop closed, in another context).
  One cancelled while a worker thread runs the host's `refresh` leaves the refresh to that
  thread instead (`detach`): a second one would spend the same refresh token again.
- After a failure the flight cools down: for a short, doubling, capped delay, new refreshes of
  the same generation get a `RefreshCooldownError` at once instead of hammering an auth server
  that is down. The first success clears it.
- A refresh that calls the provider it refreshes (and meets a 401 there) gets a
  `ReentrantRefreshError` at once instead of waiting for itself. That is decided by the
  identity of the one refresh running: a task the refresh started, outliving it, waits for
  later refreshes like anyone else.
- A process forked at any moment (even while a thread of the parent held the lock or ran a
  refresh) starts with a working flight.

Why it is over 600 lines: the record, its waits across loops and threads, the worker thread a
refresh may run in, and the fork and cancellation hand-overs all guard the one lock, and each
of them is only right together with the others; the sync waits are generated from the async.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Generic, NamedTuple, TypeVar, cast

from ._backend import loop
from ._events import (
    ADVISORY,
    MANDATORY,
    UNAUTHORIZED,
    ReentrantRefreshError,
    RefreshCooldownError,
    Trigger,
)

if TYPE_CHECKING:
    from collections.abc import Hashable

__all__ = [
    "Adoption",
    "Current",
    "Declined",
    "Detached",
    "Flight",
    "Handover",
    "Outcome",
    "Signal",
    "Worker",
    "adoption",
    "call_in_thread_async",
    "call_in_thread_sync",
    "reset_quietly",
    "trigger",
]

T = TypeVar("T")
R = TypeVar("R")


class Current(NamedTuple, Generic[T]):
    """What a caller starts on: the credential generation and the value that holds it."""

    generation: int
    value: T


class Handover(NamedTuple):
    """How deep into the windows before expiry a generation's credentials were when handed over.

    Credentials that are inside a window already when a refresh hands them over are not
    refreshed ahead in that window again (`_refresh`): it would only fetch the same again.
    """

    generation: int
    depth: int
    """0 outside the windows, 1 in the advisory one, 2 in the mandatory one."""

    def window(self, generation: int, depth: int) -> Trigger | None:
        """The window that calls for refreshing `generation`'s credentials ahead, at `depth`.

        None outside the windows, and in a window those credentials were handed over in: a
        generation is refreshed ahead at most once per window (tokens that live less than the
        window, a host clock ahead of the issuer), which would only fetch the same again.
        """
        floor = self.depth if self.generation == generation else 0
        if depth <= floor:
            return None
        return ADVISORY if depth == 1 else MANDATORY


class Outcome(NamedTuple, Generic[T]):
    """What a refresh gave every caller that asked for it: a fresh value, or an error."""

    value: T | None
    error: Exception | None


# --------------------------------------------------------------------------------------------------
# waiting across event loops and threads

_THREADS: Final = "threads"
"""The waiting place of plain threads in a `Signal`; event loops are keyed by themselves."""


class _Waiters(NamedTuple):
    """The waiters of one event loop (or of all plain threads) on one `Signal`."""

    event: Any
    """A trio.Event, an asyncio.Event or a threading.Event, each waited on in its own world."""
    thread: int
    """The thread the loop runs in: a `set()` from that thread wakes the event directly."""
    post: Callable[[Callable[[], object]], object]
    """How another thread schedules a callback in that loop (`run_sync_soon`, ...)."""


class Signal:
    """A one-shot event that tasks of any trio run or asyncio loop, and threads, can wait for.

    All the waiters of one loop share one event of that loop, so setting the signal wakes each
    loop once (its waiters then run in one scheduler batch), not each waiter.
    """

    __slots__ = ("_is_set", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._is_set = False
        self._waiters: dict[Hashable, _Waiters] = {}

    def set(self) -> None:
        """Wake every waiter, in every loop and thread; later waits return at once."""
        with self._lock:
            if self._is_set:
                return
            self._is_set = True
            waiters, self._waiters = self._waiters, {}
        here = threading.get_ident()
        for each in waiters.values():
            if each.thread == here:
                each.event.set()
                continue
            try:
                each.post(each.event.set)
            except RuntimeError:  # that loop has closed since: nobody is left to wake there
                continue

    def _waiters_here(
        self, key: Hashable, make: Callable[[], Any], post: Callable[[Callable[[], object]], object]
    ) -> Any:
        """The event this loop (or the threads) waits on, or None when the signal is set."""
        with self._lock:
            if self._is_set:
                return None
            waiters = self._waiters.get(key)
            if waiters is None:
                waiters = self._waiters[key] = _Waiters(make(), threading.get_ident(), post)
            return waiters.event

    def wait_async(self) -> Awaitable[object]:
        """Wait in the running event loop, without blocking it (await what this returns).

        The loop's own event is awaited directly, one frame less for every waiter of a herd.
        """
        event = self._waiters_here(*loop())
        return _set_already() if event is None else event.wait()

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Wait in this thread; False when `timeout` seconds passed first."""
        event = self._waiters_here(_THREADS, threading.Event, _call_now)
        return event is None or bool(event.wait(timeout))


def _call_now(callback: Callable[[], object]) -> None:
    callback()


async def _set_already() -> None:
    """What waiting on a signal that is set already comes to."""


# --------------------------------------------------------------------------------------------------
# running a plain function without blocking the caller


class _Result(NamedTuple, Generic[R]):
    value: R | None
    error: BaseException | None


class Worker(Generic[R]):
    """A plain function running in a daemon thread with the caller's context.

    The thread may be abandoned (a timeout): being a daemon, it never keeps the process alive.
    Whatever it raises, `KeyboardInterrupt` and `SystemExit` included, is handed to whoever
    takes its result, to raise as itself. A caller that leaves while it runs (cancelled) can
    hand its result on with `then` instead of throwing it away.
    """

    __slots__ = ("_lock", "_result", "_then", "done")

    def __init__(self, function: Callable[[], R]) -> None:
        self.done = Signal()
        self._lock = threading.Lock()
        self._result: _Result[R] | None = None
        self._then: Callable[[Callable[[], R]], object] | None = None
        context = contextvars.copy_context()
        threading.Thread(
            target=self._run,
            args=(context, function),
            name="refresh_middleware refresh",
            daemon=True,
        ).start()

    def _run(self, context: contextvars.Context, function: Callable[[], R]) -> None:
        try:
            result: _Result[R] = _Result(context.run(function), None)
        except BaseException as error:  # noqa: BLE001 - handed over, to be raised by the taker
            result = _Result(None, error)
        with self._lock:
            self._result, then = result, self._then
        self.done.set()
        if then is not None:
            then(self.result)

    def result(self) -> R:
        """What the function returned, or its error raised; once `done` is set."""
        result = cast("_Result[R]", self._result)
        if result.error is not None:
            raise result.error
        return cast("R", result.value)

    async def wait_async(self) -> R:
        """Wait for the thread in the running event loop, without blocking it; its result.

        Cancelling the caller leaves the thread running, so a timeout around this bounds it.
        """
        await self.done.wait_async()
        return self.result()

    def wait_sync(self, timeout: float) -> R:
        """Wait for the thread at most `timeout` seconds; its result, or `TimeoutError`.

        A thread cannot be interrupted: one that overruns is abandoned.
        """
        if not self.done.wait_sync(timeout):
            raise TimeoutError
        return self.result()

    def then(self, callback: Callable[[Callable[[], R]], object]) -> None:
        """Call `callback(result)` when the thread ends, in that thread (now, if it has ended).

        `result` returns the function's value or raises its error; `callback` must not raise.
        """
        with self._lock:
            if self._result is None:
                self._then = callback
                return
        callback(self.result)


async def call_in_thread_async(function: Callable[[], R]) -> R:
    """Run a plain function in a worker thread while the event loop serves other tasks.

    Cancelling the caller abandons the thread, so a timeout around this bounds it.
    """
    return await Worker(function).wait_async()


def call_in_thread_sync(function: Callable[[], R], timeout: float) -> R:
    """Run a plain function in a worker thread, waiting for it at most `timeout` seconds.

    A thread cannot be interrupted: one that overruns is abandoned and `TimeoutError` raised.
    """
    return Worker(function).wait_sync(timeout)


# --------------------------------------------------------------------------------------------------
# the flight

_fork_epoch = 0
"""Bumped in a forked child: a flight made before the fork starts afresh there."""


def _after_fork_in_child() -> None:
    global _fork_epoch  # noqa: PLW0603 - one counter for the whole process, by design
    _fork_epoch += 1


os.register_at_fork(after_in_child=_after_fork_in_child)

_refreshing: contextvars.ContextVar[frozenset[object]] = contextvars.ContextVar(
    "refresh_middleware_refreshing", default=frozenset()
)
"""The refreshes the current context runs, each by an identity made for it and never reused.

A task that a refresh starts inherits this value for life; since it names that one refresh,
the task is "inside the refresh" only while that refresh runs, not during later ones."""


def reset_quietly(variable: contextvars.ContextVar[Any], token: contextvars.Token[Any]) -> None:
    """Undo `variable.set()`, unless this is another context than the one that set it.

    A coroutine abandoned by a closed loop is closed later by the garbage collector, in
    whatever context runs then: there the reset raises, and nothing is left to undo.
    """
    with contextlib.suppress(ValueError):
        variable.reset(token)


trigger: contextvars.ContextVar[Trigger] = contextvars.ContextVar(
    "refresh_middleware_trigger", default=UNAUTHORIZED
)
"""Why the refresh running in this context started: "401", "advisory" or "mandatory".

Set around the host's `refresh`, so what it calls can tell a refresh that may give way (the
advisory window: someone else is on it, carry on) from one that must wait for fresh
credentials; `refresh_middleware.shared` takes its fleet lock accordingly."""


class Adoption:
    """What the host's `refresh` says back: whether it handed over credentials it did not fetch.

    A fleet renewal (`refresh_middleware.shared`) that finds a newer record stored by another
    process adopts it. Should that record be refused at once, nothing was fetched for this
    failure (the record may predate a revocation, or come from a host whose clock runs ahead):
    the next refresh fetches for real rather than cool down (`Flight.refused`).
    """

    __slots__ = ("adopted",)

    def __init__(self) -> None:
        self.adopted = False


adoption: contextvars.ContextVar[Adoption | None] = contextvars.ContextVar(
    "refresh_middleware_adoption", default=None
)
"""Where the host's `refresh`, running in this context, says it adopted credentials.

Set around the host's `refresh`, as `trigger` is; one object, so a `refresh` run in a worker
thread or another task (each with a copy of the context) reaches the same one."""


class Declined(Exception):  # noqa: N818 - not an error of its own: it carries one
    """Raised by a refresh that this caller cannot run at all: no refresh, so no verdict.

    A sync call cannot await a coroutine `refresh`: it fails alone, with `reason`, while the
    flight records nothing (no failure to share, no cooldown) and the next caller refreshes.
    """

    def __init__(self, reason: Exception) -> None:
        super().__init__(str(reason))
        self.reason = reason


class _Running:
    """A refresh in progress: its generation, the signal of its end, and its failure if any.

    Only the callers waiting on it hold it, so they share its failure, and the failure (with
    the frames of its traceback, which hold the stale provider) goes when they are done.
    """

    __slots__ = ("detached", "done", "failure", "generation", "identity")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.done = Signal()
        self.failure: Exception | None = None
        self.detached = False
        """True once the refresher left and whoever has the result settles the refresh."""
        self.identity = object()
        """What the contexts running this refresh hold in `_refreshing`: it ends with it."""


class _Waiting(NamedTuple):
    """A caller's step: wait for the refresh in progress, then share its failure or look again."""

    running: _Running


class _Cooldown(NamedTuple):
    """After a failed refresh: when it failed, on the flight's clock, and how long new ones wait."""

    failed_at: float
    delay: float


class Flight(Generic[T]):
    """The generation counter, refresh in progress and cooldown of one credential.

    `current` is a `Current(generation, value)`, replaced as one tuple so a thread never pairs a
    generation with another generation's value. Reading it takes no lock: the path of a call
    that meets no 401 never waits on anything.
    """

    __slots__ = (
        "__weakref__",
        "_asked",
        "_cleared",
        "_clock",
        "_cooldown",
        "_epoch",
        "_forgiven",
        "_lock",
        "_running",
        "adopted",
        "cooldown",
        "current",
        "handover",
    )

    def __init__(
        self,
        value: T,
        *,
        cooldown: tuple[float, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.current: Current[T] = Current(0, value)
        self.cooldown = cooldown
        """`(first, cap)` seconds: how long new refreshes wait after a failed one, or None."""
        self._clock = clock
        """What the cooldown is timed on: one clock for the credential, whichever thread, trio
        run or asyncio loop saw the failure and whichever asks next."""
        self.handover = Handover(0, 0)
        """How deep into the windows before expiry the newest credentials were when handed over."""
        self.adopted = -1
        """The newest generation a refresh handed over without fetching it (`Adoption`)."""
        self._forgiven = -1  # the last adopted generation whose refusal started no cooldown
        self._lock = threading.Lock()
        self._epoch = _fork_epoch
        self._running: _Running | None = None
        self._cooldown: _Cooldown | None = None
        self._cleared: tuple[int, _Cooldown | None] = (0, None)
        self._asked = (0, 0)  # (generation, how many callers asked to refresh it)

    def busy(self) -> bool:
        """True while a refresh is in progress, in any task, loop or thread."""
        return self._running is not None

    def asked(self, generation: int) -> int:
        """How many callers asked to refresh `generation` so far."""
        asked_for, count = self._asked
        return count if asked_for == generation else 0

    def detach(self) -> Detached[T]:
        """Let the refresh this caller runs outlive it: its claim stays until it is settled.

        For a refresher that is cancelled while a worker thread runs the host's `refresh`:
        the thread goes on, and its result, not a second refresh, is what the waiters get.
        """
        claim = cast("_Running", self._running)
        claim.detached = True
        return Detached(claim.generation, functools.partial(self._finish_detached, claim))

    def _finish_detached(self, claim: _Running, outcome: Outcome[T] | None) -> None:
        if outcome is not None and outcome.error is not None:
            self._failed(claim, outcome.error)
        elif outcome is not None:
            self._succeeded(claim.generation, cast("T", outcome.value))
        self._release(claim)

    # unasync source begins

    async def refresh_async(
        self, generation: int, run: Callable[[], Awaitable[T]], *, urgent: bool = False
    ) -> Outcome[T]:
        """Refresh `generation` once, however many callers ask; returns what they all share.

        `run` produces the fresh value; it runs in this caller, in at most one at a time. A
        waiting caller waits in its own event loop (or, in the sync form, blocks its thread).
        `urgent` (credentials about to lapse) caps the cooldown at its first delay, so a
        recovered auth server is noticed quickly while a down one still sees few attempts.
        """
        claim = self._claim(generation, urgent=urgent, first=True)
        while isinstance(claim, _Waiting):
            running = claim.running
            await running.done.wait_async()
            if running.failure is not None:
                return Outcome(None, running.failure)
            claim = self._claim(generation, urgent=urgent, first=False)
        if isinstance(claim, Outcome):
            return claim
        token = _refreshing.set(_refreshing.get() | {claim.identity})
        try:
            try:
                fresh = await run()
            except Exception as error:  # noqa: BLE001 - shared with every waiter
                return self._failed(claim, error)
            return self._succeeded(generation, fresh)
        finally:
            # Releasing first: the reset can meet another context (a refresher collected after
            # its loop closed), and the claim must go whatever happens after. A detached refresh
            # keeps it: a thread still runs it, whose result the waiters get.
            self._leave(claim)
            reset_quietly(_refreshing, token)

    # unasync source ends
    # unasync output begins
    # Written by tools/unasync.py from the source above: edit that, then run it.

    def refresh_sync(
        self, generation: int, run: Callable[[], T], *, urgent: bool = False
    ) -> Outcome[T]:
        """Refresh `generation` once, however many callers ask; returns what they all share.

        `run` produces the fresh value; it runs in this caller, in at most one at a time. A
        waiting caller waits in its own event loop (or, in the sync form, blocks its thread).
        `urgent` (credentials about to lapse) caps the cooldown at its first delay, so a
        recovered auth server is noticed quickly while a down one still sees few attempts.
        """
        claim = self._claim(generation, urgent=urgent, first=True)
        while isinstance(claim, _Waiting):
            running = claim.running
            running.done.wait_sync()
            if running.failure is not None:
                return Outcome(None, running.failure)
            claim = self._claim(generation, urgent=urgent, first=False)
        if isinstance(claim, Outcome):
            return claim
        token = _refreshing.set(_refreshing.get() | {claim.identity})
        try:
            try:
                fresh = run()
            except Exception as error:  # noqa: BLE001 - shared with every waiter
                return self._failed(claim, error)
            return self._succeeded(generation, fresh)
        finally:
            # Releasing first: the reset can meet another context (a refresher collected after
            # its loop closed), and the claim must go whatever happens after. A detached refresh
            # keeps it: a thread still runs it, whose result the waiters get.
            self._leave(claim)
            reset_quietly(_refreshing, token)

    # unasync output ends

    # -- the steps both forms share ------------------------------------------------------------

    def _after_fork(self) -> None:
        # Only the forking thread lives on in the child: a lock another thread held, or a
        # refresh it ran, would never be released there.
        self._lock = threading.Lock()
        self._running = None
        self._epoch = _fork_epoch

    def _claim(
        self, generation: int, *, urgent: bool, first: bool
    ) -> Outcome[T] | _Waiting | _Running:
        """The caller's next step: an outcome to take, a refresh to wait for, or one to run.

        A caller is counted on its `first` claim (for the events' `shared_by`).
        """
        if self._epoch != _fork_epoch:
            self._after_fork()
        with self._lock:
            if first:
                asked_for, count = self._asked
                self._asked = (generation, count + 1 if asked_for == generation else 1)
            current = self.current
            if current.generation != generation:
                return Outcome(current.value, None)
            running = self._running
            if running is not None:
                if running.identity in _refreshing.get():
                    return Outcome(None, _reentrant())
                return _Waiting(running)
            cooling = self._cooling(urgent=urgent)
            if cooling is not None:
                return Outcome(None, cooling)
            self._running = running = _Running(generation)
            return running

    def _cooling(self, *, urgent: bool) -> RefreshCooldownError | None:
        cooldown = self._cooldown
        if cooldown is None:
            return None
        delay = cooldown.delay
        if urgent and self.cooldown is not None:
            delay = min(delay, self.cooldown[0])
        moment = self._clock()
        until = cooldown.failed_at + delay
        if moment >= until:
            return None
        return RefreshCooldownError(
            "the last refresh failed moments ago, and the next is not tried for "
            f"another {until - moment:.3g} s (cooldown)"
        )

    def _succeeded(self, generation: int, fresh: T) -> Outcome[T]:
        with self._lock:
            self.current = Current(generation + 1, fresh)
            # Kept aside: should the fresh credentials be refused at once, the refresh achieved
            # nothing, and the cooldown goes on from where it was (`refused`).
            self._cleared = (generation + 1, self._cooldown)
            self._cooldown = None
        return Outcome(fresh, None)

    def _failed(self, claim: _Running, error: Exception) -> Outcome[T]:
        if isinstance(error, Declined):  # nothing ran: no verdict, the caller fails alone
            return Outcome(None, error.reason)
        claim.failure = error
        with self._lock:
            self._cool(self._cooldown)
        return Outcome(None, error)

    def refused(self, generation: int) -> None:
        """The credentials of `generation` were refused right after the refresh that made them.

        That refresh achieved nothing: new refreshes cool down as after a failed one, rather
        than fetching credentials the provider refuses once per call. Callers refused together
        count once.

        Credentials the refresh adopted rather than fetched are the exception: nothing was
        fetched for this failure, so the next refresh fetches at once. Only once in a row, and
        not after a cooldown: a provider that refuses everything, while another process does
        the fetching, is not asked once per call.
        """
        with self._lock:
            if self.current.generation != generation or self._cooldown is not None:
                return
            cleared_at, cleared = self._cleared
            previous = cleared if cleared_at == generation else None
            if self.adopted == generation and previous is None and self._forgiven != generation - 1:
                self._forgiven = generation
                return
            self._cool(previous)

    def _cool(self, previous: _Cooldown | None) -> None:
        """Start the cooldown after a failure (under the lock), doubling `previous`'s delay."""
        if self.cooldown is not None:
            first, cap = self.cooldown
            delay = first if previous is None else min(cap, previous.delay * 2)
            self._cooldown = _Cooldown(self._clock(), delay)

    def _leave(self, claim: _Running) -> None:
        """The refresher leaves: its claim goes, unless a detached refresh keeps it."""
        if not claim.detached:
            self._release(claim)

    def _release(self, claim: _Running) -> None:
        with self._lock:
            if self._running is claim:
                self._running = None
        claim.done.set()


class Detached(Generic[T]):
    """A refresh whose refresher left while it ran: settled once, by whoever ends it first."""

    __slots__ = ("_finish", "_lock", "_settled", "generation")

    def __init__(self, generation: int, finish: Callable[[Outcome[T] | None], None]) -> None:
        self.generation = generation
        """The generation being refreshed."""
        self._finish = finish
        self._lock = threading.Lock()
        self._settled = False

    def settle(self, end: Callable[[], Outcome[T] | None]) -> None:
        """Settle the refresh with `end()`, once: the thread's end and a timeout race for it.

        `end` says how the refresh ended (None: without a verdict, the next caller refreshes);
        the waiters are woken after it returned.
        """
        with self._lock:
            if self._settled:
                return
            self._settled = True
        self._finish(end())


def _reentrant() -> ReentrantRefreshError:
    return ReentrantRefreshError(
        "this call was made by the refresh of the same credentials and met a 401 too; it is "
        "not retried, since the refresh it would wait for is the one that made it"
    )
