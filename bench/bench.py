"""The benchmark of refresh_middleware: what the wrapper adds to what users feel.

Sections (`--only` picks some):

- ``noop``: what a no-op async call through the proxy adds (target: at most 1 µs), beside the
  floor of one forwarding coroutine (`noop`);
- ``share``: the share the wrapper adds to the real openai SDK's client CPU, per streamed chunk
  (target: at most 0.5%) and per call (at most 0.1%), against the floor of one forwarding
  layer (`sdk_share`);
- ``herd``: many callers failing with 401 on one expired credential, ours against the least a
  single-flight wrapper can do (target: at most 2 times it for 10,000 trio callers, with
  exactly one refresh; the floor's own figures allow no less than about 1.9) (`herd`);
- ``side``: nanoseconds per call and per item, side by side with tenacity and stamina, as
  information (`side_by_side`);
- ``fleet``: what a fleet refresh (`refresh_middleware.shared`) adds, on a file store, a
  loopback redis-server and a loopback PostgreSQL, as information (`fleet`).

``python bench/bench.py`` is the full run (minutes); ``--smoke`` runs every section tiny, in
seconds, so CI keeps the script from rotting: its figures mean nothing. Only the public API is
used, so the benchmark keeps working while the internals change. This is a script, never a
test: timings on a shared machine are too noisy to fail a build on. Every judged figure is taken
beside its floor in the same process, the variants interleaved, best of several rounds, and
printed as target, measured and floor with PASS or MISS.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import fleet
import herd
import noop
import sdk_share
import side_by_side
import wrapt
from measure import SMOKE, Config, Table

SECTIONS: dict[str, Callable[[Config], list[Table]]] = {
    "noop": noop.run,
    "share": sdk_share.run,
    "herd": herd.run,
    "side": side_by_side.run,
    "fleet": fleet.run,
}


def wrapt_extension() -> bool:
    """Whether wrapt's proxy is its C extension's: without it a proxy costs microseconds."""
    return wrapt.BaseObjectProxy.__module__ == "_wrappers"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def versions(names: tuple[str, ...]) -> str:
    """The versions of those of `names` that are installed."""
    found = []
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{name} {version(name)}")
    return ", ".join(found)


def machine() -> list[str]:
    # openai 3 sends its requests with httpx2, earlier versions with httpx.
    packages = ("refresh-middleware", "trio", "openai", "httpx", "httpx2", "tenacity", "stamina")
    extension = "active" if wrapt_extension() else "NOT active"
    proxy_from = wrapt.BaseObjectProxy.__module__
    return [
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"cores: {os.cpu_count()} ({cpu_model()})",
        f"python: {platform.python_implementation()} {platform.python_version()} ({sys.platform})",
        f"wrapt {version('wrapt')} (C extension {extension}: BaseObjectProxy from {proxy_from!r})",
        versions(packages),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every section, tiny (seconds; CI)")
    parser.add_argument(
        "--only", nargs="+", choices=list(SECTIONS), metavar="SECTION", help=", ".join(SECTIONS)
    )
    args = parser.parse_args()
    config = SMOKE if args.smoke else Config()
    header = machine()
    print("\n".join(header))
    load_before = load()
    print(load_before)
    if not wrapt_extension():
        print("WARNING: wrapt's C extension is not active: every proxy figure is far too slow")
    if args.smoke:
        print("smoke run: every section at tiny sizes; the figures mean nothing")
    tables = [
        table
        for name, run in SECTIONS.items()
        if args.only is None or name in args.only
        for table in run(config)
    ]
    print("\n" + "\n".join(f"- {line}" for line in header))
    command = " ".join(["python bench/bench.py", *sys.argv[1:]])
    print(f"- command: `{command}`")
    print(f"- {load_before} at the start; {load()} at the end")
    for table in tables:
        print(f"\n{table.markdown()}")
    missed = [f"{table.title.split(':')[0]}: {row}" for table in tables for row in table.missed()]
    print(f"\n{len(missed)} target(s) missed" + "".join(f"\n- {row}" for row in missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
