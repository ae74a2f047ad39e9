"""Presets: a known SDK client wrapped with no names, found by its class, every door covered."""

from __future__ import annotations

import functools
from typing import Any, Self

import pytest
import trio
from conftest import Unauthorized

from refresh_middleware import refresh_on_401
from refresh_middleware._kinds import Preset, preset_for
from refresh_middleware._kinds._dialect import Dialect
from refresh_middleware._kinds._tables import merge

# --------------------------------------------------------------------------------------------------
# a client named as the openai SDK names its own (module and qualified name), never imported


class Completions:
    """`client.chat.completions`, with the raw-response views the SDK hands out."""

    def __init__(self, client: OpenAI) -> None:
        self.client = client

    def create(self, *, model: str) -> str:
        client = self.client
        client.sent.append(client.key)
        if client.key != client.valid[0]:
            raise Unauthorized
        return f"{model} on key {client.key} in {client.timeout} s"

    @functools.cached_property
    def with_raw_response(self) -> RawCompletions:
        return RawCompletions(self)


class RawCompletions:
    def __init__(self, completions: Completions) -> None:
        self.create = completions.create


class Chat:
    def __init__(self, client: OpenAI) -> None:
        self.completions = Completions(client)


class OpenAI:
    """Shaped as `openai.OpenAI`: nested resources, `with_options`, a context manager."""

    def __init__(self, key: int, valid: list[int], sent: list[int], timeout: int = 60) -> None:
        self.key, self.valid, self.sent, self.timeout = key, valid, sent, timeout
        self.chat = Chat(self)

    def with_options(self, *, timeout: int) -> OpenAI:
        return OpenAI(self.key, self.valid, self.sent, timeout)

    @property
    def with_raw_response(self) -> RawClient:
        return RawClient(self)

    def chat_stream(self) -> None:  # a default name: the preset's names replace it
        raise AssertionError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        pass


class RawClient:
    def __init__(self, client: OpenAI) -> None:
        self.chat = client.chat


OpenAI.__module__ = "openai._client"


class AzureOpenAI(OpenAI):
    """A subclass the SDK defines elsewhere, with no preset of its own."""


AzureOpenAI.__module__ = "openai.lib.azure"


def wrapped(**options: Any) -> tuple[Any, list[int], list[int]]:
    """An OpenAI-shaped client on an expired key (0), wrapped; the fresh keys and requests."""
    valid, sent, refreshes = [1], [], []

    def renew(stale: OpenAI) -> OpenAI:
        refreshes.append(stale.key)
        return OpenAI(valid[0], valid, sent, stale.timeout)

    client = refresh_on_401(OpenAI(0, valid, sent), refresh=renew, **options)
    return client, refreshes, sent


# --------------------------------------------------------------------------------------------------
# finding a preset


def test_a_preset_is_found_by_module_and_qualified_name() -> None:
    """A class is matched by its package and qualified name, through its MRO."""
    found = preset_for(AzureOpenAI)
    assert ("openai", "OpenAI") == (found.module, found.qualname) if found else None


def test_a_class_of_the_same_name_elsewhere_has_no_preset() -> None:
    """A class named like an SDK's, in another package, is no SDK client."""
    assert None is preset_for(type("OpenAI", (), {"__module__": "openaix"}))


def test_two_presets_for_one_class_are_refused() -> None:
    """Two dialects with a preset for one class are a mistake, caught when merged."""
    preset = Preset("sdk", "Client")
    with pytest.raises(ValueError, match=r"preset for 'sdk\.Client'"):
        merge([Dialect("one", presets=(preset,)), Dialect("two", presets=(preset,))])


# --------------------------------------------------------------------------------------------------
# what the preset intercepts, and what the user's names replace


def test_a_known_client_wrapped_with_no_names_refreshes_its_requests() -> None:
    """Wrapped with no names, the preset's dotted name is intercepted: one refresh, retried."""
    client, refreshes, sent = wrapped()
    reply = client.chat.completions.create(model="m")
    assert ("m on key 1 in 60 s", [0], [0, 1]) == (reply, refreshes, sent)


def test_names_given_replace_the_presets() -> None:
    """calls= given replaces the preset's names; the preset's streams are left alone."""
    client, _, _ = wrapped(calls=("with_options",))
    assert "OpenAI" == type(client.with_options(timeout=5)).__name__


def test_hands_out_given_replaces_the_presets() -> None:
    """hands_out= given replaces the preset's: its raw-response view is then the SDK's own."""
    client, refreshes, _ = wrapped(hands_out=())
    with pytest.raises(Unauthorized):
        client.with_raw_response.chat.completions.create(model="m")
    assert [] == refreshes


