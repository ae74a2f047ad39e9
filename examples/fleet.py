"""Worker processes on one rotating OAuth credential: refreshing alone, then as a fleet.

Run it with ``python examples/fleet.py`` (``python3 -m nox -s demo-fleet``). It starts the
loopback LLM server of `refresh_middleware.testing`, whose identity provider rotates refresh
tokens and revokes the whole family when one is used twice, as real ones do. Worker processes
(trio and asyncio, several chats at a time each) chat through `refresh_on_401` while the demo
expires the access token every few seconds. It runs twice, and once more per store given:

- **per process**: every worker refreshes on its own. After the first expiry they all send
  the same refresh token; the second use is reuse, the family is revoked, and every worker
  is logged out: chats fail from then on.
- **FileStore** (and **RedisStore**, **PostgresStore**): the workers share a
  `SharedCredential`. One of them refreshes per expiry, the others adopt what it stored: no
  reuse, no failed chat.

Live progress every second, then a table side by side. Loopback only: ``--redis local`` starts
a throwaway ``redis-server`` on 127.0.0.1, ``--redis cluster`` a 3-node Redis Cluster on
loopback ports, ``--redis URL`` uses yours (repeat ``--redis`` for several);
``--postgres local`` starts a throwaway PostgreSQL (as the ``postgres`` user when run as root),
``--postgres DSN`` uses yours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import multiprocessing
import queue
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx
import trio

if __package__ in {None, ""}:  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refresh_middleware import refresh_on_401
from refresh_middleware.shared import (
    Credential,
    FileStore,
    PostgresStore,
    RedisStore,
    SharedCredential,
)
from refresh_middleware.testing import run_loopback_server_in_thread

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from multiprocessing.synchronize import Event as EventType

    from refresh_middleware.testing import LoopbackLLMServer

MODEL = "loopback-1"
GRANT_TIMEOUT = 9.0
"""Seconds a token request may take: just under `SharedCredential`'s default fetch_timeout."""
KEY = "loopback/demo-account"

# --------------------------------------------------------------------------------------------------
# the client side: what a host writes (fetch, provider, rebuild)


class TokenEndpoint:
    """An OAuth token endpoint with rotating refresh tokens: the `fetch` of a credential.

    `fetch(None)` exchanges the authorization code of a sign-in (the initial grant);
    `fetch(current)` sends `current.refresh_token`, which the endpoint accepts once.
    """

    def __init__(self, token_url: str, code: str) -> None:
        self.token_url = token_url
        self.code = code

    def _form(self, current: Credential | None) -> dict[str, str]:
        if current is None or current.refresh_token is None:
            return {"grant_type": "authorization_code", "code": self.code}
        return {"grant_type": "refresh_token", "refresh_token": current.refresh_token}

    async def fetch(self, current: Credential | None) -> Credential:
        """New tokens from the endpoint (raises `httpx.HTTPStatusError` on a refusal)."""
        # Below the credential's fetch_timeout (10 s): a grant the provider answers after the
        # client gave up would be a rotated refresh token lost, so give up in the client only
        # when the fetch would be cut short anyway.
        async with httpx.AsyncClient(timeout=GRANT_TIMEOUT) as http:
            response = await http.post(self.token_url, data=self._form(current))
        return _credential(response)

    def fetch_sync(self, current: Credential | None) -> Credential:
        """`fetch` for synchronous code."""
        return _credential(httpx.post(self.token_url, data=self._form(current)))


def _credential(response: httpx.Response) -> Credential:
    response.raise_for_status()  # a 400 with "invalid_grant" in its body when refused
    body = response.json()
    # A provider that does not rotate sends no refresh_token (RFC 6749, 6): the shared
    # credential then keeps the one it sent.
    return Credential(
        body["access_token"], body.get("refresh_token"), time.time() + float(body["expires_in"])
    )


class ChatProvider:
    """Chat completions over httpx with the access token of `credential`."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, credential: Credential) -> None:
        self.http = http
        self.base_url = base_url
        self.credential = credential

    async def chat(self, prompt: str) -> str:
        """One completion's text; a 401 raises `httpx.HTTPStatusError`."""
        response = await self.http.post(
            f"{self.base_url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": prompt}]},
            headers={"authorization": f"Bearer {self.credential.access_token}"},
        )
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])


async def fleet_provider(
    credential: SharedCredential, http: httpx.AsyncClient, base_url: str
) -> ChatProvider:
    """A provider on the fleet's credential: on a 401, `renew` (one refresh for the fleet)."""

    async def rebuild(stale: ChatProvider) -> ChatProvider:
        return ChatProvider(stale.http, stale.base_url, await credential.renew(stale.credential))

    provider = ChatProvider(http, base_url, await credential.current())
    return refresh_on_401(provider, refresh=rebuild)


