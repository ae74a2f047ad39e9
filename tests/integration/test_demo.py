"""The demo, run short and in-process: it must end with every chat right."""

from __future__ import annotations

import io

import pytest

from examples import demo
from refresh_middleware.testing import LoopbackStats

# The openai SDK leaves its inner SSE generators suspended (see test_loopback_server.py).
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|anthropic|httpx2|httpcore2)\.:ResourceWarning"
)


def test_smoke_run_exits_zero():
    """A two-second run with tokens living 0.8 s exits 0 and says OK."""
    out = io.StringIO()
    code = demo.main(2.0, concurrency=8, token_ttl=0.8, out=out)
    assert (0, True) == (code, ": OK" in out.getvalue()), out.getvalue()


async def test_short_run_refreshes_and_loses_no_chat():
    """Tokens expiring during the run are refreshed; no chat fails and no chunk repeats."""
    summary = await demo.run(2.0, concurrency=8, token_ttl=0.8)
    assert (True, 0, 0, True) == (
        summary.tally.refreshes >= 1,
        summary.tally.failed,
        summary.tally.duplicated_chunks,
        summary.retries == summary.stats.unauthorized,
    )


def test_a_failed_chat_makes_the_summary_fail():
    """One failed chat is enough for exit code 1."""
    summary = demo.Summary(1.0, demo.Tally(started=2, completed=1, failed=1), LoopbackStats())
    assert False is summary.ok


def test_plain_summary_names_every_row_and_the_errors():
    """Without a terminal the summary is plain text with every row and the error tally."""
    tally = demo.Tally(started=1, failed=1)
    tally.errors["APIError"] += 1
    out = io.StringIO()
    demo.print_summary(demo.Summary(1.0, tally, LoopbackStats()), out)
    text = out.getvalue()
    assert ([], True) == (
        [
            what.strip()
            for what, _, _ in demo.Summary(1.0, tally, LoopbackStats()).rows()
            if what.strip() not in text
        ],
        "APIError x1" in text,
    )
