"""What more than one section needs: a provider's 401, and a refresh that must never run."""

from __future__ import annotations


class Unauthorized(Exception):  # noqa: N818 - named for what it means
    """A 401, as a provider SDK would raise it."""

    status_code = 401


def refresh_never(stale: object) -> None:
    """The refresh of benchmarks without a 401: running it is a bug in the benchmark."""
    raise RuntimeError("no 401 happens here: nothing should refresh")
