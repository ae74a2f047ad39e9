"""The worker processes of the httpx_auth() fleet test (spawned: this module is their entry).

Each worker is one process of a fleet: its own `SharedCredential` on the shared `FileStore`,
the ready `OAuth2RefreshGrant` as its fetch, and `AsyncOpenAI` sending through an httpx2
client whose `auth` is `httpx_auth()`: nothing of refresh_on_401. Each round starts at a
barrier after the test expired the token, and runs `tasks` chats at once.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections import Counter
from typing import Any

import httpx2
import openai
import trio

from refresh_middleware.shared import FileStore, OAuth2RefreshGrant, SharedCredential

from .workers import Report

KEY = "loopback/door-account"
BARRIER_SECONDS = 120.0
CHAT_TIMEOUT = 60.0
MESSAGES = [{"role": "user", "content": "hi"}]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one worker process does."""

    directory: str
    token_url: str
    openai_base_url: str
    tasks: int
    rounds: int


def run(plan: Plan, barrier: Any, results: Any) -> None:
    """The entry of a worker process."""
    trio.run(_main, plan, barrier, results)


async def _main(plan: Plan, barrier: Any, results: Any) -> None:
    credential = SharedCredential(
        FileStore(plan.directory),
        key=KEY,
        fetch=OAuth2RefreshGrant(plan.token_url, client_id="app"),
    )
    # Generous, as in workers.py: a loaded machine under coverage can be slow to answer.
    async with httpx2.AsyncClient(auth=credential.httpx_auth(), timeout=CHAT_TIMEOUT) as http:
        client = openai.AsyncOpenAI(
            api_key="-", base_url=plan.openai_base_url, http_client=http, max_retries=0
        )
        results.put(Report("ready", os.getpid()))
        for _ in range(plan.rounds):
            await trio.to_thread.run_sync(functools.partial(barrier.wait, BARRIER_SECONDS))
            outcomes: list[str] = []
            async with trio.open_nursery() as nursery:
                for _ in range(plan.tasks):
                    nursery.start_soon(_chat, client, outcomes)
            counts = Counter(outcomes)
            ok = counts.pop("ok", 0)
            errors = ", ".join(f"{name} x{count}" for name, count in counts.items())
            results.put(Report("round", os.getpid(), ok, sum(counts.values()), errors))


async def _chat(client: openai.AsyncOpenAI, outcomes: list[str]) -> None:
    try:
        reply = await client.chat.completions.create(model="m", messages=MESSAGES)
    except Exception as error:  # counted, and named in the report
        outcomes.append(type(error).__name__)
    else:
        outcomes.append("ok" if reply.choices[0].message.content else "empty")
