"""Refreshing ahead of expiry, for the doors of a `SharedCredential` and the helper command.

As the decorator does: in the advisory window (two minutes before expiry) one caller of a
door renews while the others go on, and a process that finds the fleet's lock taken carries
on with the still-valid record; in the mandatory window (thirty seconds before) callers wait
for the renewal. A generation is refreshed ahead at most once per window (a token that lives
less than the window is not fetched again and again). A failed renewal ahead is logged and the
current credential used: the 401 path stays as the safety net.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Final, NamedTuple

from refresh_middleware._events import ADVISORY, MANDATORY, Trigger, describe, logger
from refresh_middleware._flight import trigger

from ._records import Credential

if TYPE_CHECKING:
    from ._credential import SharedCredential

__all__ = ["ADVISORY", "MANDATORY", "Ahead", "depth", "expired", "ready_async", "ready_sync"]

ADVISORY_SECONDS: Final = 120.0
"""Seconds before expiry where one caller renews while the others go on."""

MANDATORY_SECONDS: Final = 30.0
"""Seconds before expiry where every caller waits for the renewal."""


def depth(credential: Credential, now: float) -> int:
    """0 outside the windows (or expiry unknown), 1 in the advisory one, 2 in the mandatory."""
    if credential.expires_at is None:
        return 0
    remaining = credential.expires_at - now
    if remaining > ADVISORY_SECONDS:
        return 0
    return 1 if remaining > MANDATORY_SECONDS else 2


class _Born(NamedTuple):
    """The window a generation was already in when a renewal handed it over."""

    generation: int
    depth: int


class Ahead:
    """The refresh-ahead state of one door: who is renewing in the advisory window, and when.

    Pure bookkeeping under a lock held for nanoseconds; the drivers below do the renewing.
    """

    __slots__ = ("_advising", "_born", "_lock", "known")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._advising = False
        self._born = _Born(-1, 0)
        self.known: Credential | None = None
        """The credential this door last handed out (a sync door starts from it)."""

    def due(self, credential: Credential) -> Trigger | None:
        """The window that calls for renewing `credential` now, claimed; or None."""
        reached = depth(credential, time.time())
        born = self._born
        floor = born.depth if born.generation == credential.generation else 0
        if reached <= floor:
            return None
        if reached == 2:
            return MANDATORY
        with self._lock:
            if self._advising:  # another caller of this door is on it: go on
                return None
            self._advising = True
        return ADVISORY

    def ended(self, window: str, credential: Credential) -> None:
        """A renewal ahead in `window` ended with `credential` (fresh, or the old one)."""
        self._born = _Born(credential.generation, depth(credential, time.time()))
        self.known = credential
        if window == ADVISORY:
            with self._lock:
                self._advising = False


def _failed_ahead(shared: SharedCredential, window: str, error: Exception) -> None:
    logger.warning(
        "refresh_middleware: %r could not renew in the %s window before expiry (%s); "
        "going on with the current credential",
        shared,
        window,
        describe(error),
    )


# unasync-style pair: the same steps, awaited or called


async def ready_async(shared: SharedCredential, ahead: Ahead) -> Credential:
    """The credential to send now, renewed first when it is in a window before expiry."""
    credential = await shared.current()
    window = ahead.due(credential)
    if window is None:
        ahead.known = credential
        return credential
    reason = trigger.set(window)
    fresh = credential
    try:
        fresh = await shared.renew(credential)
    except Exception as error:  # noqa: BLE001 - the 401 path stays as the safety net
        _failed_ahead(shared, window, error)
    finally:
        trigger.reset(reason)
        ahead.ended(window, fresh)
    return fresh


def ready_sync(shared: SharedCredential, ahead: Ahead) -> Credential:
    """`ready_async` for threads; a credential this door knows unexpired is used as it is.

    The sync forms of `SharedCredential` run on a private loop in a worker thread, which is
    worth paying per renewal, not per request.
    """
    known = ahead.known
    credential = known if known is not None and not expired(known) else shared.current_sync()
    window = ahead.due(credential)
    if window is None:
        ahead.known = credential
        return credential
    reason = trigger.set(window)
    fresh = credential
    try:
        fresh = shared.renew_sync(credential)
    except Exception as error:  # noqa: BLE001 - the 401 path stays as the safety net
        _failed_ahead(shared, window, error)
    finally:
        trigger.reset(reason)
        ahead.ended(window, fresh)
    return fresh


def expired(credential: Credential) -> bool:
    return credential.expires_at is not None and time.time() >= credential.expires_at
