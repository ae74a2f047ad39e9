"""Calls (`chat`, `embed`): what an intercepted call method becomes, for each shape.

A call is an attempt that resolves to a value: `_retry.open_async` (or `open_sync`) starts it,
awaits it if it must, and on a 401 (raised, or an error value returned) refreshes once and
retries once. Only how the first attempt starts differs by shape.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

from ._retry import Call, open_async, open_sync, start_plain

__all__ = ["call_coroutine", "call_plain"]


call_coroutine: Final = open_async
"""A coroutine method, or an awaitable a plain method returned: awaiting gives the result.

It is the engine itself, called with the `Call` (and the first attempt, if one started): the
proxy's method awaits the engine's coroutine with no frame between them, and a herd of callers
waiting on one refresh waits through the fewest frames.
"""


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
