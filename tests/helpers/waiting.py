"""Waiting for something a real worker, beat or browser does, without sleeping blindly."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 30.0,
             what: str | Callable[[], str] = "", every: float = 0.25) -> T:
    """Poll ``check()`` until it returns something true, and return that; fail after
    ``timeout`` seconds saying ``what`` did not happen (a callable: asked then, so the
    message can tell what was seen instead)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {said}")
        time.sleep(every)
