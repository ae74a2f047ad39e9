"""The test kit: ScriptedProvider, SyncScriptedProvider, RefreshCounter and the module surface."""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import pickle
import sys
import threading
import types
from contextlib import aclosing, closing

import pytest
import trio

import refresh_middleware.testing
from refresh_middleware import is_unauthorized_error, refresh_on_401
from refresh_middleware.testing import (
    AsyncRefreshCounter,
    RefreshCounter,
    ScriptedProvider,
    ScriptExhaustedError,
    SyncScriptedProvider,
    UnauthorizedError,
    _double,
)


async def collect(stream, received=None):
    """The items of an async stream, closed afterwards; kept in `received` if an error stops it."""
    received = [] if received is None else received
    async with aclosing(stream) as items:
        async for item in items:
            received.append(item)
    return received


# UnauthorizedError


def test_unauthorized_error_is_classified_as_401():
    """The doubles' 401 is what the default classifier calls unauthorized."""
    assert True is is_unauthorized_error(UnauthorizedError())


def test_unauthorized_error_has_status_code_401():
    """UnauthorizedError carries status_code 401, as SDK errors do."""
    assert 401 == UnauthorizedError("custom").status_code


# The async double, chat


async def test_chat_returns_queued_results_in_order():
    """chat returns the queued results one per call, in order."""
    provider = ScriptedProvider().queue_chat("one", "two")
    assert ["one", "two"] == [await provider.chat(), await provider.chat()]


