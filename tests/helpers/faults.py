"""The fault-injection table: each scenario records dispatched/processed/duplicated/lost.

Hostile-message scenarios also count ``stuck``: bad messages neither processed nor
dead-lettered, still held in the queue (must be 0); after-ack kill scenarios count
commands whose latest event is not final once every message was handled (a status
reader would show them in flight forever). ``broker`` names the transport, if set.
"""
from __future__ import annotations

from collections.abc import Iterable

RESULTS: list[dict] = []


def record(scenario: str, expected: Iterable[str], seen: list[str],
           stuck: int | None = None, broker: str | None = None) -> dict:
    """Count one scenario's outcome from the ids it sent and the ids handlers saw."""
    expected = set(expected)
    unique = set(seen)
    row = {"scenario": scenario, "dispatched": len(expected),
           "processed": len(unique & expected), "duplicated": len(seen) - len(unique),
           "lost": len(expected - unique), "stuck": stuck, "broker": broker}
    RESULTS.append(row)
    return row


def summary_lines() -> list[str]:
    width = max([46, *(len(row["scenario"]) + 2 for row in RESULTS)])
    lines = [f"{'scenario':<{width}}{'broker':>10}{'dispatched':>11}{'processed':>11}"
             f"{'duplicated':>11}{'lost':>6}{'stuck':>7}"]
    for row in RESULTS:
        stuck = "-" if row.get("stuck") is None else row["stuck"]
        lines.append(f"{row['scenario']:<{width}}{row.get('broker') or '-':>10}"
                     f"{row['dispatched']:>11}{row['processed']:>11}"
                     f"{row['duplicated']:>11}{row['lost']:>6}{stuck:>7}")
    return lines
