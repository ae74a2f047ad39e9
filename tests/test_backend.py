"""The backend module's cancellation mark, on each event loop, without a server to be slow."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import trio

from refresh_middleware._backend import cancellations, checkpoint_if_cancelled


def test_asyncio_raises_a_cancellation_that_was_swallowed_since_the_mark():
    """Under asyncio, a cancellation caught and replaced after the mark is raised again."""

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        mark = cancellations()
        task.cancel()
        # Swallowed, as a library that reports it as a failed connection does.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await checkpoint_if_cancelled(mark)
        task.uncancel()

    asyncio.run(main())


def test_asyncio_goes_on_when_nothing_was_cancelled_since_the_mark():
    """Under asyncio, with no cancellation requested since the mark, the checkpoint returns."""

    async def main() -> int:
        mark = cancellations()
        await checkpoint_if_cancelled(mark)
        return cancellations() - mark

    assert asyncio.run(main()) == 0


async def test_trio_raises_a_cancellation_of_its_scope():
    """Under trio, a cancelled scope's checkpoint raises, as any trio checkpoint does."""
    with trio.CancelScope() as scope:
        mark = cancellations()
        scope.cancel()
        await checkpoint_if_cancelled(mark)
        pytest.fail("the checkpoint did not raise")  # pragma: no cover
    assert scope.cancelled_caught
