"""Real processes on one FileStore, each sending through `httpx_auth()` only (issue 20).

4 spawned processes x 10 tasks, AsyncOpenAI over an httpx2 client whose `auth` is the shared
credential's, against the loopback identity provider with rotating refresh tokens: each expiry
makes one refresh grant for the whole fleet, no refresh token is used twice, every call is
answered. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time

import httpx

from refresh_middleware.shared import Credential, FileStore, OAuth2RefreshGrant, SharedCredential
from refresh_middleware.testing import run_loopback_server_in_thread

from . import door_workers
from .helpers import collect, expiry_rounds

PROCESSES = 4
TASKS = 10
EXPIRIES = 2


def sign_in(server) -> Credential:
    """The tokens of a person's sign-in: an authorization code exchanged once."""
    code = server.oauth.authorization_code()
    tokens = httpx.post(
        server.token_url, data={"grant_type": "authorization_code", "code": code}
    ).json()
    return Credential(
        tokens["access_token"], tokens["refresh_token"], time.time() + tokens["expires_in"]
    )


@contextlib.contextmanager
def door_fleet(plan: door_workers.Plan):
    """Start PROCESSES workers on `plan`; stop them after the block."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES + 1)
    results = context.Queue()
    started = [
        context.Process(target=door_workers.run, args=(plan, barrier, results))
        for _ in range(PROCESSES)
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


def test_four_processes_through_httpx_auth_make_one_grant_per_expiry(tmp_path):
    """4 processes x 10 tasks via httpx_auth() on a FileStore, 2 expiries: 1 grant each, 0 reuse."""
    directory = str(tmp_path / "credentials")
    with run_loopback_server_in_thread() as server:
        seeding = SharedCredential(
            FileStore(directory),
            key=door_workers.KEY,
            fetch=OAuth2RefreshGrant(server.token_url, client_id="app"),
        )
        seeding.seed_sync(sign_in(server))
        plan = door_workers.Plan(
            directory, server.token_url, server.openai_base_url, TASKS, EXPIRIES
        )
        with door_fleet(plan) as (barrier, results):
            collect(results, PROCESSES)
            rounds = expiry_rounds(server, barrier, results, PROCESSES, EXPIRIES)
        reuse = server.oauth.stats.reuse_detections
    print(  # noqa: T201 - the figures of the issue, shown with -s
        f"\nhttpx_auth() fleet: per expiry (grants, ok calls, failed calls, seconds, errors): "
        f"{rounds}; reuse detections {reuse}"
    )
    assert ([(1, PROCESSES * TASKS, 0)] * EXPIRIES, 0) == (
        [each[:3] for each in rounds],
        reuse,
    )
