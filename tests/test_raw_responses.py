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
        self.closed = False

    def __iter__(self) -> SyncItems:
        return self

    def __next__(self) -> Any:
        if not self.items:
            raise StopIteration
        return self.items.pop(0)

    def close(self) -> None:
        self.closed = True


def body(key: int) -> list[Any]:
    """A stream on an expired key (0) fails with an auth error event before any text."""
    return [ERROR_401] if key == 0 else [text("a"), text("b")]


class AsyncRaw:
    def __init__(self, key: int) -> None:
        self.key = key
        self.request_id = f"req-{key}"
        self.parsed: AsyncItems | None = None
        self.closed = False

    async def parse(self) -> AsyncItems:
        self.parsed = AsyncItems(body(self.key))
        return self.parsed

    async def close(self) -> None:
        self.closed = True


class SyncRaw:
    def __init__(self, key: int) -> None:
        self.key = key
        self.parsed: SyncItems | None = None
        self.closed = False

    def parse(self, *, to: object = None) -> Any:
        if to is not None:
            return to
        if self.parsed is None:
            self.parsed = SyncItems(body(self.key))
        return self.parsed

    def close(self) -> None:
        self.closed = True


class AsyncResponses:
    def __init__(self, client: AsyncOpenAI) -> None:
        self.client = client

    async def create(self, *, stream: bool = True) -> Any:
        if not stream:
            return "a value"
        self.client.sent.append(AsyncRaw(self.client.key))
        return self.client.sent[-1]


class AsyncOpenAI:
    def __init__(self, key: int, sent: list[AsyncRaw]) -> None:
        self.key, self.sent = key, sent
        self.responses = AsyncResponses(self)


class SyncResponses:
    def __init__(self, client: OpenAI) -> None:
        self.client = client

    def create(self) -> SyncRaw:
        self.client.sent.append(SyncRaw(self.client.key))
        return self.client.sent[-1]


class OpenAI:
    def __init__(self, key: int, sent: list[SyncRaw]) -> None:
        self.key, self.sent = key, sent
        self.responses = SyncResponses(self)


AsyncOpenAI.__module__ = OpenAI.__module__ = "openai._client"


def async_client() -> tuple[Any, list[AsyncRaw]]:
    """A wrapped async client on an expired key, and the raw responses it answered, in order."""
    sent: list[AsyncRaw] = []

    async def renew(stale: AsyncOpenAI) -> AsyncOpenAI:
        return AsyncOpenAI(stale.key + 1, sent)

    return refresh_on_401(AsyncOpenAI(0, sent), refresh=renew), sent


def sync_client(key: int = 0) -> tuple[Any, list[SyncRaw]]:
    """A wrapped sync client on `key` (0 is expired), and the raw responses it answered."""
    sent: list[SyncRaw] = []
    return refresh_on_401(OpenAI(key, sent), refresh=lambda s: OpenAI(s.key + 1, sent)), sent


# --------------------------------------------------------------------------------------------------
# the tests


async def test_an_async_parse_stream_retries_an_auth_error_event_before_text() -> None:
    """An awaited `parse()` stream: an auth error event before text resends, text once."""
    client, sent = async_client()
    raw = await client.responses.create()
    items = [item async for item in await raw.parse()]
    keys = [each.key for each in sent]
    assert ([text("a"), text("b")], [0, 1], "req-0") == (items, keys, raw.request_id)


async def test_a_value_with_no_parse_method_is_returned_as_it_is() -> None:
    """A stream method's plain value (no raw response) is not viewed."""
    client, _ = async_client()
    assert "a value" == await client.responses.create(stream=False)


def test_a_sync_parse_stream_retries_an_auth_error_event_before_text() -> None:
    """A sync `parse()` stream: an auth error event before text resends, text once."""
    client, sent = sync_client()
    items = list(client.responses.create().parse())
    assert ([text("a"), text("b")], [0, 1]) == (items, [each.key for each in sent])


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


def test_closing_a_sync_raw_response_closes_the_stream_a_retry_opened() -> None:
    """Closing the raw response (its manager's exit) closes the retried stream, half read."""
    client, sent = sync_client()
    raw = client.responses.create()
    first = next(raw.parse())
    raw.close()
    retried = sent[1].parsed
    assert (text("a"), True, True) == (first, raw.closed, retried is not None and retried.closed)


def test_closing_a_sync_raw_response_never_parsed_closes_it() -> None:
    """A raw response closed before its body was parsed is closed as it is."""
    client, sent = sync_client()
    client.responses.create().close()
    assert ([0], True) == ([each.key for each in sent], sent[0].closed)


async def test_closing_an_async_raw_response_closes_the_stream_a_retry_opened() -> None:
    """An async raw response's `await close()` closes the retried stream too, half read."""
    client, sent = async_client()
    raw = await client.responses.create()
    first = await (await raw.parse()).__anext__()
    await raw.close()
    retried = sent[1].parsed
    assert (text("a"), True, True) == (first, raw.closed, retried is not None and retried.closed)


async def test_closing_an_async_raw_response_never_parsed_closes_it() -> None:
    """An async raw response closed before its body was parsed is closed as it is."""
    client, sent = async_client()
    await (await client.responses.create()).close()
    assert ([0], True) == ([each.key for each in sent], sent[0].closed)
