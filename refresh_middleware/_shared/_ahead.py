"""Refreshing ahead of expiry, for the doors of a `SharedCredential` and the helper command.

As the decorator does: in the advisory window (two minutes before expiry) one caller of a
door renews while the others go on, and a process that finds the fleet's lock taken carries
on with the still-valid record; in the mandatory window (thirty seconds before) callers wait
for the renewal. A generation is refreshed ahead at most once per window (a token that lives
less than the window is not fetched again and again). A failed renewal ahead is logged and the
current credential used: the 401 path stays as the safety net.

The windows are read by the decorator's own engine (`_spec.depth` for how deep into them a
credential is, `Handover.window` for whether that calls for a renewal), with its default
`refresh_ahead`; only the bookkeeping of a door and its two drivers live here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from typing import TYPE_CHECKING

from refresh_middleware._events import ADVISORY, MANDATORY, Trigger, describe, logger
from refresh_middleware._flight import Handover, trigger
from refresh_middleware._spec import REFRESH_AHEAD
from refresh_middleware._spec import depth as window_depth

from ._records import Credential

if TYPE_CHECKING:
    from collections.abc import Generator

    from ._credential import SharedCredential

__all__ = ["ADVISORY", "MANDATORY", "Ahead", "depth", "expired", "ready_async", "ready_sync"]


def depth(credential: Credential, now: float) -> int:
    """0 outside the windows (or expiry unknown), 1 in the advisory one, 2 in the mandatory.

    The decorator's windows by default (`refresh_ahead`), read by the decorator's own engine.
    """
    expires_at = credential.expires_at
    remaining = math.inf if expires_at is None else expires_at - now
    return window_depth(remaining, REFRESH_AHEAD)


class Ahead:
    """The refresh-ahead state of one door: who is renewing in the advisory window, and when.

    Pure bookkeeping under a lock held for nanoseconds; the drivers below do the renewing.
    """

    __slots__ = ("_advising", "_born", "_lock", "known")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._advising = False
        self._born = Handover(-1, 0)  # the window a renewal handed the generation over in
        self.known: Credential | None = None
        """The credential this door last handed out (a sync door starts from it)."""

    def due(self, credential: Credential) -> Trigger | None:
        """The window that calls for renewing `credential` now, claimed; or None.

        None: `credential` is what this door hands out, as it is.
        """
        window = self._born.window(credential.generation, depth(credential, time.time()))
        if window == ADVISORY and not self._claim():
            window = None  # another caller of this door is on it: go on
        if window is None:
            self.known = credential
        return window

    def _claim(self) -> bool:
        """Claim the renewal in the advisory window; False when another caller has it."""
        with self._lock:
            if self._advising:
                return False
            self._advising = True
            return True

    def ended(self, window: str, credential: Credential) -> None:
        """A renewal ahead in `window` ended with `credential` (fresh, or the old one)."""
        self._born = Handover(credential.generation, depth(credential, time.time()))
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


@dataclasses.dataclass(slots=True)
class _Renewal:
    """A renewal ahead as a driver sees it: whether one is due, and the credential to send.

    The credential is the renewed one, or the one it had when none was due or it failed.
    """

    due: bool
    credential: Credential


@contextlib.contextmanager
def _renewing(
    shared: SharedCredential, ahead: Ahead, credential: Credential
) -> Generator[_Renewal, None, None]:
    """The steps around renewing `credential` ahead, when a window before expiry calls for it.

    The window is the renewal's trigger while it runs; a failure is logged and the credential
    kept (it is still valid, and the 401 path stays as the safety net); the door hears how it
    ended. The drivers below only renew, awaited or called, inside.
    """
    window = ahead.due(credential)
    renewal = _Renewal(due=window is not None, credential=credential)
    if window is None:
        yield renewal
        return
    reason = trigger.set(window)
    try:
        yield renewal
    except Exception as error:  # noqa: BLE001 - the 401 path stays as the safety net
        _failed_ahead(shared, window, error)
    finally:
        trigger.reset(reason)
        ahead.ended(window, renewal.credential)


# Two short drivers over the same steps (`_renewing`): the renewal awaited, or called.


async def ready_async(shared: SharedCredential, ahead: Ahead) -> Credential:
    """The credential to send now, renewed first when it is in a window before expiry."""
    credential = await shared.current()
    with _renewing(shared, ahead, credential) as renewal:
        if renewal.due:
            renewal.credential = await shared.renew(credential)
    return renewal.credential


def ready_sync(shared: SharedCredential, ahead: Ahead) -> Credential:
    """`ready_async` for threads; a credential this door knows unexpired is used as it is.

    The sync forms of `SharedCredential` run on a private loop in a worker thread, which is
    worth paying per renewal, not per request.
    """
    known = ahead.known
    credential = known if known is not None and not expired(known) else shared.current_sync()
    with _renewing(shared, ahead, credential) as renewal:
        if renewal.due:
            renewal.credential = shared.renew_sync(credential)
    return renewal.credential


def expired(credential: Credential) -> bool:
    return credential.expires_at is not None and time.time() >= credential.expires_at
