"""Proactive refresh: renew credentials shortly before they expire, so steady traffic sees no 401.

With an `expires_at` accessor, every call first looks at how long the current credentials have
left (one accessor call and one clock read):

- more than the advisory window: go ahead;
- inside the advisory window: one caller refreshes while the others go ahead on the
  still-valid provider; a failure is logged and tried again later (after the cooldown), never
  surfaced;
- inside the mandatory window (or past expiry): everyone waits for the single refresh; if it
  fails, the call raises `RefreshError` rather than send credentials that are about to lapse.

Reactive 401 handling stays on as the safety net.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._events import RefreshError, describe, logger

if TYPE_CHECKING:
    from ._flight import Flight, RefreshOutcome
    from ._spec import MethodSpec

__all__ = ["ready_async", "ready_sync"]

ADVISORY = "advisory"
MANDATORY = "mandatory"


def _window(spec: MethodSpec, provider: object) -> tuple[str | None, float]:
    """Which refresh window the provider's credentials are in, and how long they have left."""
    options = spec.options
    try:
        expiry = options.expires_at(provider)  # type: ignore[misc]
        remaining = float("inf") if expiry is None else expiry - options.clock()
    except Exception as error:  # noqa: BLE001 - an unknown expiry leaves the 401 safety net
        logger.debug("refresh_middleware: expires_at raised %s", describe(error))
        return None, float("inf")
    advisory, mandatory = options.refresh_ahead
    if remaining > advisory:
        return None, remaining
    return (ADVISORY if remaining > mandatory else MANDATORY), remaining


def _outcome(
    flight: Flight,
    holder: object,
    started_on: tuple[int, Any],
    window: str,
    remaining: float,
    outcome: RefreshOutcome,
) -> tuple[int, Any]:
    failure = outcome[1]
    if failure is None:
        return flight.current(holder)
    if window == ADVISORY:
        return started_on  # still valid: the next caller in the window tries again
    name = type(started_on[1]).__name__
    why = describe(failure) if isinstance(failure, RefreshError) else type(failure).__name__
    msg = (
        f"the credentials of {name} expire in {max(remaining, 0):.3g} s and refreshing them "
        f"failed ({why})"
    )
    raise RefreshError(msg) from failure


async def ready_async(spec: MethodSpec, flight: Flight, holder: object) -> tuple[int, Any]:
    """The generation and provider to call, refreshed first if they are about to expire."""
    started_on = flight.current(holder)
    if spec.options.expires_at is None:
        return started_on
    window, remaining = _window(spec, started_on[1])
    if window is None or (window == ADVISORY and flight.busy_async()):
        return started_on
    generation, provider = started_on
    outcome = await flight.refresh_async(
        generation, provider, spec, spec.installer(holder), trigger=window
    )
    return _outcome(flight, holder, started_on, window, remaining, outcome)


def ready_sync(spec: MethodSpec, flight: Flight, holder: object) -> tuple[int, Any]:
    """The thread form of `ready_async`."""
    started_on = flight.current(holder)
    if spec.options.expires_at is None:
        return started_on
    window, remaining = _window(spec, started_on[1])
    if window is None or (window == ADVISORY and flight.busy_sync()):
        return started_on
    generation, provider = started_on
    outcome = flight.refresh_sync(
        generation, provider, spec, spec.installer(holder), trigger=window
    )
    return _outcome(flight, holder, started_on, window, remaining, outcome)
