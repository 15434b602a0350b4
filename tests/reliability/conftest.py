"""Prints the fault-injection table (dispatched / processed / duplicated / lost)."""
from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from tests.reliability.test_faults import RESULTS

    if not RESULTS:
        return
    terminalreporter.section("celery-bgp fault injection")
    header = f"{'scenario':<44}{'dispatched':>11}{'processed':>11}{'duplicated':>11}{'lost':>6}"
    terminalreporter.write_line(header)
    for row in RESULTS:
        terminalreporter.write_line(
            f"{row['scenario']:<44}{row['dispatched']:>11}{row['processed']:>11}"
            f"{row['duplicated']:>11}{row['lost']:>6}")