async def test_chat_raises_a_queued_exception():
    """An exception queued for chat is raised by that call."""
    provider = ScriptedProvider().queue_chat(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        await provider.chat()


async def test_chat_beyond_the_script_raises_script_exhausted():
    """A chat call with nothing queued raises ScriptExhaustedError."""
    with pytest.raises(ScriptExhaustedError, match="called 1 times"):
        await ScriptedProvider().chat()


async def test_expired_chat_raises_401_without_consuming_the_script():
    """While expired, chat raises a 401 and leaves the queued result for later."""
    provider = ScriptedProvider(expired=True).queue_chat("kept")
    with pytest.raises(UnauthorizedError):
        await provider.chat()
    provider.renew()
    assert "kept" == await provider.chat()


async def test_chat_counts_calls_and_records_arguments():
    """Every chat call is counted and its arguments recorded, failed calls included."""
    provider = ScriptedProvider(expired=True)
    with pytest.raises(UnauthorizedError):
        await provider.chat("hi", model="m")
    assert (1, [(("hi",), {"model": "m"})]) == (provider.calls, provider.arguments)


def test_expire_marks_the_credential_expired():
    """expire makes the double answer 401 until renewed."""
    provider = ScriptedProvider()
    provider.expire()
    assert True is provider.expired


def test_renew_clears_expiry_and_counts():
    """renew clears the expiry and counts the renewal."""
    provider = ScriptedProvider(expired=True)
    provider.renew()
    assert (False, 1) == (provider.expired, provider.renewals)


def test_repr_shows_state_and_counters():
    """repr shows expiry and the counters a failing test needs."""
    expected = "<ScriptedProvider expired=True calls=0 stream_opens=0 streams_closed=0>"
    assert expected == repr(ScriptedProvider(expired=True))


def test_expired_can_be_set_and_cleared():
    """Setting expired to True expires the credential; False clears it without a renewal."""
    provider = ScriptedProvider()
    provider.expired = True
    expired_then = provider.expired
    provider.expired = False
    assert (True, False, 0) == (expired_then, provider.expired, provider.renewals)


def test_renewing_a_valid_credential_counts_and_keeps_it_valid():
    """renew on a double that never expired counts, and the double stays valid."""
    provider = ScriptedProvider()
    provider.renew()
    assert (False, 1) == (provider.expired, provider.renewals)


def test_latency_can_be_changed():
    """latency is read and written on the double."""
    provider = ScriptedProvider(latency=0.5)
    provider.latency = 0.25
    assert 0.25 == provider.latency


# Replacements


def test_a_replacement_holds_a_fresh_credential_and_the_stale_double_stays_expired():
    """A replacement of an expired double is valid; the double it replaces is not."""
    stale = ScriptedProvider(expired=True)
    fresh = stale.replacement()
    assert (False, True, ScriptedProvider) == (fresh.expired, stale.expired, type(fresh))


async def test_a_replacement_shares_the_script_and_the_counters():
    """A replacement answers from the same queues, and both count on the same counters."""
    stale = ScriptedProvider(expired=True).queue_chat("hello")
    fresh = stale.replacement()
    with pytest.raises(UnauthorizedError):
        await stale.chat()
    assert ("hello", 2, 2) == (await fresh.chat(), stale.calls, fresh.calls)


def test_a_replacement_counts_as_a_renewal():
    """Making a replacement renews a credential, and is counted as one."""
    stale = SyncScriptedProvider(expired=True)
    stale.replacement()
    assert 1 == stale.renewals


def test_expire_also_expires_replacements_made_before():
    """expire on the newest double expires every older credential, as a key rotation does."""
    first = SyncScriptedProvider()
    second = first.replacement()
    second.expire()
    assert (True, True) == (first.expired, second.expired)


async def test_a_refresh_that_returns_a_replacement_swaps_the_double():
    """Through the wrapper, a refresh returning stale.replacement() gets the call through."""
    provider = ScriptedProvider(expired=True).queue_chat("hello")
    refresh = RefreshCounter(replace=lambda stale: stale.replacement())
    wrapped = refresh_on_401(provider, refresh=refresh)
    reply = await wrapped.chat()
    assert ("hello", True, False) == (reply, provider.expired, wrapped.__wrapped__.expired)


def test_a_double_pickles_with_its_script():
    """A pickled double comes back with its queues, counters and credential."""
    provider = SyncScriptedProvider(expired=True).queue_chat("kept")
    restored = pickle.loads(pickle.dumps(provider))  # noqa: S301 - our own bytes
    restored.renew()
    assert ("kept", 1) == (restored.chat(), restored.renewals)


def test_a_deep_copy_has_a_script_of_its_own():
    """A deep copy answers from its own queues: the original keeps its results."""
    provider = SyncScriptedProvider().queue_chat("one")
    copied = copy.deepcopy(provider)
    copied.chat()
    assert ("one", 1) == (provider.chat(), copied.calls)


# The async double, streams


async def test_stream_yields_queued_items():
    """A queued stream yields its items in order."""
    provider = ScriptedProvider().queue_stream("Hel", "lo")
    assert ["Hel", "lo"] == await collect(provider.chat_stream())


async def test_unauthorized_after_zero_raises_before_the_first_item():
    """unauthorized_after=0 makes the stream raise a 401 before any item."""
    provider = ScriptedProvider().queue_stream("Hel", "lo", unauthorized_after=0)
    received = []
    with pytest.raises(UnauthorizedError):
        await collect(provider.chat_stream(), received)
    assert [] == received


async def test_unauthorized_after_one_raises_after_the_first_item():
    """unauthorized_after=1 makes the stream raise a 401 right after its first item."""
    provider = ScriptedProvider().queue_stream("Hel", "lo", unauthorized_after=1)
    received = []
    with pytest.raises(UnauthorizedError):
        await collect(provider.chat_stream(), received)
    assert ["Hel"] == received


async def test_stream_beyond_the_script_raises_script_exhausted():
    """A stream opened with nothing queued raises ScriptExhaustedError when read."""
    with pytest.raises(ScriptExhaustedError, match="stream 1 was opened"):
        await collect(ScriptedProvider().chat_stream())


async def test_expired_stream_raises_401_before_any_item():
    """While expired, a stream raises a 401 on first read and keeps its script."""
    provider = ScriptedProvider(expired=True).queue_stream("kept")
    with pytest.raises(UnauthorizedError):
        await collect(provider.chat_stream())
    provider.renew()
    assert ["kept"] == await collect(provider.chat_stream())


async def test_stream_closed_early_counts_as_closed():
    """A stream its consumer closes before the end counts as closed; none stays open."""
    provider = ScriptedProvider().queue_stream("a", "b", "c")
    async with aclosing(provider.chat_stream()) as stream:
        await stream.__anext__()
    assert (1, 1, 0) == (provider.stream_opens, provider.streams_closed, provider.open_streams)


async def test_open_streams_counts_a_stream_in_progress():
    """A stream that has started and not ended is open."""
    provider = ScriptedProvider().queue_stream("a", "b")
    async with aclosing(provider.chat_stream()) as stream:
        await stream.__anext__()
        open_during = provider.open_streams
    assert 1 == open_during


async def test_items_sent_counts_items_over_all_streams():
    """items_sent counts the items handed out by every stream."""
    provider = ScriptedProvider().queue_stream("a", "b").queue_stream("c")
    await collect(provider.chat_stream())
    await collect(provider.chat_stream())
    assert 3 == provider.items_sent


# The async double through refresh_on_401


async def test_wrapped_stream_retries_a_401_before_the_first_chunk():
    """Through the wrapper, a 401 before the first chunk is retried and the output is whole."""
    provider = ScriptedProvider()
    provider.queue_stream("Hel", "lo", unauthorized_after=0).queue_stream("Hel", "lo")
    wrapped = refresh_on_401(provider, refresh=RefreshCounter())
    assert ["Hel", "lo"] == await collect(wrapped.chat_stream("hi"))


async def test_wrapped_stream_closes_the_abandoned_attempt():
    """Through the wrapper, both attempts were opened and both were closed."""
    provider = ScriptedProvider()
    provider.queue_stream("Hel", "lo", unauthorized_after=0).queue_stream("Hel", "lo")
    await collect(refresh_on_401(provider, refresh=RefreshCounter()).chat_stream("hi"))
    assert (2, 0) == (provider.stream_opens, provider.open_streams)


async def test_wrapped_stream_raises_a_401_after_the_first_chunk():
    """Through the wrapper, a 401 after output is raised, not retried."""
    provider = ScriptedProvider().queue_stream("Hel", "lo", unauthorized_after=1)
    refresh = RefreshCounter()
    received = []
    with pytest.raises(UnauthorizedError):
        await collect(refresh_on_401(provider, refresh=refresh).chat_stream(), received)
    assert (["Hel"], 0) == (received, refresh.count)


async def test_wrapped_chat_on_an_expired_double_refreshes_once():
    """Through the wrapper, an expired double is renewed by one refresh and the call succeeds."""
    provider = ScriptedProvider(expired=True).queue_chat("hello")
    refresh = RefreshCounter()
    reply = await refresh_on_401(provider, refresh=refresh).chat()
    assert ("hello", 1, 1) == (reply, refresh.count, provider.renewals)


async def test_concurrent_expired_calls_share_one_async_refresh(autojump_clock):
    """Forty concurrent calls on an expired double cause one refresh."""
    provider = ScriptedProvider(expired=True, latency=0.01).queue_chat(*range(40))
    refresh = AsyncRefreshCounter()
    wrapped = refresh_on_401(provider, refresh=refresh)
    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(wrapped.chat)
    assert (1, 80) == (refresh.count, provider.calls)


def test_scripted_provider_runs_under_asyncio():
    """The async double and the async refresh work under asyncio too."""

    async def main():
        provider = ScriptedProvider(expired=True).queue_stream("a", "b")
        wrapped = refresh_on_401(provider, refresh=AsyncRefreshCounter())
        return await collect(wrapped.chat_stream())

    assert ["a", "b"] == asyncio.run(main())


async def test_decorated_subclass_refreshes_in_place():
    """A subclass decorated with a RefreshCounter is renewed in place."""
    refresh = RefreshCounter()

    @refresh_on_401(refresh=refresh)
    class Provider(ScriptedProvider):
        pass

    provider = Provider(expired=True).queue_chat("ok")
    assert ("ok", [provider]) == (await provider.chat(), refresh.stale)


# SyncScriptedProvider


def test_sync_chat_returns_queued_results():
    """The sync double's chat returns the queued results in order."""
    provider = SyncScriptedProvider().queue_chat("one", "two")
    assert ["one", "two"] == [provider.chat(), provider.chat()]


def test_sync_stream_raises_at_the_queued_401():
    """The sync double's stream yields up to the 401, then raises it."""
    provider = SyncScriptedProvider().queue_stream("a", "b", unauthorized_after=1)
    received = []
    with pytest.raises(UnauthorizedError), closing(provider.chat_stream()) as stream:
        received.extend(stream)
    assert ["a"] == received


def test_sync_stream_closed_early_counts_as_closed():
    """A sync stream closed before its end counts as closed."""
    provider = SyncScriptedProvider().queue_stream("a", "b")
    with closing(provider.chat_stream()) as stream:
        next(stream)
    assert (1, 0, 1) == (provider.streams_closed, provider.open_streams, provider.items_sent)


def test_sync_wrapped_stream_retries_a_401_before_the_first_chunk():
    """Through the wrapper, the sync double's 401 before output is retried once."""
    provider = SyncScriptedProvider().queue_stream("x", unauthorized_after=0).queue_stream("x")
    wrapped = refresh_on_401(provider, refresh=RefreshCounter())
    with closing(wrapped.chat_stream()) as stream:
        assert ["x"] == list(stream)


def test_threads_on_an_expired_sync_double_share_one_refresh():
    """Eight threads calling an expired sync double cause one refresh."""
    provider = SyncScriptedProvider(expired=True, latency=0.05).queue_chat(*range(8))
    refresh = RefreshCounter()
    wrapped = refresh_on_401(provider, refresh=refresh)
    barrier = threading.Barrier(8)

    def call():
        barrier.wait()
        wrapped.chat()

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (1, 16) == (refresh.count, provider.calls)


# RefreshCounter


def test_refresh_counter_counts_and_records_the_stale_provider():
    """Each call is counted and the stale provider recorded."""
    refresh = RefreshCounter()
    refresh("a")
    refresh("b")
    assert (2, ["a", "b"]) == (refresh.count, refresh.stale)


def test_refresh_counter_renews_in_place_and_returns_none():
    """By default the stale provider's renew() is called and None returned."""
    provider = SyncScriptedProvider(expired=True)
    assert (None, 1) == (RefreshCounter()(provider), provider.renewals)


def test_refresh_counter_returns_the_replacement():
    """With replace=, the replacement is returned."""
    assert "fresh" == RefreshCounter(replace=lambda stale: "fresh")("stale")


def test_refresh_counter_raises_its_error_and_still_counts():
    """With error=, every refresh raises it and is still counted."""
    refresh = RefreshCounter(error=OSError("token endpoint down"))
    with pytest.raises(OSError, match="token endpoint down"):
        refresh("stale")
    assert 1 == refresh.count


async def test_failing_refresh_surfaces_the_original_401():
    """Through the wrapper, a failing refresh leaves the double's 401 to the caller."""
    provider = ScriptedProvider(expired=True)
    wrapped = refresh_on_401(provider, refresh=RefreshCounter(error=OSError("down")))
    with pytest.raises(UnauthorizedError) as caught:
        await wrapped.chat()
    assert "OSError" == type(caught.value.__context__).__name__


def test_refresh_counter_repr_shows_the_count():
    """repr shows how many refreshes ran."""
    assert "<RefreshCounter count=0>" == repr(RefreshCounter())


def test_async_refresh_counter_is_a_coroutine_function():
    """AsyncRefreshCounter's call is a coroutine function, so sync providers refuse it."""
    assert True is inspect.iscoroutinefunction(AsyncRefreshCounter().__call__)


async def test_async_refresh_counter_awaits_an_async_replacement():
    """An async replace= is awaited."""

    async def replace(stale):
        return f"fresh {stale}"

    assert "fresh a" == await AsyncRefreshCounter(replace=replace)("a")


async def test_async_refresh_counter_returns_a_plain_replacement():
    """A plain replace= result is returned as it is."""
    assert "fresh" == await AsyncRefreshCounter(replace=lambda stale: "fresh")("a")


# the module surface


def test_all_is_sorted_and_complete():
    """__all__ is exactly the test kit and the loopback server's public names."""
    from refresh_middleware.testing import _double, _oauth, _server

    public = {*_double.__all__, *_oauth.__all__, *_server.__all__}
    assert public == set(refresh_middleware.testing.__all__)


def test_every_name_in_all_resolves():
    """Every name in __all__ can be imported from refresh_middleware.testing."""
    names = refresh_middleware.testing.__all__
    assert [] == [name for name in names if not hasattr(refresh_middleware.testing, name)]


def test_server_names_resolve_to_the_server_module():
    """The loopback server's names are the _server module's own objects."""
    from refresh_middleware.testing import _server

    assert _server.open_loopback_server is refresh_middleware.testing.open_loopback_server


def test_dir_lists_the_lazy_server_names():
    """dir() shows the loopback server's names before they are imported."""
    assert {"LoopbackLLMServer", "ScriptedProvider"} <= set(dir(refresh_middleware.testing))


def test_unknown_attribute_is_attribute_error():
    """A name the module does not have is an AttributeError."""
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = refresh_middleware.testing.nothing


def test_server_names_without_the_server_extra_raise_a_helpful_import_error(monkeypatch):
    """Without hypercorn and starlette, a server name raises ImportError naming the extra."""
    monkeypatch.delitem(vars(refresh_middleware.testing), "LoopbackLLMServer", raising=False)
    monkeypatch.setitem(sys.modules, "refresh_middleware.testing._server", None)
    with pytest.raises(ImportError, match=r"the server extra: pip install -e '\.\[server\]'"):
        _ = refresh_middleware.testing.LoopbackLLMServer


def test_test_kit_imports_without_the_server_extra(monkeypatch):
    """refresh_middleware.testing imports when the server's dependencies are missing."""
    for name in ("hypercorn", "starlette", "refresh_middleware.testing._server"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "refresh_middleware.testing")
    module = importlib.import_module("refresh_middleware.testing")
    assert "ScriptedProvider" == module.ScriptedProvider.__name__


def test_sync_latency_is_spent_before_each_item(monkeypatch):
    """latency= makes the sync double sleep before every stream item and every chat."""
    slept = []
    monkeypatch.setattr(_double, "time", types.SimpleNamespace(sleep=slept.append))
    provider = SyncScriptedProvider(latency=0.25).queue_stream("a", "b").queue_chat("c")
    with closing(provider.chat_stream()) as stream:
        list(stream)
    provider.chat()
    assert [0.25, 0.25, 0.25] == slept


async def test_async_latency_is_spent_before_each_item(autojump_clock):
    """latency= makes the async double take that long per stream item, on trio's clock."""
    provider = ScriptedProvider(latency=0.25).queue_stream("a", "b")
    started = trio.current_time()
    await collect(provider.chat_stream())
    assert 0.5 == trio.current_time() - started
