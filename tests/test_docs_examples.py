"""The documentation's examples run, and print what the pages say they print."""

from __future__ import annotations

import gc
import importlib.util
import inspect
from pathlib import Path

import pytest
import trio

DOCS = Path(__file__).parent.parent / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))

# The SDKs and httpx leave their own inner async generators to the garbage collector when a
# stream ends early or raises, and trio warns when it collects them. Those generators are theirs,
# not ours (ours are closed explicitly), so only theirs are let through.
SDKS = "openai|anthropic|google|httpx|httpx2|httpcore|httpcore2"
pytestmark = pytest.mark.filterwarnings(rf"ignore:Async generator '({SDKS})\.:ResourceWarning")


@pytest.fixture(autouse=True)
def _collected():
    """Each example starts with the SDK garbage of the ones before it collected: abandoned SDK
    generators finalized later, from another thread, can trip trio's finalizer."""
    gc.collect()


def load(path):
    spec = importlib.util.spec_from_file_location(f"docs_example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
async def test_example_prints_what_the_docs_show(path, capsys):
    """Each example's `main` runs and prints exactly its `.out` file, which the pages include."""
    main = load(path).main
    if inspect.iscoroutinefunction(main):
        await main()
    else:
        # Sync examples may start their own event loops, which they cannot do inside this one.
        await trio.to_thread.run_sync(main)
    assert (path.with_suffix(".out")).read_text() == capsys.readouterr().out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_is_shown_on_a_page(path):
    """Each example is included by some page: no example is tested but never shown."""
    pages = "".join(page.read_text() for page in DOCS.rglob("*.md") if "_build" not in page.parts)
    assert f"examples/{path.name}" in pages
