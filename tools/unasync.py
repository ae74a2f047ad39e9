"""Write the sync drivers from the async ones, so the retry policy is written once.

In each module listed below, the code between `# unasync source begins` and `# unasync source
ends` is the source; the code between `# unasync output begins` and `# unasync output ends` is
rewritten from it by plain token replacements (`async def` -> `def`, `await x` -> `x`, `_async` ->
`_sync`, ...) and then formatted by ruff. Lines marked `# async only` are left out.

    python tools/unasync.py          rewrite the generated blocks
    python tools/unasync.py --check  fail when a generated block is out of date (nox -s lint)

Either run fails when a replacement matches nothing in any source block: a rule that no longer
applies is dead weight that hides which ones matter (httpcore's unasync checks the same).

This is httpcore's approach, shrunk to blocks inside modules: each module keeps one concern,
and its async and sync drivers stand side by side.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "refresh_middleware"
MODULES = ("_flight.py", "_refresh.py", "_retry.py", "_streams.py")

BEGIN, END = "# unasync source begins\n", "# unasync source ends\n"
GENERATED, GENERATED_END = "# unasync output begins\n", "# unasync output ends\n"
HEADER = "# Written by tools/unasync.py from the source above: edit that, then run it.\n"

# Applied in order, each to every line of the source block.
REPLACEMENTS = (
    (r"\basync def ", "def "),
    (r"\bawait ", ""),
    (r"\b(\w+)_async\b", r"\1_sync"),
    (r"\bAsyncGenerator\[(.+), None\]", r"Generator[\1]"),
    (r"\bAwaitable\[(\w+)\]", r"\1"),
    (r"\bAsyncStreamView\b", "SyncStreamView"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__anext__\b", "__next__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\baclose\b", "close"),
)


def unasync(source: str, used: set[str] | None = None) -> str:
    """The sync twin of an async block of code; the patterns that matched are added to `used`."""
    lines = []
    for line in source.splitlines(keepends=True):
        if "# async only" in line:
            continue
        text = line
        for pattern, replacement in REPLACEMENTS:
            text, count = re.subn(pattern, replacement, text)
            if count and used is not None:
                used.add(pattern)
        lines.append(text)
    return "".join(lines)


def _format(code: str) -> str:
    """`code` as ruff formats it (with the project's settings)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", dir=PACKAGE, delete=False) as file:
        file.write(code)
    path = Path(file.name)
    try:
        # The project's own formatter, on the project's own file: no untrusted input here.
        subprocess.run(["ruff", "format", "--quiet", str(path)], check=True)  # noqa: S603, S607
        return path.read_text()
    finally:
        path.unlink()


def regenerated(text: str, name: str, used: set[str] | None = None) -> str:
    """The module `text` with its generated block rewritten from its source block."""
    try:
        start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
        head, tail = text.index(GENERATED) + len(GENERATED), text.index(GENERATED_END)
    except ValueError:
        sys.exit(f"{name}: the unasync markers are missing")
    block = HEADER + "\n\n" + unasync(text[start:stop], used).strip("\n") + "\n\n\n"
    return _format(text[:head] + block + text[tail:])


def main() -> int:
    """Rewrite (or with --check, check) every generated block; 1 when one is out of date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    check = parser.parse_args().check
    stale = []
    used: set[str] = set()
    for name in MODULES:
        path = PACKAGE / name
        text = path.read_text()
        fresh = regenerated(text, name, used)
        if fresh != text:
            stale.append(name)
            if not check:
                path.write_text(fresh)
    unused = [pattern for pattern, _ in REPLACEMENTS if pattern not in used]
    if unused:
        sys.stderr.write(f"replacements that match nothing: {', '.join(unused)}; remove them\n")
    if check and stale:
        sys.stderr.write(f"out of date: {', '.join(stale)}; run python tools/unasync.py\n")
        return 1
    return 1 if unused else 0


if __name__ == "__main__":
    sys.exit(main())
