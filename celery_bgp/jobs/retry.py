"""Retry policies: how many attempts, how long between them, which exceptions.

The default follows HiveMind: up to 10 attempts, delays growing from 30 s by 30 s
up to 5 minutes. A policy is stored with the job (by exception *names*, matched
against the raised exception's class hierarchy), so it survives the trip to a
worker without pickling anything.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from ..exceptions import ImproperlyConfigured

__all__ = ["DEFAULT_DELAYS", "RetryPolicy"]

DEFAULT_DELAYS = tuple(float(s) for s in range(30, 301, 30))


def _names(kinds: Iterable[type[BaseException] | str]) -> tuple[str, ...]:
    out = []
    for kind in kinds:
        if isinstance(kind, str):
            out.append(kind)
        elif isinstance(kind, type) and issubclass(kind, BaseException):
            out.append(f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins."))
        else:
            raise ImproperlyConfigured(f"{kind!r} is not an exception class")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts the first run; ``delays[i]`` is the wait before attempt i+2."""

    max_attempts: int = 10
    delays: Sequence[float] = DEFAULT_DELAYS
    retry_on: Sequence[type[BaseException] | str] = (Exception,)
    fatal: Sequence[type[BaseException] | str] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ImproperlyConfigured("max_attempts must be at least 1")
        if any(d < 0 for d in self.delays):
            raise ImproperlyConfigured("retry delays cannot be negative")
        object.__setattr__(self, "delays", tuple(float(d) for d in self.delays) or (0.0,))
        object.__setattr__(self, "retry_on", _names(self.retry_on))
        object.__setattr__(self, "fatal", _names(self.fatal))

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1-based)."""
        return self.delays[min(attempt - 1, len(self.delays) - 1)]

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """True if ``exc`` on ``attempt`` deserves another attempt."""
        if attempt >= self.max_attempts:
            return False
        names = _hierarchy(exc)
        if any(name in names for name in self.fatal):
            return False
        return any(name in names for name in self.retry_on)

    def to_dict(self) -> dict[str, Any]:
        return {"max_attempts": self.max_attempts, "delays": list(self.delays),
                "retry_on": list(self.retry_on), "fatal": list(self.fatal)}

    @classmethod
    def from_value(cls, value: Any) -> RetryPolicy:
        """Accept a policy, a dict (settings, stored options), or an int of attempts."""
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(max_attempts=value)
        if isinstance(value, dict):
            unknown = set(value) - {"max_attempts", "delays", "retry_on", "fatal"}
            if unknown:
                raise ImproperlyConfigured(f"unknown retry policy keys {sorted(unknown)}")
            return cls(**value)
        raise ImproperlyConfigured(f"a retry policy is a RetryPolicy, dict or int, not {value!r}")


def _hierarchy(exc: BaseException) -> set[str]:
    names = set()
    for kind in type(exc).__mro__:
        full = f"{kind.__module__}.{kind.__qualname__}"
        names.add(full)
        names.add(full.removeprefix("builtins."))
        names.add(kind.__qualname__)
    return names
