"""The share the wrapper adds to the real openai SDK's client CPU, per streamed chunk and per call.

Two measurements, kept apart so the noise of a small shared machine stays out of the ratio:

1. The SDK's own cost: `openai.AsyncOpenAI` under trio streams chat completions of many chunks
   and makes plain calls over loopback HTTP to the test kit's server, which runs in another
   process so its CPU is not counted. The client process's CPU (`time.process_time`) per chunk
   and per call, best of several rounds.
2. The wrapper's cost: the very `ChatCompletionChunk` and `ChatCompletion` objects the SDK
   returned, replayed without I/O, bare, through `refresh_on_401`, and through the least any
   gate can add (one forwarding layer); nanoseconds per chunk and per call, best of interleaved
   rounds.

The share is what the wrapper adds over bare, divided by the SDK's own cost.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import openai
import trio
from doubles import refresh_never
from measure import Config, Table, added_ns, best_of, ns, quiet, timed_async, us, verdict

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import CHUNKS_HEADER, run_loopback_server_in_thread

TARGET_SHARE = {"streamed chunk": 0.005, "call": 0.001}
MODEL = "loopback-1"
MESSAGES = ({"role": "user", "content": "Say something long."},)
SERVER_START_SECONDS = 60


# --------------------------------------------------------------------------------------------------
# the SDK's own cost


def serve(connection: Connection) -> None:
    """The server process: run the loopback server until the benchmark says stop."""
    with run_loopback_server_in_thread() as server:
        connection.send((server.openai_base_url, server.issue_token()))
        connection.recv()


class Endpoint(NamedTuple):
    base_url: str
    token: str


@contextmanager
def server_process() -> Iterator[Endpoint]:
    """The loopback server in a process of its own, so its CPU is not the client's."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=serve, args=(theirs,), name="loopback-llm-server")
    process.start()
    theirs.close()  # only the child holds it now: if the child dies, `recv` sees the end
    try:
        if not ours.poll(SERVER_START_SECONDS):
            raise RuntimeError("the loopback server process did not start in time")
        try:
            endpoint = Endpoint(*ours.recv())
        except EOFError as error:
            raise RuntimeError("the loopback server process failed to start") from error
        yield endpoint
        ours.send("stop")
        process.join(SERVER_START_SECONDS)
    finally:
        if process.is_alive():
            process.terminate()
            process.join()


@dataclass
class Recording:
    """What the SDK returned: the chunks of one stream and one completion."""

    chunks: list[Any]
    completion: Any


class SdkCost(NamedTuple):
    """The client process's CPU in nanoseconds, per streamed chunk and per call."""

    per_chunk: float
    per_call: float


async def stream_once(client: openai.AsyncOpenAI, chunks: int) -> list[Any]:
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={CHUNKS_HEADER: str(chunks)},
    )
    async with stream:
        return [chunk async for chunk in stream]


async def call_once(client: openai.AsyncOpenAI, chunks: int) -> Any:
    return await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, extra_headers={CHUNKS_HEADER: str(chunks)}
    )


async def sdk_cost(endpoint: Endpoint, config: Config) -> tuple[SdkCost, Recording]:
    """Best-of-rounds client CPU per chunk and per call, and the objects the SDK returned."""
    client = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.token, max_retries=0)
    async with client:
        recording = Recording(
            await stream_once(client, config.sdk_chunks), await call_once(client, 1)
        )
        best = SdkCost(float("inf"), float("inf"))
        for _ in range(config.sdk_rounds):
            with quiet():
                start = time.process_time_ns()
                received = 0
                for _ in range(config.sdk_streams):
                    recording.chunks = await stream_once(client, config.sdk_chunks)
                    received += len(recording.chunks)
                per_chunk = (time.process_time_ns() - start) / received
                start = time.process_time_ns()
                for _ in range(config.sdk_calls):
                    recording.completion = await call_once(client, 1)
                per_call = (time.process_time_ns() - start) / config.sdk_calls
            best = SdkCost(min(best.per_chunk, per_chunk), min(best.per_call, per_call))
    return best, recording


# --------------------------------------------------------------------------------------------------
# the wrapper's cost, replayed


class ReplayProvider:
    """A provider that answers with what the SDK returned, without I/O."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    async def chat_stream(self) -> AsyncIterator[Any]:
        for chunk in self.recording.chunks:
            yield chunk

    async def chat(self) -> Any:
        return self.recording.completion


@refresh_on_401(refresh=refresh_never)
class DecoratedReplayProvider(ReplayProvider):
    pass


class SdkShapedReplayProvider(ReplayProvider):
    """The SDKs' shape: `create` is a plain method that returns a coroutine, not an `async def`."""

    def chat(self) -> Any:  # type: ignore[override]
        return ReplayProvider.chat(self)


