"""The job state machine: elect, check the transition, apply atomically, announce.

``change(job_id, state)`` asks the election handlers (mediator requests, priority
order) whether another state should be elected instead, e.g. a retry policy turns
Failed into Retrying, a tenant guard turns Executing into Deleted. The winner is
applied with the store's optimistic check, then announced to the event handlers
(which publish messages, release continuations ...). HiveMind applies first and
elects after; electing first means a vetoed state is never stored.

A replacement must be a transition the registry allows from the job's *current*
state (the worker asks for Executing while the job is Enqueued, so a veto there may
elect Deleted, Cancelled, Idle, Failed or a delayed Enqueued). A handler that elects
anything else, returns something that is not a state, or raises, is refused: the
job is elected Failed with a reason naming the handler, so it never stays where a
consumed message left it. From a final state nothing is forced: the change raises
:class:`TransitionNotAllowed` and the job keeps its state. A handler that fails because
the job store is unavailable (``store.unavailable``) is not refused: the error goes to
the caller, which tries again later (the worker does, see :mod:`.runner`).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from typing import Any

from ..exceptions import BGPError
from .mediator import Mediator
from .model import RELEASING_STATES, JobRecord, StateRecord, Transition
from .states import Failed, State, StateRegistry
from .store import JobNotFound, JobStore, StateConflict

__all__ = ["ELECT", "REFUSED_ELECTION", "STATE_APPLIED", "Election", "StateChange",
           "StateMachine", "TransitionNotAllowed"]

logger = logging.getLogger("celery_bgp.jobs")

ELECT = "elect-state"
STATE_APPLIED = "state-applied"
MAX_ELECTION_ROUNDS = 10
#: ``exception_type`` of the Failed state elected in place of a refused replacement.
REFUSED_ELECTION = "celery_bgp.RefusedElection"


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
        if expected is not None and job.state not in expected:
            # Moved by someone else meanwhile: a conflict, not a wrong request.
            raise StateConflict(f"job {job_id} is {job.state}, not {'/'.join(sorted(expected))}")
        if not self.registry.is_allowed(job.state, state.name):
            raise TransitionNotAllowed(f"job {job_id} cannot go from {job.state} to {state.name}")
        elected = self.elect(job, state)
        if elected.name == Failed.name and elected.exception_type == REFUSED_ELECTION:
            allowed_from = {job.state}  # the refusal: reachable from any non-final state
        else:
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
        self._announce(StateApplied(after, transition.previous, elected, transition.applied,
                                    transition))
        return StateChange(after, state, elected, transition)

    def create(self, job: JobRecord, state: State, properties: dict[str, Any] | None = None,
               changes: dict[str, Any] | None = None) -> StateChange:
        """Store a new job as Created then ``state`` (elected) in one write, and announce it.

        One write instead of create + transition: enqueueing is on the caller's path.
        """
        from .states import Created

        job = dataclasses.replace(job, state=Created.name, **(changes or {}))
        if not self.registry.is_allowed(Created.name, state.name):
            raise TransitionNotAllowed(f"a new job cannot start as {state.name}")
        elected = self.elect(job, state)
        created = dataclasses.replace(Created().record(job.created), sequence=1)
        record = dataclasses.replace(elected.record(), sequence=2)
        after = dataclasses.replace(job, state=elected.name, modified=record.elected)
        self.store.create(after, [created, record], properties)
        # Both states are announced, in order, though they were written together.
        self._announce(StateApplied(
            dataclasses.replace(job, modified=created.elected), "", Created(), created,
            Transition("", created, ())))
        transition = Transition(Created.name, record, ())
        self._announce(StateApplied(after, Created.name, elected, record, transition))
        return StateChange(after, state, elected, transition)

    def _announce(self, applied: StateApplied) -> None:
        self.mediator.publish(STATE_APPLIED, applied)
        for react in self.after_applied:
            react(applied)

    def elect(self, job: JobRecord, state: State) -> State:
        """Run the election handlers until the candidate is stable.

        A replacement that cannot follow the job's current state (or a handler that
        fails) is refused with :meth:`refuse`.
        """
        candidate = state
        for _ in range(MAX_ELECTION_ROUNDS):
            replaced = False
            for handler in self.mediator.handlers(ELECT):
                try:
                    result = handler(Election(job, job.state, candidate, state))
                except self.store.unavailable:
                    raise  # the store is away (a handler that reads it): not the handler's fault
                except Exception as exc:
                    logger.exception("celery-bgp: election handler %r failed for job %s",
                                     handler, job.id)
                    return self.refuse(job, handler, f"raised {exc!r}", state)
                if result is None or result == candidate:
                    continue
                if not isinstance(result, State):
                    return self.refuse(job, handler, f"returned {result!r}, not a State", state)
                if not self.registry.is_allowed(job.state, result.name):
                    return self.refuse(job, handler, f"elected {result.name}, which cannot "
                                       f"follow {job.state}", state)
                candidate, replaced = result, True
                break
            if not replaced:
                return candidate
        logger.warning("celery-bgp: state election for job %s did not settle; using %s",
                       job.id, candidate.name)
        return candidate

    def refuse(self, job: JobRecord, handler: Any, problem: str, requested: State) -> State:
        """The Failed state that replaces a refused election (raise from a final state)."""
        name = getattr(handler, "__qualname__", None) or repr(handler)
        message = f"election handler {name} {problem} (instead of {requested.name})"
        if self.registry.is_final(job.state):
            raise TransitionNotAllowed(f"job {job.id}: {message}")
        logger.error("celery-bgp: job %s: %s; the job is Failed", job.id, message)
        return Failed(exception_type=REFUSED_ELECTION, message=message,
                      attempt=max(job.attempt, 1), reason="election refused")
