"""Do I need this? Four processes on one rotating refresh token: per process, then shared.

Run it with ``python bench/rotating_fleet.py`` from a checkout, in an environment that has
the ``tests`` group (``.nox/tests-3-11/bin/python bench/rotating_fleet.py`` after a test run).
It starts the loopback LLM server of `refresh_middleware.testing`, whose identity provider
rotates refresh tokens and revokes the whole family when one is used twice, as real ones do;
signs in once; then runs the same fleet twice, each time 4 spawned processes x 10 concurrent
chats, the access token expired before each of 2 rounds:

- **per process**: an httpx2 `Auth` that does what a token callable, authlib's or httpx-auth's
  refreshing clients do inside one process, and a little more: one refresh at a time per
  process (single flight), the refresh token re-read from the shared credentials file just
  before it is sent, the new tokens written back with ``os.replace``, the request resent once.
  There is no lock between the processes.
- **SharedCredential**: `SharedCredential(FileStore(...)).httpx_auth()` with the ready
  `OAuth2RefreshGrant`.

Both send through httpx2, to the same server, with the same rounds. The figures are what the
identity provider counted (grants, reuse detections, ``invalid_grant`` answers) and what the
chats got (answered, failed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import trio

from refresh_middleware.shared import (
    Credential,
    FileStore,
    OAuth2RefreshGrant,
    SharedCredential,
)
from refresh_middleware.testing import run_loopback_server_in_thread

PROCESSES = 4
TASKS = 10
ROUNDS = 2
KEY = "bench/rotating-account"
WAIT = 120.0
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one worker process does."""

    mode: str  # "per process" or "SharedCredential"
    where: str  # the credentials file (per process) or the FileStore's directory
    token_url: str
    chat_url: str


class PerProcessAuth(httpx2.Auth):
    """A careful per-process refresher: single flight in the process, the file re-read first.

    What it cannot do is the one thing a rotating refresh token needs across processes: stop
    the other processes from sending the same refresh token at the same moment.
    """

    def __init__(self, path: Path, token_url: str, http: httpx2.AsyncClient) -> None:
        self.path = path
        self.token_url = token_url
        self.http = http
        self.access_token = json.loads(path.read_text())["access_token"]
        self.generation = 0  # this process's own count of refreshes
        self.lock = trio.Lock()

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        used = self.generation
        request.headers["Authorization"] = f"Bearer {self.access_token}"
        response = yield request
        if response.status_code != 401:
            return
        await response.aread()
        async with self.lock:
            if self.generation == used:  # nobody in this process has refreshed yet
                await self._refresh()
        request.headers["Authorization"] = f"Bearer {self.access_token}"
        yield request

    async def _refresh(self) -> None:
        stored = json.loads(self.path.read_text())  # the newest refresh token on disk
        answer = await self.http.post(
            self.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": stored["refresh_token"],
                "client_id": "app",
            },
        )
        self.generation += 1
        if answer.status_code != 200:
            return  # invalid_grant: nothing left to send but the old token
        tokens = answer.json()
        self.access_token = tokens["access_token"]
        fresh = {"access_token": self.access_token, "refresh_token": tokens["refresh_token"]}
        staging = self.path.with_suffix(f".{os.getpid()}")
        staging.write_text(json.dumps(fresh))
        staging.replace(self.path)  # whichever replace lands last wins


def worker(plan: Plan, barrier: Any, results: Any) -> None:
    """The entry of a worker process."""
    trio.run(_worker, plan, barrier, results)


async def _worker(plan: Plan, barrier: Any, results: Any) -> None:
    async with contextlib.AsyncExitStack() as stack:
        tokens = await stack.enter_async_context(httpx2.AsyncClient())
        if plan.mode == "per process":
            auth: httpx2.Auth = PerProcessAuth(Path(plan.where), plan.token_url, tokens)
        else:
            credential = SharedCredential(
                FileStore(plan.where),
                key=KEY,
                fetch=OAuth2RefreshGrant(plan.token_url, client_id="app"),
            )
            auth = credential.httpx_auth()
        http = await stack.enter_async_context(httpx2.AsyncClient(auth=auth, timeout=60))
        results.put("ready")
        for _ in range(ROUNDS):
            await trio.to_thread.run_sync(functools.partial(barrier.wait, WAIT))
            statuses: list[int] = []

            async def chat(statuses: list[int] = statuses) -> None:
                statuses.append((await http.post(plan.chat_url, json=BODY)).status_code)

            async with trio.open_nursery() as nursery:
                for _ in range(TASKS):
                    nursery.start_soon(chat)
            results.put(statuses)


