"""Development sessions: `nox -t check` runs what CI runs, `nox -s demo` the demo."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
VERSIONS = ("3.11", "3.12", "3.13", "3.14")
# Nothing is downloaded: sessions use the interpreters the machine has.
os.environ["UV_PYTHON_DOWNLOADS"] = "never"


def _pyenv_bins() -> list[str]:
    """Folders of pyenv-installed Pythons: their shims fail unless a version is selected."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = {}
    for version in VERSIONS:
        for folder in sorted(root.glob(f"{version}.*/bin"), reverse=True):
            if (folder / f"python{version}").exists():
                found.setdefault(version, str(folder))
    return list(found.values())


os.environ["PATH"] = os.pathsep.join([*_pyenv_bins(), os.environ.get("PATH", "")])
# Every Python from 3.11 up that this machine has; CI machines have 3.11 to 3.13.
PYTHONS = [v for v in VERSIONS if shutil.which(f"python{v}")] or ["3"]


def install(session: nox.Session, *groups: str) -> None:
    deps = [dep for group in groups for dep in nox.project.dependency_groups(PYPROJECT, group)]
    session.install("-e", ".", *deps)


@nox.session(python=PYTHONS, tags=["check"])
def tests(session: nox.Session) -> None:
    """The test suite with branch coverage; 100% is required."""
    install(session, "tests")
    session.run("coverage", "erase")
    # tests/frameworks needs the heavy framework dependencies: the integrations session runs it.
    session.run("coverage", "run", "-m", "pytest", "--ignore=tests/frameworks", *session.posargs)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report")


@nox.session(python=PYTHONS[0], tags=["check"])
def integrations(session: nox.Session) -> None:
    """SDKs and frameworks as users hold them (pydantic-ai, LangChain, ...), over loopback."""
    install(session, "frameworks")
    session.run("pytest", "tests/frameworks", *session.posargs)


@nox.session(name="integrations-openai2", python=PYTHONS[0], tags=["check"])
def integrations_openai2(session: nox.Session) -> None:
    """Frameworks that pin openai<3 (LlamaIndex), and the openai SDK on openai 2 (httpx)."""
    install(session, "frameworks-openai2")
    session.run(
        "pytest",
        "tests/frameworks/test_llamaindex.py",
        "tests/frameworks/test_openai_client.py",
        *session.posargs,
    )


@nox.session(python=PYTHONS[0], tags=["check"])
def lint(session: nox.Session) -> None:
    """Ruff, for lint and format; the generated sync drivers match their async source."""
    install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("python", "tools/unasync.py", "--check")
    session.run("lint-imports")


@nox.session(python=PYTHONS[0], tags=["check"])
def typecheck(session: nox.Session) -> None:
    """mypy strict and pyright strict, on the package and on tests/typing."""
    install(session, "typecheck")
    session.run("mypy")
    session.run("pyright")


@nox.session(python=PYTHONS[0], tags=["check"])
def docs(session: nox.Session) -> None:
    """The documentation: HTML with warnings as errors, then every example in it as a doctest."""
    if not shutil.which("dot"):
        session.error("Graphviz's `dot` draws the diagrams: apt-get install graphviz")
    install(session, "docs")
    strict = ("-W", "--keep-going", "-q")
    session.run("sphinx-build", *strict, "-b", "html", "docs", "docs/_build/html")
    session.run("sphinx-build", *strict, "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session(python=PYTHONS[0])
def bench(session: nox.Session) -> None:
    """The benchmark (a few minutes): the wrapper's share of the openai SDK's CPU, the herd."""
    install(session, "bench")
    session.run("python", "bench/bench.py", *session.posargs)


@nox.session(name="bench-smoke", python=PYTHONS[0], tags=["check"])
def bench_smoke(session: nox.Session) -> None:
    """Every section of the benchmark, tiny, so it cannot rot."""
    install(session, "bench")
    session.run("python", "bench/bench.py", "--smoke")


@nox.session(python=PYTHONS[0])
def demo(session: nox.Session) -> None:
    """The main job: concurrent streaming chats that survive expiring tokens, on loopback."""
    install(session, "demo")
    session.run("python", "examples/demo.py", *session.posargs)


@nox.session(name="demo-fleet", python=PYTHONS[0])
def demo_fleet(session: nox.Session) -> None:
    """Worker processes on one rotating credential: alone (logged out), then as a fleet."""
    install(session, "demo")
    session.run("python", "examples/fleet.py", *session.posargs)
