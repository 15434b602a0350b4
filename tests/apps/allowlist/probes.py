"""What ran while a job name was being resolved (it must stay empty)."""
from __future__ import annotations

#: One entry per call of a ``__getattr__``, property or descriptor of the fixtures.
TOUCHED: list[str] = []


def touched(what: str):
    """Record ``what`` ran and hand back something dangerous, as an attacker would hope."""
    import os

    TOUCHED.append(what)
    return os.system
