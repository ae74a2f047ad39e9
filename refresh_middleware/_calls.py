"""Calls (`chat`, `embed`): what an intercepted call method becomes, for each shape.

A call is an attempt that resolves to a value: `_retry.open_async` (or `open_sync`) starts it,
awaits it if it must, and on a 401 (raised, or an error value returned) refreshes once and
retries once. Only how the first attempt starts differs by shape.

Some frameworks stream a call's output beside it, through callbacks (LangGraph streams the
tokens of a LangChain model's `ainvoke`): once such output went out, the call is committed and
a 401 after it is raised, as in a stream. The framework's dialect knows how to see that output
go out (a `Watch`); `watch_output_of` hooks it when one of its objects is wrapped, and the
running calls of each task or thread are kept in a context variable for `went_out` to commit.
"""

from __future__ import annotations

import contextvars
import inspect
import threading
from typing import Any, Final

from ._kinds import ItemKind, watches_for
from ._retry import Call, FirstAttempt, open_async, open_sync, start_plain

__all__ = ["call_coroutine", "call_plain", "watch_output_of", "went_out"]

_OUTPUT: Final = ItemKind.OUTPUT

# The calls running in this task or thread, innermost last: output sent out beside an inner
# call was sent beside the outer ones too.
_running: Final[contextvars.ContextVar[tuple[Call, ...]]] = contextvars.ContextVar(
    "refresh_middleware_running_calls", default=()
)


class _Watched:
    """The watches hooked in this process (each once), and whether any is."""

    def __init__(self) -> None:
        self.modules: set[str] = set()
        self.lock = threading.Lock()


_watched: Final = _Watched()


def watch_output_of(cls: type) -> None:
    """Hook the watches of the frameworks `cls` comes from, once per process each."""
    for watch in watches_for(cls):
        with _watched.lock:
            if watch.module in _watched.modules:
                continue
            watch.install(went_out)
            _watched.modules.add(watch.module)


def went_out(item: object) -> None:
    """A framework sent `item` out beside the calls running here: OUTPUT commits each of them."""
    for call in _running.get():
        gate = call.gate
        if not gate.committed and gate.kind_of(item) is _OUTPUT:
            gate.committed = True


async def _watching(call: Call, first: FirstAttempt | None) -> Any:
    running = _running.set((*_running.get(), call))
    try:
        return await open_async(call, first)
    finally:
        _running.reset(running)


def call_coroutine(call: Call, first: FirstAttempt | None = None) -> Any:
    """A coroutine method, or an awaitable a plain method returned: awaiting gives the result.

    The engine's own coroutine is handed over as it is while no framework that streams
    beside calls is watched: a herd of callers waiting on one refresh then waits through the
    fewest frames.
    """
    if not _watched.modules:
        return open_async(call, first)
    return _watching(call, first)


def call_plain(call: Call) -> Any:
    """A plain method: its value now, or, when it returned an awaitable, a coroutine for it.

    The SDKs' `create` methods are plain functions that return a coroutine: awaiting ours
    awaits theirs, so a 401 raised at the `await` is refreshed and retried there.
    """
    running = _running.set((*_running.get(), call)) if _watched.modules else None
    try:
        first = start_plain(call)
        if first is None:
            return call_coroutine(call)
        if inspect.isawaitable(first.value):
            return call_coroutine(call, first)
        return open_sync(call, first)
    finally:
        if running is not None:
            _running.reset(running)
