"""The framework how-tos' examples run, and print what the pages say they print.

They live in `docs/examples/frameworks/`, apart from the other examples, because they need the
frameworks group; `tests/test_docs_examples.py` checks the others in the main session.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio

DOCS = Path(__file__).parents[2] / "docs"
EXAMPLES = sorted((DOCS / "examples" / "frameworks").glob("*.py"))

# The SDKs leave async generators of their own to the garbage collector even when used bare
# (checked without refresh_middleware): trio warns about those, not about ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|agents|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning"
)


def load(path):
    spec = importlib.util.spec_from_file_location(f"docs_framework_example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
async def test_example_prints_what_the_docs_show(path, capsys):
    """Each example's `main` (asyncio in a thread of its own) prints exactly its `.out` file."""
    await trio.to_thread.run_sync(load(path).main)
    assert path.with_suffix(".out").read_text() == capsys.readouterr().out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_is_shown_on_a_page(path):
    """Each example is included by some page: no example is tested but never shown."""
    pages = "".join(page.read_text() for page in DOCS.rglob("*.md") if "_build" not in page.parts)
    assert f"examples/frameworks/{path.name}" in pages
