"""The Rust seed's scenarios 2 to 9, each as a named test (scenario 1 is in test_classify.py).

Every scenario runs in instance and class mode, with async and sync providers, on trio and
asyncio.
"""

from __future__ import annotations

import pytest
from conftest import DONE, ERROR_401, Harness, text

SUCCESS = {"type": "message", "content": "ok"}


def test_seed_2_chat_successful_pass_through_does_not_refresh(harness: Harness) -> None:
    """A successful chat is returned untouched, with one call and no refresh."""
    harness.script.chats.append(SUCCESS)

    outcome = harness.run(harness.chat)

    assert SUCCESS == outcome
    assert (0, 1) == (harness.script.refreshes, harness.script.chat_calls)


def test_seed_3_chat_401_triggers_refresh_and_retries(harness: Harness) -> None:
    """A chat answering 401 is refreshed once and retried once, and the retry's result wins."""
    harness.script.chats.extend([{"type": "error", "message": "401 Unauthorized"}, SUCCESS])

    outcome = harness.run(harness.chat)

    assert SUCCESS == outcome
    assert (1, 2) == (harness.script.refreshes, harness.script.chat_calls)


def test_seed_4_chat_surfaces_original_401_when_refresh_fails(harness: Harness) -> None:
    """When the refresh fails, the original 401 result is returned and the chat not retried."""
    original = {"type": "error", "message": "status=401 Unauthorized"}
    harness.script.chats.append(original)
    harness.script.refresh_error = RuntimeError("refresh callback failed")

    outcome = harness.run(harness.chat)

    assert original is outcome
    assert (1, 1) == (harness.script.refreshes, harness.script.chat_calls)


def test_seed_5_chat_stream_successful_pass_through(harness: Harness) -> None:
    """A stream without errors is forwarded item for item, with no refresh."""
    harness.script.streams.append([text("hi"), DONE])

    items = harness.run(harness.drain)

    assert [text("hi"), DONE] == items
    assert (0, 1) == (harness.script.refreshes, harness.script.stream_opens)


def test_seed_6_chat_stream_401_before_output_retries(harness: Harness) -> None:
    """A 401 error item before any output is dropped; the consumer sees only the retry."""
    harness.script.streams.extend([[ERROR_401], [text("retried"), DONE]])

    items = harness.run(harness.drain)

    assert [text("retried"), DONE] == items
    assert (1, 2) == (harness.script.refreshes, harness.script.stream_opens)


def test_seed_7_chat_stream_401_after_output_does_not_retry(harness: Harness) -> None:
    """A 401 error item after output is forwarded as is: a retry would duplicate output."""
    late_401 = {"type": "error", "message": "401 Unauthorized"}
    harness.script.streams.append([text("partial"), late_401])

    items = harness.run(harness.drain)

    assert [text("partial"), late_401] == items
    assert (0, 1) == (harness.script.refreshes, harness.script.stream_opens)


def test_seed_8_chat_stream_only_one_retry_per_call(harness: Harness) -> None:
    """A second 401 after the retry is forwarded unchanged: one retry per call."""
    still_401 = {"type": "error", "message": "still 401 Unauthorized"}
    harness.script.streams.extend([[ERROR_401], [still_401]])

    items = harness.run(harness.drain)

    assert [still_401] == items
    assert (1, 2) == (harness.script.refreshes, harness.script.stream_opens)


@pytest.mark.parametrize("callers", [2, 50])
def test_seed_9_chat_concurrent_callers_share_refresh(
    mode: str, backend: str, callers: int
) -> None:
    """Callers that all got a 401 on the same credentials cause exactly one refresh."""
    harness = Harness(mode, "async", backend)
    script = harness.script
    script.valid_from = 1
    script.chats.extend([SUCCESS] * callers)
    outcomes: list[object] = []

    async def everyone() -> None:
        import asyncio

        import sniffio
        import trio

        async def one() -> None:
            outcomes.append(await harness.chat())

        if sniffio.current_async_library() == "trio":
            async with trio.open_nursery() as nursery:
                for _ in range(callers):
                    nursery.start_soon(one)
        else:
            await asyncio.gather(*(one() for _ in range(callers)))

    harness.run(everyone)

    assert [SUCCESS] * callers == outcomes
    assert (1, 2 * callers) == (script.refreshes, script.chat_calls)
