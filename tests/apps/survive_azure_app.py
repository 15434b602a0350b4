"""The Azure worker app (acks_late) with the slow event writer of ``survive_app``."""
from __future__ import annotations

from .azure_app import app, bgp

__all__ = ["app", "bgp"]

bgp.recorder.linger = 0.1