def lone_provider(
    endpoint: TokenEndpoint, http: httpx.AsyncClient, base_url: str, credential: Credential
) -> ChatProvider:
    """A provider that refreshes on its own: what every process does without a store."""

    async def rebuild(stale: ChatProvider) -> ChatProvider:
        return ChatProvider(stale.http, stale.base_url, await endpoint.fetch(stale.credential))

    return refresh_on_401(ChatProvider(http, base_url, credential), refresh=rebuild)


# --------------------------------------------------------------------------------------------------
# the worker processes


@dataclasses.dataclass(frozen=True)
class WorkerPlan:
    """What a worker process does; picklable, for `multiprocessing`'s spawn."""

    mode: str  # "per process", or a key of STORES
    where: str  # the store's directory, URL or DSN; unused per process
    token_url: str
    base_url: str
    code: str
    library: str  # "trio" or "asyncio"
    tasks: int
    initial: dict[str, Any] | None  # per process: the credential every worker starts with


STORES: dict[str, Callable[[str], FileStore | RedisStore | PostgresStore]] = {
    "FileStore": FileStore,
    "RedisStore": RedisStore,
    "RedisStore cluster": functools.partial(RedisStore, cluster=True),
    "PostgresStore": PostgresStore,
}
"""The store of each shared mode, made from its place: a directory, a URL, a DSN."""


def credential_of(plan: WorkerPlan) -> SharedCredential:
    """The worker's shared credential on the store the plan names."""
    store = STORES[plan.mode](plan.where)
    endpoint = TokenEndpoint(plan.token_url, plan.code)
    return SharedCredential(store, key=KEY, fetch=endpoint.fetch)


async def _chats(plan: WorkerPlan, report: Callable[[int, int], None], stop: EventType) -> None:
    async with httpx.AsyncClient() as http:
        if plan.initial is None:
            provider = await fleet_provider(credential_of(plan), http, plan.base_url)
        else:
            endpoint = TokenEndpoint(plan.token_url, plan.code)
            provider = lone_provider(endpoint, http, plan.base_url, Credential(**plan.initial))

        async def chat_until_stopped() -> None:
            while not stop.is_set():
                try:
                    await provider.chat("hello")
                except Exception:  # noqa: BLE001 - the demo counts failures
                    report(0, 1)
                    await _sleep(0.05)  # a logged-out worker does not spin
                else:
                    report(1, 0)

        await _gather([chat_until_stopped] * plan.tasks)


async def _sleep(seconds: float) -> None:
    if _on_trio():
        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


def _on_trio() -> bool:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


async def _gather(runs: list[Callable[[], Awaitable[None]]]) -> None:
    if _on_trio():
        async with trio.open_nursery() as nursery:
            for run in runs:
                nursery.start_soon(run)
        return
    async with asyncio.TaskGroup() as group:
        for run in runs:
            group.create_task(run())  # type: ignore[arg-type]


def worker(plan: WorkerPlan, reports: multiprocessing.Queue[Any], stop: EventType) -> None:
    """A worker process: chat until `stop`, reporting (ok, failed) counts every 0.2 s."""
    counts = [0, 0]
    last = [time.monotonic()]

    def report(ok: int, failed: int) -> None:
        counts[0] += ok
        counts[1] += failed
        if time.monotonic() - last[0] >= 0.2:
            reports.put((counts[0], counts[1]))
            counts[:] = [0, 0]
            last[0] = time.monotonic()

    if plan.library == "trio":
        trio.run(_chats, plan, report, stop)
    else:
        asyncio.run(_chats(plan, report, stop))
    reports.put((counts[0], counts[1]))


# --------------------------------------------------------------------------------------------------
# one run, and the demo


@dataclasses.dataclass
class Outcome:
    """What one mode did, counted by the workers and by the identity provider."""

    mode: str
    seconds: float = 0.0
    expiries: int = 0
    chats: int = 0
    failed: int = 0
    bootstrap_grants: int = 0
    refresh_grants: int = 0
    reuse_detections: int = 0
    families_revoked: int = 0
    unauthorized: int = 0

    @property
    def ok(self) -> bool:
        """One grant per expiry, no reuse, no failed chat."""
        return (
            self.chats > 0
            and self.failed == self.reuse_detections == 0
            and self.refresh_grants == self.expiries
        )


