"""Exceptions raised by celery-bgp: one base class so callers can catch them all."""
from __future__ import annotations


class BGPError(Exception):
    """Base class of every error celery-bgp raises on purpose."""


class ImproperlyConfigured(BGPError):
    """A setting, URL or registration does not make sense."""


class HandlerAlreadyRegistered(ImproperlyConfigured):
    """A command type already has a different handler."""


class NoHandlerRegistered(BGPError, LookupError):
    """No handler is registered for a command type in this process."""


class InvalidCommand(BGPError, ValueError):
    """A command payload cannot be turned into its registered command type.

    Raised for unknown types, missing or mistyped fields, non-JSON payloads and
    payloads above the size limit. The message says which, and never contains the
    payload itself (it may hold secrets).
    """


class PayloadTooLarge(InvalidCommand):
    """An encoded command is larger than ``bgp_max_payload_bytes``."""

    def __init__(self, size: int, limit: int, what: str = "command payload") -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} is {size} bytes once encoded, above the limit of {limit} bytes "
            "(raise bgp_max_payload_bytes, or pass a reference instead of the data)"
        )


class MissingExtra(BGPError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
