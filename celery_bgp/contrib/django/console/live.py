"""Live refresh endpoints of the job list and a job's page (to be built)."""
from __future__ import annotations

from typing import Any


def urls(model_admin: Any) -> list[Any]:
    return []