# --------------------------------------------------------------------------------------------------
# the doors: properties handed out, derived clients, entering


def test_a_handed_out_property_calls_through_the_proxy() -> None:
    """A property listed in the preset (`with_raw_response`) is read with the proxy as self."""
    client, refreshes, _ = wrapped()
    reply = client.with_raw_response.chat.completions.create(model="m")
    assert ("m on key 1 in 60 s", [0]) == (reply, refreshes)


def test_a_nested_cached_property_is_handed_out_afresh() -> None:
    """A nested cached property (`chat.completions.with_raw_response`) runs on the proxy, and
    nothing of ours is cached on the client."""
    client, refreshes, _ = wrapped()
    reply = client.chat.completions.with_raw_response.create(model="m")
    assert ("m on key 1 in 60 s", [0]) == (reply, refreshes)
    assert "with_raw_response" not in vars(client.chat.completions)


def test_a_derived_client_shares_the_flight() -> None:
    """with_options(...) hands out a proxy on the same flight: one refresh serves both, and
    its calls keep their options on the fresh client."""
    client, refreshes, _ = wrapped()
    quick = client.with_options(timeout=5)
    first = quick.chat.completions.create(model="m")
    second = client.chat.completions.create(model="m")
    assert ("m on key 1 in 5 s", "m on key 1 in 60 s", [0]) == (first, second, refreshes)


def test_a_client_derived_twice_keeps_both_steps() -> None:
    """A derived client's own with_options derives from it, on the same flight."""
    client, refreshes, _ = wrapped()
    quicker = client.with_options(timeout=5).with_options(timeout=2)
    assert ("m on key 1 in 2 s", [0]) == (quicker.chat.completions.create(model="m"), refreshes)


def test_a_derived_client_is_made_once_per_provider() -> None:
    """Calls on a derived client reuse what was made from the current provider."""
    client, _, _ = wrapped()
    quick = client.with_options(timeout=5)
    quick.chat.completions.create(model="m")  # refreshes: made again from the fresh client
    made = []
    original = OpenAI.with_options
    OpenAI.with_options = lambda self, **kw: made.append(kw) or original(self, **kw)  # type: ignore[method-assign]
    try:
        quick.chat.completions.create(model="m")
    finally:
        OpenAI.with_options = original  # type: ignore[method-assign]
    assert [] == made


def test_entering_the_client_gives_the_proxy() -> None:
    """`with client as c`: a client that enters as itself gives the proxy."""
    client, _, _ = wrapped()
    with client as entered:
        assert entered is client


async def test_entering_the_async_client_gives_the_proxy() -> None:
    """`async with client as c`: a client that enters as itself gives the proxy."""
    client, _, _ = wrapped()
    async with client as entered:
        assert entered is client


def test_entering_what_returns_another_object_gives_that() -> None:
    """A provider whose __enter__ returns something else gives that, as it would bare."""

    class Session:
        def chat(self) -> str:
            return "hi"

        def __enter__(self) -> str:
            return "session"

        async def __aenter__(self) -> str:
            await trio.lowlevel.checkpoint()
            return "async session"

    provider = refresh_on_401(Session(), refresh=lambda stale: stale)
    assert "session" == provider.__enter__()


def test_the_derived_client_door_read_on_the_proxy_class_is_itself() -> None:
    """Read on the proxy's class, with_options is the door itself, as a method is a function."""
    client, _, _ = wrapped()
    assert "with_options" == type(client).with_options.name


# --------------------------------------------------------------------------------------------------
# stream managers and the helpers of their streams, on clients shaped as anthropic's

AUTH_ERROR = {"type": "error", "error": {"type": "authentication_error", "message": "expired"}}
START = {"type": "message_start"}
DONE = {"type": "message_stop"}


def text(value: str) -> dict[str, str]:
    return {"type": "text_delta", "text": value}


class MessageStream:
    """`messages.stream()`'s stream: its helpers read it themselves, as the SDK's do."""

    def __init__(self, items: list[Any]) -> None:
        self.items = iter(items)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        return next(self.items)

    def __stream_text__(self) -> Any:
        for event in self:
            if event["type"] == "text_delta":
                yield event["text"]

    def until_done(self) -> None:
        for _ in self:
            pass


class AsyncMessageStream(MessageStream):
    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        await trio.lowlevel.checkpoint()
        item = next(self.items, None)
        if item is None:
            raise StopAsyncIteration
        return item

    async def __stream_text__(self) -> Any:  # type: ignore[override]
        async for event in self:
            if event["type"] == "text_delta":
                yield event["text"]

    async def until_done(self) -> None:  # type: ignore[override]
        async for _ in self:
            pass


