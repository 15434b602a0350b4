"""A second allowed job module, imported by ``allowed``."""
from __future__ import annotations


def sibling_job(x):
    return ("sibling", x)