def run_mode(
    mode: str,
    where: str,
    *,
    workers: int,
    tasks: int,
    seconds: float,
    every: float,
    progress: Callable[[str], None],
) -> Outcome:
    """Run `workers` processes in `mode` for `seconds`, expiring the token every `every` s."""
    outcome = Outcome(mode)
    context = multiprocessing.get_context("spawn")
    reports: multiprocessing.Queue[Any] = context.Queue()
    stop = context.Event()
    with run_loopback_server_in_thread(token_ttl=3600.0) as server:
        code = server.oauth.authorization_code()
        initial = None
        if mode == "per process":  # deployed with one credential, each process on its own
            initial = dataclasses.asdict(TokenEndpoint(server.token_url, code).fetch_sync(None))
            initial.pop("generation")
        plans = [
            WorkerPlan(
                mode,
                where,
                server.token_url,
                server.base_url,
                code,
                "trio" if index % 2 == 0 else "asyncio",
                tasks,
                initial,
            )
            for index in range(workers)
        ]
        processes = [context.Process(target=worker, args=(plan, reports, stop)) for plan in plans]
        for process in processes:
            process.start()
        try:
            _drive(server, outcome, reports, seconds=seconds, every=every, progress=progress)
            if (
                mode != "per process"
            ):  # a logged-out fleet makes no more grants: nothing to wait for
                _settle(server, outcome, reports)
        finally:
            stop.set()
            for process in processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
        _drain(reports, outcome)
        _count(server, outcome)
    return outcome


def _drive(
    server: LoopbackLLMServer,
    outcome: Outcome,
    reports: multiprocessing.Queue[Any],
    *,
    seconds: float,
    every: float,
    progress: Callable[[str], None],
) -> None:
    """Wait for the first chat, then expire the token every `every` s and report each second."""
    while outcome.chats == 0:  # the workers are up and chatting
        ok, failed = reports.get(timeout=60)
        outcome.chats += ok
        outcome.failed += failed
    started = time.monotonic()
    next_expiry, next_report = started + every, started + 1
    while (now := time.monotonic()) < started + seconds:
        if now >= next_expiry:
            server.expire_all()
            outcome.expiries += 1
            next_expiry += every
        if now >= next_report:
            _count(server, outcome)
            outcome.seconds = now - started
            progress(_line(outcome))
            next_report += 1
        _drain(reports, outcome, wait=0.05)
    outcome.seconds = time.monotonic() - started


def _settle(
    server: LoopbackLLMServer, outcome: Outcome, reports: multiprocessing.Queue[Any]
) -> None:
    """Let the fleet renew after the last expiry before counting: an expiry just before the end
    is not a missing grant. Bounded by two grant timeouts."""
    deadline = time.monotonic() + 2 * GRANT_TIMEOUT
    while server.oauth.stats.refresh_grants < outcome.expiries and time.monotonic() < deadline:
        _drain(reports, outcome, wait=0.05)


def _drain(reports: multiprocessing.Queue[Any], outcome: Outcome, wait: float = 0.5) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            ok, failed = reports.get(timeout=wait)
            outcome.chats += ok
            outcome.failed += failed


def _count(server: LoopbackLLMServer, outcome: Outcome) -> None:
    oauth = server.oauth.stats
    outcome.bootstrap_grants = oauth.code_grants
    outcome.refresh_grants = oauth.refresh_grants
    outcome.reuse_detections = oauth.reuse_detections
    outcome.families_revoked = oauth.families_revoked
    outcome.unauthorized = server.stats.unauthorized


def _line(outcome: Outcome) -> str:
    return (
        f"  {outcome.mode:<18} {outcome.seconds:4.1f}s  chats {outcome.chats:6d}  "
        f"failed {outcome.failed:5d}  expiries {outcome.expiries}  "
        f"grants {outcome.refresh_grants}  reuse {outcome.reuse_detections}  "
        f"revoked {outcome.families_revoked}"
    )


ROWS: tuple[tuple[str, str, str], ...] = (
    ("token expiries", "expiries", ""),
    ("chats completed", "chats", ""),
    ("failed chats", "failed", "0 for a fleet"),
    ("sign-in grants", "bootstrap_grants", "1: one process signs in"),
    ("refresh grants", "refresh_grants", "1 per expiry for a fleet"),
    ("reuse detections", "reuse_detections", "0 for a fleet"),
    ("families revoked", "families_revoked", "everyone logged out"),
    ("401s served", "unauthorized", ""),
)


