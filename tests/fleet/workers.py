"""The worker processes of the multi-process tests (spawned: this module is their entry).

Each worker is one process of a fleet: it makes its own `SharedCredential` on the shared store,
takes part in the start-up race for the initial grant, then runs rounds of concurrent chats
through `refresh_on_401`, each round started by a barrier after the test expired the token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from examples.fleet import TokenEndpoint, fleet_provider
from refresh_middleware.shared import Credential, SharedCredential

from .helpers import store_of

KEY = "loopback/fleet-account"
BARRIER_SECONDS = 120.0
CHAT_TIMEOUT = 60.0
KEEP_ALIVE = 2.0
"""Seconds an idle connection is kept: well under the loopback server's 5 s."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one worker process does."""

    store: str  # "file", "postgres", or a kind of Redis: "redis", "cluster", "sentinel", "valkey"
    where: str  # a directory, a PostgreSQL DSN, or a Redis URL
    token_url: str
    base_url: str
    code: str
    library: str  # "trio" or "asyncio"
    tasks: int
    rounds: int
    pid_file: str  # each fetch of a refresh appends its process id here first
    prefix: str = "fleet:"  # Redis's prefix; PostgreSQL's table
    lease: float = 15.0


@dataclasses.dataclass(frozen=True)
class Report:
    """What a worker sends back: at start-up ("ready"), then once per round."""

    kind: str
    pid: int
    ok: int = 0
    failed: int = 0
    errors: str = ""


def run(plan: Plan, barrier: Any, results: Any) -> None:
    """The entry of a worker process."""
    if plan.library == "trio":
        trio.run(_main, plan, barrier, results)
    else:
        asyncio.run(_main(plan, barrier, results))


async def _main(plan: Plan, barrier: Any, results: Any) -> None:
    options = {} if plan.store == "file" else {"prefix": plan.prefix, "lease": plan.lease}
    store = store_of(plan.store, plan.where, **options)
    endpoint = TokenEndpoint(plan.token_url, plan.code)

    async def fetch(current: Credential | None) -> Credential:
        if current is not None:  # a refresh: say which process holds the lock
            with Path(plan.pid_file).open("a") as file:  # noqa: ASYNC230 - before the grant
                file.write(f"{os.getpid()}\n")
        return await endpoint.fetch(current)

    credential = SharedCredential(store, key=KEY, fetch=fetch)
    # Generous: under coverage on a loaded machine the in-process loopback server can take
    # longer than httpx's default 5 s, and a chat that timed out would count as failed.
    # Idle connections are dropped before the server's keep-alive (hypercorn's 5 s) drops them:
    # with both at 5 s, a worker idle about 5 s between rounds sent its chat on a connection
    # the server was closing (RemoteProtocolError, ReadError: a failed chat no store caused).
    limits = httpx.Limits(keepalive_expiry=KEEP_ALIVE)
    async with httpx.AsyncClient(timeout=CHAT_TIMEOUT, limits=limits) as http:
        await _wait(barrier)  # every process starts at once: the start-up race
        provider = await fleet_provider(credential, http, plan.base_url)
        results.put(Report("ready", os.getpid()))
        for _ in range(plan.rounds):
            await _wait(barrier)
            outcomes: list[str] = []
            await _gather([functools.partial(_chat, provider, outcomes)] * plan.tasks)
            counts = Counter(outcomes)
            ok = counts.pop("ok", 0)
            errors = ", ".join(f"{name} x{count}" for name, count in counts.items())
            results.put(Report("round", os.getpid(), ok, sum(counts.values()), errors))


async def _chat(provider: Any, outcomes: list[str]) -> None:
    try:
        await provider.chat("hello")
    except Exception as error:
        outcomes.append(type(error).__name__)
    else:
        outcomes.append("ok")


async def _wait(barrier: Any) -> None:
    wait = functools.partial(barrier.wait, BARRIER_SECONDS)
    if _on_trio():
        await trio.to_thread.run_sync(wait)
    else:
        await asyncio.to_thread(wait)


def _on_trio() -> bool:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


async def _gather(calls: list[Any]) -> None:
    if _on_trio():
        async with trio.open_nursery() as nursery:
            for call in calls:
                nursery.start_soon(call)
        return
    async with asyncio.TaskGroup() as group:
        for call in calls:
            group.create_task(call())
