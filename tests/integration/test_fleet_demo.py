"""The fleet demo, run short: refreshing alone fails the fleet, a shared store does not."""

from __future__ import annotations

import io

from examples import fleet


def test_a_short_run_shows_the_failure_and_the_fix():
    """Per process: reuse and failed chats; FileStore: one grant per expiry, none failed."""
    out = io.StringIO()
    code = fleet.main(workers=3, tasks=3, seconds=2.5, every=1.0, out=out)
    text = out.getvalue()
    assert (0, 2) == (code, text.count("as expected")), text


def test_the_table_puts_the_modes_side_by_side():
    """Each outcome is a column, each count a row, with a verdict at the bottom."""
    lone = fleet.Outcome("per process", expiries=2, chats=5, failed=3, reuse_detections=1)
    shared = fleet.Outcome("FileStore", expiries=2, chats=9, refresh_grants=2)
    lines = fleet.table([lone, shared]).splitlines()
    assert (
        "|  | per process | FileStore | note |",
        "| failed chats | 3 | 0 | 0 for a fleet |",
        "| verdict | as expected | as expected |  |",
    ) == (lines[0], lines[4], lines[-1])


def test_a_fleet_with_a_failed_chat_is_not_as_expected():
    """One failed chat in a store mode fails the demo's verdict."""
    assert False is fleet.Outcome("FileStore", expiries=1, chats=9, failed=1, refresh_grants=1).ok
