"""The documentation's examples run, and print what the pages say they print."""

from __future__ import annotations

import gc
import importlib.util
import inspect
import re
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
README = ROOT / "README.md"
README_SNIPPETS = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.DOTALL | re.MULTILINE)

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


@pytest.mark.parametrize(
    "snippet", README_SNIPPETS, ids=[f"snippet-{n}" for n in range(len(README_SNIPPETS))]
)
def test_readme_snippet_runs_as_shown(snippet: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each python block of the README runs as it is, alone, against the loopback server: its
    imports are complete, it names nothing it does not define, and its 401 is retried."""
    exec(compile(snippet, str(README), "exec"), {"__name__": "__readme__"})  # noqa: S102

    assert "chunk-0 chunk-1 chunk-2 \n" == capsys.readouterr().out


def test_readme_has_python_snippets_to_run() -> None:
    """The README's snippets are found: the test above cannot pass by finding none."""
    assert 3 == len(README_SNIPPETS)


def test_no_page_tells_to_install_from_pypi_where_nothing_is_published() -> None:
    """The package is not on PyPI: README and docs install from a clone or a git URL."""
    pages = [README, *(page for page in DOCS.rglob("*.md") if "_build" not in page.parts)]
    from_pypi = re.compile(r"pip install \"?refresh-middleware(\[[a-z,]+\])?+\"?(?! @)")

    assert [] == [page.name for page in pages if from_pypi.search(page.read_text())]