async def forward(inner: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """The least any gate can add to a stream: one more generator layer."""
    async for item in inner:
        yield item


async def forward_call(call: Callable[[], Awaitable[Any]]) -> Any:
    """The least any wrapper can add to a call: one more coroutine that catches and retries."""
    try:
        return await call()
    except openai.AuthenticationError:
        return await call()


class Subject(NamedTuple):
    """One way of serving the replay: how to open a stream, and how to make a call."""

    name: str
    role: str  # "bare", "floor" or "ours"; ours is held to the target
    stream: Callable[[], Awaitable[AsyncIterable[Any]]]
    call: Callable[[], Awaitable[Any]]


def provider_subject(name: str, role: str, provider: Any) -> Subject:
    async def stream() -> AsyncIterable[Any]:
        return provider.chat_stream()

    return Subject(name, role, stream, provider.chat)


def floor_subject(provider: ReplayProvider) -> Subject:
    async def stream() -> AsyncIterable[Any]:
        return forward(provider.chat_stream())

    async def call() -> Any:
        return await forward_call(provider.chat)

    return Subject("floor: one forwarding layer", "floor", stream, call)


def subjects(recording: Recording) -> list[Subject]:
    """Bare first: every other figure is read against it."""
    bare = ReplayProvider(recording)
    instance = refresh_on_401(ReplayProvider(recording), refresh=refresh_never)
    return [
        provider_subject("bare: the provider's generator and coroutine", "bare", bare),
        floor_subject(bare),
        provider_subject("refresh_on_401, instance proxy", "ours", instance),
        provider_subject(
            "refresh_on_401, class decoration", "ours", DecoratedReplayProvider(recording)
        ),
        provider_subject(
            "refresh_on_401, instance proxy, the SDK's shape (a plain method)",
            "ours",
            refresh_on_401(SdkShapedReplayProvider(recording), refresh=refresh_never),
        ),
    ]


def per_chunk(subject: Subject, streams: int, chunks: int) -> Callable[[], float]:
    async def consume() -> None:
        for _ in range(streams):
            async for _chunk in await subject.stream():
                pass

    return timed_async(consume, streams * chunks)


def per_call(subject: Subject, calls: int) -> Callable[[], float]:
    async def consume() -> None:
        for _ in range(calls):
            await subject.call()

    return timed_async(consume, calls)


# --------------------------------------------------------------------------------------------------
# the section


def share_table(
    unit: str, cost_ns: float, replayed: dict[str, float], measured: list[Subject]
) -> Table:
    table = Table(
        f"Per {unit}: the wrapper's share of the openai SDK's own client CPU ({us(cost_ns)} "
        f"per {unit})",
        (
            "Replay of the SDK's objects",
            f"per {unit}",
            "added over bare",
            "share",
            "target",
            "verdict",
        ),
    )
    bare = replayed[measured[0].name]
    for subject in measured:
        added = replayed[subject.name] - bare
        share = added / cost_ns
        judged, target = subject.role == "ours", TARGET_SHARE[unit]
        table.add(
            subject.name,
            ns(replayed[subject.name]),
            "" if subject.role == "bare" else added_ns(added),
            "" if subject.role == "bare" else f"{share:.2%}",
            f"≤ {target:.1%}" if judged else "",
            verdict(share <= target) if judged else "",
        )
    return table


def run(config: Config) -> list[Table]:
    """Measure the SDK's own CPU, replay its objects, and judge the share."""
    print(
        f"\n== The openai SDK's own client CPU: {config.sdk_streams} streams of "
        f"{config.sdk_chunks} chunks and {config.sdk_calls} calls a round, best of "
        f"{config.sdk_rounds}",
        flush=True,
    )
    with server_process() as endpoint:
        cost, recording = trio.run(sdk_cost, endpoint, config)
    chunks = len(recording.chunks)
    print(f"  {us(cost.per_chunk)} per chunk ({chunks} a stream), {us(cost.per_call)} per call")

    print(
        f"\n== Replay without I/O: {config.replay_streams} streams and {config.replay_calls} "
        f"calls a round, best of {config.replay_rounds}",
        flush=True,
    )
    measured = subjects(recording)
    streamed = best_of(
        {s.name: per_chunk(s, config.replay_streams, chunks) for s in measured},
        config.replay_rounds,
    )
    called = best_of(
        {s.name: per_call(s, config.replay_calls) for s in measured}, config.replay_rounds
    )
    return [
        share_table("streamed chunk", cost.per_chunk, streamed, measured),
        share_table("call", cost.per_call, called, measured),
    ]
