"""Calls (`chat`, `embed`): what an intercepted call method becomes, for each shape.

A call is an attempt that resolves to a value: `_retry.open_async` (or `open_sync`) starts it,
awaits it if it must, and on a 401 (raised, or an error value returned) refreshes once and
retries once. Only how the first attempt starts differs by shape.
"""

from __future__ import annotations

import inspect
from typing import Any

from ._retry import Call, FirstAttempt, open_async, open_sync, start_plain

__all__ = ["call_coroutine", "call_plain"]


def call_coroutine(call: Call, first: FirstAttempt | None = None) -> Any:
    """A coroutine method, or an awaitable a plain method returned: awaiting gives the result.

    The engine's own coroutine is handed over as it is: a herd of callers waiting on one
    refresh then waits through the fewest frames.
    """
    return open_async(call, first)


def call_plain(call: Call) -> Any:
    """A plain method: its value now, or, when it returned an awaitable, a coroutine for it.

    The SDKs' `create` methods are plain functions that return a coroutine: awaiting ours
    awaits theirs, so a 401 raised at the `await` is refreshed and retried there.
    """
    first = start_plain(call)
    if first is None:
        return call_coroutine(call)
    if inspect.isawaitable(first.value):
        return call_coroutine(call, first)
    return open_sync(call, first)