@dataclasses.dataclass
class Round:
    """What one expiry cost: at the identity provider, and for the chats."""

    grants: int
    reuse: int
    invalid_grant: int
    answered: int
    failed: int


def sign_in(server: Any) -> dict[str, Any]:
    """The tokens of a person's sign-in: an authorization code exchanged once."""
    code = server.oauth.authorization_code()
    with httpx2.Client() as http:
        answer = http.post(
            server.token_url, data={"grant_type": "authorization_code", "code": code}
        )
    return dict(answer.json())


@contextlib.contextmanager
def workers(plan: Plan) -> Iterator[tuple[Any, Any]]:
    """PROCESSES spawned workers on `plan`, stopped after the block."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES + 1)
    results = context.Queue()
    started = [
        context.Process(target=worker, args=(plan, barrier, results)) for _ in range(PROCESSES)
    ]
    for process in started:
        process.start()
    try:
        yield barrier, results
    finally:
        barrier.abort()
        for process in started:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
        results.join_thread()


def run_mode(mode: str, directory: Path) -> list[Round]:
    """The fleet in `mode` on a fresh server and a fresh sign-in: one Round per expiry."""
    with run_loopback_server_in_thread() as server:
        tokens = sign_in(server)
        if mode == "per process":
            where = directory / "credentials.json"
            where.write_text(json.dumps(tokens))
        else:
            where = directory / "store"
            seeding = SharedCredential(
                FileStore(where),
                key=KEY,
                fetch=OAuth2RefreshGrant(server.token_url, client_id="app"),
            )
            seeding.seed_sync(
                Credential(
                    tokens["access_token"],
                    tokens["refresh_token"],
                    time.time() + tokens["expires_in"],
                )
            )
        plan = Plan(
            mode, str(where), server.token_url, f"{server.openai_base_url}/chat/completions"
        )
        rounds = []
        with workers(plan) as (barrier, results):
            for _ in range(PROCESSES):
                results.get(timeout=WAIT)
            for _ in range(ROUNDS):
                before = server.oauth.stats
                server.expire_all()
                barrier.wait(WAIT)
                statuses = [code for _ in range(PROCESSES) for code in results.get(timeout=WAIT)]
                after = server.oauth.stats
                answered = statuses.count(200)
                rounds.append(
                    Round(
                        after.refresh_grants - before.refresh_grants,
                        after.reuse_detections - before.reuse_detections,
                        after.invalid_grants - before.invalid_grants,
                        answered,
                        len(statuses) - answered,
                    )
                )
    return rounds


def main() -> int:
    """Both modes, then the table; exit 1 if the shared fleet did not keep one grant per expiry."""
    print(
        f"{PROCESSES} processes x {TASKS} concurrent chats, {ROUNDS} expiries, "
        "rotating refresh tokens (reuse revokes the family)\n"
    )
    header = "mode               expiry  grants  reuse  invalid_grant  answered  failed"
    lines = [header, "-" * len(header)]
    shared_ok = True
    with tempfile.TemporaryDirectory() as temporary:
        for mode in ("per process", "SharedCredential"):
            directory = Path(temporary) / mode.replace(" ", "-")
            directory.mkdir()
            for number, each in enumerate(run_mode(mode, directory), 1):
                lines.append(
                    f"{mode:<18} {number:>6}  {each.grants:>6}  {each.reuse:>5}  "
                    f"{each.invalid_grant:>13}  {each.answered:>8}  {each.failed:>6}"
                )
                if mode == "SharedCredential":
                    shared_ok &= dataclasses.astuple(each) == (1, 0, 0, PROCESSES * TASKS, 0)
    print("\n".join(lines))
    return 0 if shared_ok else 1


if __name__ == "__main__":
    sys.exit(main())
