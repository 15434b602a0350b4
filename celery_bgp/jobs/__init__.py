"""Jobs: any allowed callable as a tracked background job (the HiveMind half).

See :class:`~celery_bgp.jobs.client.Jobs` (``bgp.jobs``) for the API.
"""
from __future__ import annotations

from .cancelling import CancelResult
from .client import JobLocked, Jobs
from .context import CancellationToken, JobCancelled, JobContext
from .invocation import InvalidJobArguments, JobNotAllowed
from .machine import Election, StateApplied, StateChange, TransitionNotAllowed
from .model import ContinuationRecord, JobKind, JobRecord, LogRecord, On, StateRecord
from .query import JobQuery, P, Q, QueryError
from .retry import RetryPolicy
from .states import (
    Awaiting,
    Cancelled,
    Created,
    Deleted,
    Enqueued,
    Executing,
    Failed,
    Idle,
    Retrying,
    State,
    Succeeded,
)
from .store import JobExists, JobNotFound, JobStore, StateConflict

__all__ = [
    "Awaiting",
    "CancelResult",
    "CancellationToken",
    "Cancelled",
    "ContinuationRecord",
    "Created",
    "Deleted",
    "Election",
    "Enqueued",
    "Executing",
    "Failed",
    "Idle",
    "InvalidJobArguments",
    "JobCancelled",
    "JobContext",
    "JobExists",
    "JobKind",
    "JobLocked",
    "JobNotAllowed",
    "JobNotFound",
    "JobQuery",
    "JobRecord",
    "JobStore",
    "Jobs",
    "LogRecord",
    "On",
    "P",
    "Q",
    "QueryError",
    "RetryPolicy",
    "Retrying",
    "State",
    "StateApplied",
    "StateChange",
    "StateConflict",
    "StateRecord",
    "Succeeded",
    "TransitionNotAllowed",
]
