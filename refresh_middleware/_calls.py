"""Calls (`chat`, `embed`): what an intercepted call method becomes, for each shape.

A call is an attempt that resolves to a value: `_retry.open_async` (or `open_sync`) starts it,
awaits it if it must, and on a 401 (raised, or an error value returned) refreshes once and
retries once. Only how the first attempt starts differs by shape.
"""

from __future__ import annotations

import inspect
from typing import Any, cast

from ._retry import Call, Returned, Started, open_async, open_sync, start_plain

__all__ = ["call_coroutine", "call_plain"]


async def call_coroutine(call: Call, started: Started | None = None) -> Any:
    """A coroutine method, or an awaitable a plain method returned: the awaited result."""
    return cast("Returned", await open_async(call, started)).value


def call_plain(call: Call) -> Any:
    """A plain method: its value now, or, when it returned an awaitable, a coroutine for it.

    The SDKs' `create` methods are plain functions that return a coroutine: awaiting ours
    awaits theirs, so a 401 raised at the `await` is refreshed and retried there.
    """
    started = start_plain(call)
    if started is None:
        return call_coroutine(call)
    if inspect.isawaitable(started.value):
        return call_coroutine(call, started)
    return cast("Returned", open_sync(call, started)).value
