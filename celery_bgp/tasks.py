"""The Celery task class behind every command type.

Each registered command type gets one real task named ``<prefix>.<command name>``,
so routing, rate limits, retries, Flower and ``celery inspect`` see commands as
ordinary tasks. The task body decodes the JSON payload into the command type bound
to the task (never a type named by the message) and hands it to the processor.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Task

if TYPE_CHECKING:
    from .processing import BackgroundProcessing

__all__ = ["CommandTask", "make_task_run"]


class CommandTask(Task):
    """Base class of command tasks; JSON only, command type fixed per task."""

    #: The command type this task decodes; set per generated task class.
    command_type: type
    #: The owning :class:`BackgroundProcessing`.
    bgp: BackgroundProcessing

    serializer = "json"
    typing = False
    #: Refuses non-JSON messages before anything decodes them (see celery_bgp.worker).
    Strategy = "celery_bgp.worker:json_only_strategy"

    def __repr__(self) -> str:
        return f"<@command task {self.name}>"


def make_task_run(bgp: BackgroundProcessing, command_type: type, name: str):
    """Build the bound ``run`` function of a command task."""

    def run(task: CommandTask, payload: Any = None, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            # A chain without immutable signatures prepends the parent's result.
            from .exceptions import InvalidCommand

            bgp.reject_invalid(
                task,
                InvalidCommand(
                    f"{name} takes exactly one payload argument; got "
                    f"{1 + len(args)} positional and {len(kwargs)} keyword arguments "
                    "(use bgp.signature(), which is immutable, in chains)"
                ),
            )
        return bgp.run_task(task, payload)

    run.__name__ = command_type.__name__
    run.__qualname__ = command_type.__qualname__
    run.__module__ = command_type.__module__
    run.__doc__ = f"Run the handler of command {name}."
    return run