class Manager:
    """What `messages.stream()` returns: the request is sent when it is entered."""

    def __init__(self, client: Anthropic) -> None:
        self.client = client

    def __enter__(self) -> MessageStream:
        client = self.client
        client.log.append(f"enter {client.key}")
        if client.key != client.valid[0]:
            raise Unauthorized
        return MessageStream(client.batches.pop(0))

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.client.log.append(f"exit {kind.__name__ if kind else None}")


class AsyncManager(Manager):
    """An async client's manager, entered with `async with`."""

    async def __aenter__(self) -> MessageStream:
        await trio.lowlevel.checkpoint()
        return AsyncMessageStream(list(self.__enter__().items))

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        await trio.lowlevel.checkpoint()
        self.__exit__(kind)


class Messages:
    def __init__(self, client: Anthropic) -> None:
        self.client = client

    def stream(self) -> Manager:
        return (AsyncManager if self.client.asynchronous else Manager)(self.client)


class Anthropic:
    asynchronous = False

    def __init__(self, key: int, valid: list[int], batches: list[Any], log: list[str]) -> None:
        self.key, self.valid, self.batches, self.log = key, valid, batches, log
        self.messages = Messages(self)


class AsyncAnthropic(Anthropic):
    asynchronous = True


Anthropic.__module__ = AsyncAnthropic.__module__ = "anthropic._client"


def anthropic(cls: type[Anthropic], key: int, *batches: list[Any]) -> tuple[Any, list[str]]:
    """An anthropic-shaped client on `key` (1 is valid), wrapped; its log of enters and exits."""
    valid, log = [1], []

    def renew(stale: Anthropic) -> Anthropic:
        return cls(valid[0], valid, stale.batches, log)

    return refresh_on_401(cls(key, valid, list(batches), log), refresh=renew), log


def test_a_sync_manager_is_refreshed_at_enter() -> None:
    """`with client.messages.stream() as s`: a 401 at enter is refreshed, entered again."""
    client, log = anthropic(Anthropic, 0, [START, text("a"), DONE])
    with client.messages.stream() as stream:
        events = list(stream)
    assert ([START, text("a"), DONE], ["enter 0", "enter 1", "exit None"]) == (events, log)


def test_a_sync_streams_text_helper_reads_through_the_gate() -> None:
    """text_stream of a sync manager's stream: an auth error before text is retried there."""
    client, log = anthropic(Anthropic, 1, [START, AUTH_ERROR], [START, text("a"), DONE])
    with client.messages.stream() as stream:
        texts = list(stream.text_stream)
    assert (["a"], ["enter 1", "exit None", "enter 1", "exit None"]) == (texts, log)


def test_a_sync_manager_is_left_with_the_consumers_exception() -> None:
    """An exception that ends the consumer's block reaches the manager's __exit__."""
    client, log = anthropic(Anthropic, 1, [START, text("a"), DONE])

    def consume() -> None:
        with client.messages.stream() as stream:
            next(stream)
            raise KeyError

    with pytest.raises(KeyError):
        consume()
    assert ["enter 1", "exit KeyError"] == log


def test_a_helper_the_stream_lacks_is_read_as_usual() -> None:
    """A helper the preset names but this stream lacks is the stream's AttributeError; other
    attributes are the stream's."""
    client, _ = anthropic(Anthropic, 1, [START, DONE])
    with client.messages.stream() as stream:
        assert hasattr(stream, "items")
        with pytest.raises(AttributeError):
            _ = stream.get_final_message


async def test_an_async_streams_text_helper_reads_through_the_gate() -> None:
    """text_stream of an async manager's stream: an auth error before text is retried there."""
    client, log = anthropic(AsyncAnthropic, 1, [START, AUTH_ERROR], [START, text("a"), DONE])
    async with client.messages.stream() as stream:
        texts = [text async for text in stream.text_stream]
    assert (["a"], ["enter 1", "exit None", "enter 1", "exit None"]) == (texts, log)


async def test_an_async_streams_until_done_reads_through_the_gate() -> None:
    """until_done() on an async manager's stream reads through the gate: the error is retried."""
    client, log = anthropic(AsyncAnthropic, 1, [START, AUTH_ERROR], [START, text("a"), DONE])
    async with client.messages.stream() as stream:
        await stream.until_done()
    assert ["enter 1", "exit None", "enter 1", "exit None"] == log
