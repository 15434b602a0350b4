"""celery-bgp: typed background commands and tracked jobs on Celery.

Commands (from nventive BackgroundProcessing) map to real Celery tasks; Celery
signals feed an event repository that tells where each command is in its life.
"""
from __future__ import annotations

from .commands import BackgroundCommand, Command, command_name, new_command_id
from .daemons import DaemonContext
from .events import CommandEvent, ErrorInfo, EventRepository, EventStatus
from .exceptions import (
    BGPError,
    HandlerAlreadyRegistered,
    ImproperlyConfigured,
    InvalidCommand,
    MissingExtra,
    NoHandlerRegistered,
    NotACommand,
    NotAHandler,
    PayloadTooLarge,
)
from .handlers import CommandHandler, handler
from .pipeline import DispatchContext, ProcessContext
from .priority import Priority
from .processing import BackgroundProcessing
from .transport import TRANSPORT_ALIASES as _TRANSPORT_ALIASES  # noqa: F401 - registers azurequeue://

__version__ = "0.1.0"

__all__ = [
    "BGPError",
    "BackgroundCommand",
    "BackgroundProcessing",
    "Command",
    "CommandEvent",
    "CommandHandler",
    "DaemonContext",
    "DispatchContext",
    "ErrorInfo",
    "EventRepository",
    "EventStatus",
    "HandlerAlreadyRegistered",
    "ImproperlyConfigured",
    "InvalidCommand",
    "MissingExtra",
    "NoHandlerRegistered",
    "NotACommand",
    "NotAHandler",
    "PayloadTooLarge",
    "Priority",
    "ProcessContext",
    "command_name",
    "handler",
    "new_command_id",
]
