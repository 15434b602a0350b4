"""The faults worker app (at-least-once preset) with a slow event writer: the background
writer lingers 100 ms per batch (as behind a distant store), so a worker killed right
after acknowledging commands holds many final events in memory unless they are
written before the acknowledgement (tests/reliability/test_events_survive.py)."""
from __future__ import annotations

from .faults_app import app, bgp

__all__ = ["app", "bgp"]

bgp.recorder.linger = 0.1
