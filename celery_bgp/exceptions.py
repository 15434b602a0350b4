"""Exceptions raised by celery-bgp: one base class so callers can catch them all."""
from __future__ import annotations


class BGPError(Exception):
    """Base class of every error celery-bgp raises on purpose."""


class ImproperlyConfigured(BGPError):
    """A setting, URL or registration does not make sense."""


class HandlerAlreadyRegistered(ImproperlyConfigured):
    """A command type already has a different handler."""


class NotACommand(BGPError, TypeError):
    """What was passed as a command, or as a command type, is not one.

    The class where an instance is expected (``bgp.dispatch(ResizeImage)``), an
    instance where a class is expected, an object that is not a command (a ``dict``),
    a class without ``id`` and ``timestamp``, a subclass that forgot ``@dataclass``.
    The message names the fix. (Before, some of these were ``ImproperlyConfigured``,
    which is now kept for configuration: settings, URLs, missing extras.)
    """


class NotAHandler(BGPError, TypeError):
    """What was registered as a handler is not one, or does not say which command it handles.

    A handler is a ``CommandHandler[T]`` subclass or a function (marked with
    ``@handler(T)`` / ``@bgp.handler(T)``, or registered with ``command_type=T``).
    The message names the fix.
    """


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
