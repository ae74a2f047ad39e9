"""Raw responses: the stream an openai-shaped raw response's `parse()` returns is read gated.

The clients are named as the openai SDK names its own (never imported): the preset says its
raw responses are read by `parse()`. An auth error event before any text there is retried by
sending the request again and reading the new response's `parse()` the same way.
"""

from __future__ import annotations

from typing import Any

from conftest import ERROR_401, text

from refresh_middleware import refresh_on_401

# --------------------------------------------------------------------------------------------------
# an openai-shaped async client: `responses.create` answers a raw response


class AsyncItems:
    """The SDK's async stream: its items, and whether it was closed."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.closed = False

    def __aiter__(self) -> AsyncItems:
        return self

    async def __anext__(self) -> Any:
        if not self.items:
            raise StopAsyncIteration
        return self.items.pop(0)

    async def close(self) -> None:
        self.closed = True


class SyncItems:
    """The SDK's sync stream."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __iter__(self) -> SyncItems:
        return self

    def __next__(self) -> Any:
        if not self.items:
            raise StopIteration
        return self.items.pop(0)

    def close(self) -> None:
        self.items = []


def body(key: int) -> list[Any]:
    """A stream on an expired key (0) fails with an auth error event before any text."""
    return [ERROR_401] if key == 0 else [text("a"), text("b")]


class AsyncRaw:
    def __init__(self, key: int) -> None:
        self.key = key
        self.request_id = f"req-{key}"

    async def parse(self) -> AsyncItems:
        return AsyncItems(body(self.key))


class SyncRaw:
    def __init__(self, key: int, parsed: object = None) -> None:
        self.key = key
        self.parsed = parsed

    def parse(self, *, to: object = None) -> Any:
        if to is not None:
            return to
        if self.parsed is None:
            self.parsed = SyncItems(body(self.key))
        return self.parsed


class AsyncResponses:
    def __init__(self, client: AsyncOpenAI) -> None:
        self.client = client

    async def create(self, *, stream: bool = True) -> Any:
        self.client.sent.append(self.client.key)
        return AsyncRaw(self.client.key) if stream else "a value"


class AsyncOpenAI:
    def __init__(self, key: int, sent: list[int]) -> None:
        self.key, self.sent = key, sent
        self.responses = AsyncResponses(self)


class SyncResponses:
    def __init__(self, client: OpenAI) -> None:
        self.client = client

    def create(self) -> SyncRaw:
        self.client.sent.append(self.client.key)
        return SyncRaw(self.client.key)


class OpenAI:
    def __init__(self, key: int, sent: list[int]) -> None:
        self.key, self.sent = key, sent
        self.responses = SyncResponses(self)


AsyncOpenAI.__module__ = OpenAI.__module__ = "openai._client"


def async_client() -> tuple[Any, list[int]]:
    sent: list[int] = []

    async def renew(stale: AsyncOpenAI) -> AsyncOpenAI:
        return AsyncOpenAI(stale.key + 1, sent)

    return refresh_on_401(AsyncOpenAI(0, sent), refresh=renew), sent


def sync_client(key: int = 0) -> tuple[Any, list[int]]:
    sent: list[int] = []
    return refresh_on_401(OpenAI(key, sent), refresh=lambda s: OpenAI(s.key + 1, sent)), sent


# --------------------------------------------------------------------------------------------------
# the tests


async def test_an_async_parse_stream_retries_an_auth_error_event_before_text() -> None:
    """An awaited `parse()` stream: an auth error event before text resends, text once."""
    client, sent = async_client()
    raw = await client.responses.create()
    items = [item async for item in await raw.parse()]
    assert ([text("a"), text("b")], [0, 1], "req-0") == (items, sent, raw.request_id)


async def test_a_value_with_no_parse_method_is_returned_as_it_is() -> None:
    """A stream method's plain value (no raw response) is not viewed."""
    client, _ = async_client()
    assert "a value" == await client.responses.create(stream=False)


def test_a_sync_parse_stream_retries_an_auth_error_event_before_text() -> None:
    """A sync `parse()` stream: an auth error event before text resends, text once."""
    client, sent = sync_client()
    items = list(client.responses.create().parse())
    assert ([text("a"), text("b")], [0, 1]) == (items, sent)


def test_parse_again_gives_the_same_gated_stream() -> None:
    """The SDK caches what `parse()` read: parsed again, the same view is given."""
    client, _ = sync_client(key=1)
    raw = client.responses.create()
    assert raw.parse() is raw.parse()


def test_parse_to_something_else_than_a_stream_is_returned_as_it_is() -> None:
    """`parse(to=...)` giving no stream is the SDK's answer, ungated."""
    client, _ = sync_client(key=1)
    assert "text" == client.responses.create().parse(to="text")


def test_a_second_stream_parsed_from_one_response_is_not_gated_again() -> None:
    """A call has one gated stream: another stream parsed after it is given as it is."""
    client, _ = sync_client(key=1)
    raw = client.responses.create()
    raw.parse()
    other = SyncItems([])
    assert other is raw.parse(to=other)
