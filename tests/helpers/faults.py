"""The fault-injection table: each scenario records dispatched/processed/duplicated/lost."""
from __future__ import annotations

from collections.abc import Iterable

RESULTS: list[dict] = []


def record(scenario: str, expected: Iterable[str], seen: list[str]) -> dict:
    """Count one scenario's outcome from the ids it sent and the ids handlers saw."""
    expected = set(expected)
    unique = set(seen)
    row = {"scenario": scenario, "dispatched": len(expected),
           "processed": len(unique & expected), "duplicated": len(seen) - len(unique),
           "lost": len(expected - unique)}
    RESULTS.append(row)
    return row


def summary_lines() -> list[str]:
    lines = [f"{'scenario':<46}{'dispatched':>11}{'processed':>11}{'duplicated':>11}"
             f"{'lost':>6}"]
    for row in RESULTS:
        lines.append(f"{row['scenario']:<46}{row['dispatched']:>11}{row['processed']:>11}"
                     f"{row['duplicated']:>11}{row['lost']:>6}")
    return lines
