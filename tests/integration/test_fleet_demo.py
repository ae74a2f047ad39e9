"""The fleet demo, run short: refreshing alone fails the fleet, a shared store does not."""

from __future__ import annotations

import io
import shutil

import pytest

from examples import fleet
from examples.postgres_server import binaries


def test_a_short_run_shows_the_failure_and_the_fix():
    """Per process: reuse and failed chats; FileStore: one grant per expiry, none failed."""
    out = io.StringIO()
    code = fleet.main(workers=3, tasks=3, seconds=2.5, every=1.0, out=out)
    text = out.getvalue()
    assert (0, 2) == (code, text.count("as expected")), text


@pytest.mark.skipif(binaries() is None, reason="PostgreSQL's server binaries are not installed")
@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="a Redis Cluster needs redis-cli")
def test_a_local_postgres_and_a_local_cluster_each_keep_the_fleet_signed_in(capsys):
    """--postgres local and --redis cluster start their servers and run as stores: as expected."""
    argv = ["--workers", "3", "--tasks", "3", "--seconds", "2.5", "--every", "1"]
    code = fleet.cli([*argv, "--postgres", "local", "--redis", "cluster"])
    text = capsys.readouterr().out
    verdict = text.splitlines()[-3].split()
    assert (0, ["verdict", *["as", "expected"] * 4]) == (code, verdict), text


def test_the_command_line_names_the_stores_to_run():
    """--redis repeats, each a URL, 'local' or 'cluster'; --postgres is a DSN or 'local'."""
    seen = {}

    def main(**options):
        seen.update(options)
        return 0

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fleet, "main", main)
        fleet.cli(["--redis", "cluster", "--redis", "redis://h:1/0", "--postgres", "local"])
    assert (["cluster", "redis://h:1/0"], "local") == (seen["redis"], seen["postgres"])


def test_the_table_puts_the_modes_side_by_side_in_aligned_columns():
    """Each outcome is a column, each count a row right-aligned under its mode, a verdict last."""
    lone = fleet.Outcome("per process", expiries=2, chats=5, failed=3, reuse_detections=1)
    shared = fleet.Outcome("RedisStore cluster", expiries=2, chats=9, refresh_grants=2)
    lines = fleet.table([lone, shared]).splitlines()
    assert (
        "                  per process  RedisStore cluster  note",
        "----------------  -----------  ------------------  ------------",
        "failed chats                3                   0  0 for a fleet",
        "verdict           as expected         as expected",
    ) == (lines[0], lines[1][:63], lines[4], lines[-1])


def test_the_per_process_failures_are_explained_in_one_line():
    """The line under the table names reuse and the revoked family as the cause of the failures."""
    lone = fleet.Outcome("per process", failed=7, reuse_detections=1, families_revoked=1)
    assert (
        "why per process fails: the workers refreshed alone with one refresh token, its reuse "
        "got the family revoked (1x), and every worker was logged out (7 failed chats)."
    ) == fleet.explanation([lone, fleet.Outcome("FileStore")])


def test_without_a_per_process_run_nothing_is_explained():
    """Only the per-process run has failures to explain."""
    assert "" == fleet.explanation([fleet.Outcome("FileStore")])


def test_a_fleet_with_a_failed_chat_is_not_as_expected():
    """One failed chat in a store mode fails the demo's verdict."""
    assert False is fleet.Outcome("FileStore", expiries=1, chats=9, failed=1, refresh_grants=1).ok
