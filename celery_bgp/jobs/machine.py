"""The job state machine: elect, check the transition, apply atomically, announce.

``change(job_id, state)`` asks the election handlers (mediator requests, priority
order) whether another state should be elected instead, e.g. a retry policy turns
Failed into Retrying, a tenant guard turns Executing into Deleted. The winner is
applied with the store's optimistic check, then announced to the event handlers
(which publish messages, release continuations ...). HiveMind applies first and
elects after; electing first means a vetoed state is never stored.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from typing import Any

from ..exceptions import BGPError
from .mediator import Mediator
from .model import RELEASING_STATES, JobRecord, StateRecord, Transition
from .states import State, StateRegistry
from .store import JobNotFound, JobStore

__all__ = ["ELECT", "STATE_APPLIED", "Election", "StateChange", "StateMachine",
           "TransitionNotAllowed"]

logger = logging.getLogger("celery_bgp.jobs")

ELECT = "elect-state"
STATE_APPLIED = "state-applied"
MAX_ELECTION_ROUNDS = 10


class TransitionNotAllowed(BGPError):
    """The state machine has no transition from the job's state to the requested one."""


@dataclasses.dataclass
class Election:
    """What an election handler sees: the job, its current state, the candidate."""

    job: JobRecord
    current: str
    candidate: State
    requested: State


@dataclasses.dataclass(frozen=True)
class StateChange:
    """The outcome of :meth:`StateMachine.change`."""

    job: JobRecord
    requested: State
    elected: State
    transition: Transition

    @property
    def won(self) -> bool:
        """True if the requested state is the one applied."""
        return self.elected.name == self.requested.name


@dataclasses.dataclass(frozen=True)
class StateApplied:
    """Event payload: a state was applied to a job."""

    job: JobRecord
    previous: str
    state: State
    record: StateRecord
    transition: Transition


class StateMachine:
    """Elects and applies states through a :class:`JobStore`."""

    def __init__(self, store: JobStore, mediator: Mediator, registry: StateRegistry) -> None:
        self.store = store
        self.mediator = mediator
        self.registry = registry
        #: The engine's own reactions (send messages, release continuations), run after
        #: the event handlers so that every handler sees a change before its effects.
        self.after_applied: list[Any] = []

    def change(
        self,
        job_id: str,
        state: State,
        *,
        expected: Collection[str] | None = None,
        holder: str | None = None,
        changes: dict[str, Any] | None = None,
        job: JobRecord | None = None,
        take_lock: float | None = None,
        release_lock: bool = False,
        durable: bool = True,
    ) -> StateChange:
        """Elect and apply ``state``; raise on a disallowed transition or a conflict.

        ``take_lock`` / ``release_lock`` take or release ``holder``'s lock in the same
        write (see :meth:`JobStore.transition`).
        """
        job = job or self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        elected = self.elect(job, state)
        if not self.registry.is_allowed(job.state, elected.name):
            raise TransitionNotAllowed(
                f"job {job_id} cannot go from {job.state} to {elected.name}"
            )
        allowed_from = self.registry.sources_of(elected.name)
        if expected is not None:
            allowed_from &= set(expected)
        record = elected.record()
        transition = self.store.transition(
            job_id, record, expected=allowed_from, holder=holder, changes=changes,
            take_lock=take_lock, release_lock=release_lock,
            continuations=elected.name in RELEASING_STATES, durable=durable,
        )
        after = dataclasses.replace(job, state=elected.name, modified=record.elected,
                                    **(changes or {}))
        applied = StateApplied(after, transition.previous, elected, transition.applied,
                               transition)
        self.mediator.publish(STATE_APPLIED, applied)
        for react in self.after_applied:
            react(applied)
        return StateChange(after, state, elected, transition)

    def create(self, job: JobRecord, state: State, properties: dict[str, Any] | None = None,
               changes: dict[str, Any] | None = None) -> StateChange:
        """Store a new job as Created then ``state`` (elected) in one write, and announce it.

        One write instead of create + transition: enqueueing is on the caller's path.
        """
        from .states import Created

        job = dataclasses.replace(job, state=Created.name, **(changes or {}))
        elected = self.elect(job, state)
        if not self.registry.is_allowed(Created.name, elected.name):
            raise TransitionNotAllowed(f"a new job cannot start as {elected.name}")
        created = Created().record(job.created)
        record = dataclasses.replace(elected.record(), sequence=2)
        after = dataclasses.replace(job, state=elected.name, modified=record.elected)
        self.store.create(after, [created, record], properties)
        transition = Transition(Created.name, record, ())
        applied = StateApplied(after, Created.name, elected, record, transition)
        self.mediator.publish(STATE_APPLIED, applied)
        for react in self.after_applied:
            react(applied)
        return StateChange(after, state, elected, transition)

    def elect(self, job: JobRecord, state: State) -> State:
        """Run the election handlers until the candidate is stable."""
        candidate = state
        for _ in range(MAX_ELECTION_ROUNDS):
            replaced = False
            for handler in self.mediator.handlers(ELECT):
                result = handler(Election(job, job.state, candidate, state))
                if result is not None and result != candidate:
                    if not isinstance(result, State):
                        raise TypeError(f"election handler {handler!r} returned {result!r}")
                    candidate, replaced = result, True
                    break
            if not replaced:
                return candidate
        logger.warning("celery-bgp: state election for job %s did not settle; using %s",
                       job.id, candidate.name)
        return candidate