def table(outcomes: list[Outcome]) -> str:
    """The outcomes side by side, one column each, aligned for a terminal."""
    rows = [["", *(outcome.mode for outcome in outcomes), "note"]]
    rows += [
        [label, *(str(getattr(outcome, field)) for outcome in outcomes), note]
        for label, field, note in ROWS
    ]
    verdicts = ["as expected" if _expected(outcome) else "NOT as expected" for outcome in outcomes]
    rows.append(["verdict", *verdicts, ""])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    last = len(widths) - 1

    def cell(column: int, text: str) -> str:
        # Labels and notes read left to right; counts line up on their last digit.
        if column in {0, last}:
            return text.ljust(widths[column])
        return text.rjust(widths[column])

    lines = [
        "  ".join(cell(column, text) for column, text in enumerate(row)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def explanation(outcomes: list[Outcome]) -> str:
    """One line on what the per-process run's failures are, or "" without that run."""
    for outcome in outcomes:
        if outcome.mode == "per process":
            return (
                f"why per process fails: the workers refreshed alone with one refresh token, "
                f"its reuse got the family revoked ({outcome.families_revoked}x), and every "
                f"worker was logged out ({outcome.failed} failed chats)."
            )
    return ""


def _expected(outcome: Outcome) -> bool:
    if outcome.mode == "per process":  # the failure this library prevents, shown
        return outcome.reuse_detections > 0 and outcome.failed > 0
    return outcome.ok


def _places(
    stack: contextlib.ExitStack, folder: str, redis: list[str], postgres: str | None
) -> list[tuple[str, str]]:
    """The (mode, place) of every run: per process, FileStore, then each store asked for,
    starting the local servers asked for on `stack`."""
    modes = [("per process", ""), ("FileStore", str(Path(folder, "credentials")))]
    for url in redis:
        if url == "local":
            from examples.redis_server import redis_server  # noqa: PLC0415 - only when asked

            modes.append(("RedisStore", stack.enter_context(redis_server()).url))
        elif url == "cluster":
            from examples.redis_server import redis_cluster  # noqa: PLC0415 - only when asked

            modes.append(("RedisStore cluster", stack.enter_context(redis_cluster()).url))
        else:
            modes.append(("RedisStore", url))
    if postgres == "local":
        from examples.postgres_server import postgres_server  # noqa: PLC0415 - only when asked

        modes.append(("PostgresStore", stack.enter_context(postgres_server()).dsn))
    elif postgres is not None:
        modes.append(("PostgresStore", postgres))
    return modes


def main(
    *,
    workers: int = 4,
    tasks: int = 8,
    seconds: float = 8.0,
    every: float = 2.0,
    redis: list[str] | str | None = None,
    postgres: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Run every mode and print the table; 0 when the fleet modes did as promised."""
    out = sys.stdout if out is None else out

    def progress(line: str) -> None:
        print(line, file=out, flush=True)

    print(
        f"{workers} worker processes x {tasks} chats, {seconds:g} s per mode; "
        f"the access token expires every {every:g} s",
        file=out,
    )
    redis = [redis] if isinstance(redis, str) else list(redis or [])
    outcomes = []
    with (
        tempfile.TemporaryDirectory(prefix="fleet-demo-") as folder,
        contextlib.ExitStack() as stack,
    ):
        for mode, where in _places(stack, folder, redis, postgres):
            print(f"{mode}:", file=out, flush=True)
            outcomes.append(
                run_mode(
                    mode,
                    where,
                    workers=workers,
                    tasks=tasks,
                    seconds=seconds,
                    every=every,
                    progress=progress,
                )
            )
    print("\n" + table(outcomes), file=out)
    if note := explanation(outcomes):
        print("\n" + note, file=out)
    return 0 if all(_expected(outcome) for outcome in outcomes) else 1


def cli(argv: list[str] | None = None) -> int:
    """``python examples/fleet.py [--workers N] [--tasks N] [--seconds S] [--redis URL]
    [--postgres DSN]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=4, help="worker processes (4)")
    parser.add_argument("--tasks", type=int, default=8, help="chats at a time per worker (8)")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long each mode runs (8)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between expiries (2)")
    parser.add_argument(
        "--redis",
        action="append",
        default=[],
        help="a RedisStore run on this Redis URL; 'local' starts a redis-server, 'cluster' a "
        "3-node Redis Cluster (repeat for several runs)",
    )
    parser.add_argument(
        "--postgres",
        default=None,
        help="a PostgresStore run on this DSN; 'local' starts a PostgreSQL",
    )
    args = parser.parse_args(argv)
    return main(
        workers=args.workers,
        tasks=args.tasks,
        seconds=args.seconds,
        every=args.every,
        redis=args.redis,
        postgres=args.postgres,
    )


if __name__ == "__main__":
    sys.exit(cli())
