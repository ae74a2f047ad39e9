"""A simulated hour of steady traffic on short-lived tokens, on trio's clock.

Used by test_proactive.py and by the figures in docs/howto/proactive.md:

    python -c "import trio, trio.testing, hour; print(trio.run(hour.simulate, 'proactive',
               clock=trio.testing.MockClock(autojump_threshold=0)))"   (from tests/)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import trio

from refresh_middleware import refresh_on_401
from refresh_middleware.events import Event, RefreshError, RefreshStarted

HOUR = 3600.0
TOKEN_TTL = 300.0  # five-minute tokens
WORKERS = 4  # callers, each making one call a second


class Expired(Exception):
    """The provider's answer to an expired token."""

    status_code = 401


@dataclasses.dataclass
class AuthServer:
    """Issues tokens living TOKEN_TTL seconds; `down` holds the times it refuses to."""

    down: tuple[float, float] | None = None
    issued: int = 0

    def issue(self) -> tuple[str, float]:
        now = trio.current_time()
        if self.down is not None and self.down[0] <= now < self.down[1]:
            raise OSError("auth server unavailable")
        self.issued += 1
        return f"token-{self.issued}", now + TOKEN_TTL


@dataclasses.dataclass
class Figures:
    """What one simulated hour came to."""

    mode: str
    calls: int = 0
    unauthorized: int = 0  # requests the provider rejected with 401
    refreshes: int = 0
    failed_calls: int = 0
    refresh_errors: int = 0  # of the failed calls, those that were RefreshError
    tokens_refreshed_twice: int = 0


class Provider:
    """A provider whose requests fail with 401 once its token has expired."""

    def __init__(self, token: tuple[str, float], figures: Figures) -> None:
        self.token, self.expires_at = token
        self.figures = figures

    async def chat(self, request: str) -> str:
        self.figures.calls += 1
        if trio.current_time() >= self.expires_at:
            self.figures.unauthorized += 1
            raise Expired
        await trio.sleep(0.2)  # the round trip
        return "ok"


async def simulate(mode: str, *, down: tuple[float, float] | None = None) -> Figures:
    """One hour of WORKERS callers on one wrapped provider, reactive or proactive."""
    auth = AuthServer(down=down)
    figures = Figures(mode)
    started: list[int] = []

    def on_event(event: Event) -> None:
        if isinstance(event, RefreshStarted):
            started.append(event.generation)

    async def rebuild(stale: Provider) -> Provider:
        figures.refreshes += 1
        await trio.lowlevel.checkpoint()  # a real refresh talks to an auth server
        return Provider(auth.issue(), figures)

    ahead: dict[str, Any] = {}
    if mode == "proactive":
        ahead = {"expires_at": lambda p: p.expires_at, "clock": trio.current_time}
    provider = refresh_on_401(
        Provider(auth.issue(), figures), refresh=rebuild, on_event=on_event, **ahead
    )
    end = trio.current_time() + HOUR

    async def worker(offset: float) -> None:
        await trio.sleep(offset)
        while trio.current_time() < end:
            try:
                await provider.chat("hello")
            except RefreshError:
                figures.failed_calls += 1
                figures.refresh_errors += 1
            except Exception:
                figures.failed_calls += 1
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        for index in range(WORKERS):
            nursery.start_soon(worker, index / WORKERS)
    figures.tokens_refreshed_twice = len(started) - len(set(started))
    return figures
