"""Timing discipline and the printed tables, shared by every section of the benchmark."""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager

import trio

MET, MISSED = "PASS", "MISS"


@dataclasses.dataclass(frozen=True)
class Config:
    """How hard each section works; `--smoke` shrinks everything to seconds."""

    sdk_chunks: int = 500  # text chunks a stream; the role, finish and usage chunks come on top
    sdk_streams: int = 4  # streams a round
    sdk_calls: int = 50  # calls a round
    sdk_rounds: int = 7
    replay_streams: int = 20
    replay_calls: int = 10_000
    replay_rounds: int = 15
    herd_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    herd_judged: int = 10_000  # the herd size held to the target
    herd_rounds: int = 5
    side_calls: int = 100_000
    side_slow_calls: int = 10_000  # tenacity and stamina: a hundred times slower a call
    side_items: int = 2_000  # items a stream
    side_streams: int = 20
    side_rounds: int = 9
    fleet_renewals: int = 200  # fleet refreshes a round, one after another
    fleet_rounds: int = 5


SMOKE = Config(
    sdk_chunks=20,
    sdk_streams=2,
    sdk_calls=3,
    sdk_rounds=2,
    replay_streams=2,
    replay_calls=50,
    replay_rounds=2,
    herd_sizes=(100, 1_000),
    herd_judged=1_000,
    herd_rounds=1,
    side_calls=1_000,
    side_slow_calls=100,
    side_items=100,
    side_streams=2,
    side_rounds=2,
    fleet_renewals=5,
    fleet_rounds=1,
)


@contextmanager
def quiet() -> Iterator[None]:
    """No garbage collection while a figure is taken: a collection is noise, not overhead."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def best_of(variants: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """The lowest figure each variant gives over `rounds`, the variants interleaved.

    Each variant runs a fixed amount of work and returns its figure (nanoseconds per unit of
    work, or seconds of wall time). One run of each first warms caches, specialisation and lazy
    imports. Within a round the variants run one after another, and the starting one moves on
    each round, so a noisy neighbour hurts them all alike and none is always first after a
    collection. The lowest figure is the one least disturbed by the rest of the machine.
    """
    names = list(variants)
    for name in names:
        variants[name]()
    best = dict.fromkeys(names, math.inf)
    for round_index in range(rounds):
        start = round_index % len(names)
        for name in names[start:] + names[:start]:
            with quiet():
                figure = variants[name]()
            best[name] = min(best[name], figure)
    return best


def timed(work: Callable[[], object], units: int) -> Callable[[], float]:
    """A run of `work` as a figure: nanoseconds of this process's CPU per unit of it.

    CPU time, not wall time: on a loaded machine a run longer than the scheduler's time slice
    waits for the CPU while a short one does not, so wall time punished the slower variant
    many times over (a run of the floor fits in one slice, a run of ours did not).
    """

    def run() -> float:
        start = time.process_time_ns()
        work()
        return (time.process_time_ns() - start) / units

    return run


def timed_async(work: Callable[[], Awaitable[object]], units: int) -> Callable[[], float]:
    """As `timed`, for async work: each run in a trio run of its own, timed inside it."""

    async def run() -> float:
        start = time.process_time_ns()
        await work()
        return (time.process_time_ns() - start) / units

    return lambda: trio.run(run)


def ns(value: float) -> str:
    """Nanoseconds, as a table cell."""
    return f"{value:,.0f} ns"


def added_ns(value: float) -> str:
    """A difference in nanoseconds, signed."""
    return f"{value:+,.0f} ns"


def us(value_ns: float) -> str:
    """Nanoseconds shown as microseconds."""
    return f"{value_ns / 1e3:,.1f} µs"


def wall(value_s: float) -> str:
    """Seconds of wall time, as milliseconds below one second."""
    return f"{value_s:.2f} s" if value_s >= 1 else f"{value_s * 1e3:.1f} ms"


def verdict(met: bool) -> str:
    return MET if met else MISSED


@dataclasses.dataclass
class Table:
    """One section's results: a title, its columns, and a row of cells per measure."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, *cells: str) -> None:
        """Add a row, and show it at once so a long run shows progress."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(cells)
        print("  " + " | ".join(cell for cell in cells if cell), flush=True)

    def missed(self) -> list[str]:
        """The first cell of every row whose verdict is a miss."""
        return [row[0] for row in self.rows if MISSED in row]

    def markdown(self) -> str:
        """The table in Markdown, as docs/performance.md quotes it."""
        lines = [
            f"**{self.title}**",
            "",
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += [f"\n{note}" for note in self.notes]
        return "\n".join(lines)
