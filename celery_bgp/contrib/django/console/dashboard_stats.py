"""The dashboard's numbers, each from bounded, index-friendly queries.

- **Counts** per state and per queue: on a small table (or not PostgreSQL) one exact
  ``GROUP BY (queue, state)``. On PostgreSQL above :data:`BIG_TABLE` rows that GROUP BY
  reads every row (150 ms at 1,000,000 jobs), so the (queue, state) pairs are found by a
  loose scan of the ``(queue, state, created)`` index and each pair is counted up to
  :data:`CELL_CAP` by the same index (one statement, about 5 ms): the small states,
  the ones an operator acts on, are exact; a bigger one shows "1,000+" per queue and
  the planner's statistics (``pg_stats``, as fresh as autovacuum keeps them) for its
  total, marked as an estimate.
- **Finished jobs over time**: Succeeded and Failed per minute of the last hour and per
  hour of the last day: a range of ``(environment, state, modified)`` on PostgreSQL, of
  ``modified`` elsewhere.
- **Run time percentiles** per job name over the newest :data:`SAMPLE` jobs finished in
  the last day (run time: the last Executing state's ``elected`` to the job's
  ``modified``, as the job list computes it): ``percentile_cont`` on PostgreSQL, the
  same interpolation in Python elsewhere.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from django.db import connections
from django.db.models import Count as CountRows
from django.db.models import Max, Min, OuterRef, Subquery
from django.db.models.functions import Trunc

from ..admin_paging import table_estimate
from ..models import Job, JobState

__all__ = ["BIG_TABLE", "CELL_CAP", "SAMPLE", "Count", "Counts", "Slot", "change_marker",
           "duration_percentiles", "finished_series", "job_counts", "percentiles"]

#: Above this many jobs (PostgreSQL's estimate) counts are bounded, not exact.
BIG_TABLE = 100_000
#: A (queue, state) pair is counted exactly up to this many jobs.
CELL_CAP = 1_000
#: Run time percentiles read at most this many of the newest finished jobs.
SAMPLE = 10_000
#: Job names shown on the percentile chart (the busiest).
TOP_NAMES = 12
FINISHED = ("Succeeded", "Failed")

_JOB = Job._meta.db_table
_STATE = JobState._meta.db_table


class Count(int):
    """A count that knows whether it is exact, a lower bound or the planner's estimate."""

    at_least: bool
    estimated: bool

    def __new__(cls, value: int, *, at_least: bool = False, estimated: bool = False
                ) -> Count:
        self = super().__new__(cls, value)
        self.at_least, self.estimated = at_least, estimated
        return self

    @property
    def exact(self) -> bool:
        return not (self.at_least or self.estimated)

    def label(self) -> str:
        """``1,234``, ``1,000+`` or ``≈ 812,000``."""
        if self.estimated:
            return f"≈ {int(self):,}"
        return f"{int(self):,}+" if self.at_least else f"{int(self):,}"


@dataclasses.dataclass
class Counts:
    states: dict[str, Count]
    queues: dict[str, dict[str, Count]]
    queue_totals: dict[str, Count]
    total: Count
    oldest_waiting: dict[str, datetime]


def job_counts(using: str = "default") -> Counts:
    """Jobs per state and per (queue, state), exact or bounded (see the module)."""
    connection = connections[using]
    size = table_estimate(_JOB, using) if connection.vendor == "postgresql" else None
    if size is not None and size > BIG_TABLE:
        counts = _bounded_counts(using, size)
    else:
        rows = (Job.objects.using(using).order_by().values_list("queue", "state")
                .annotate(n=CountRows("pk")))
        pairs = {(queue, state): Count(n) for queue, state, n in rows}
        counts = _fold(pairs, {}, None)
    for queue, per_state in sorted(counts.queues.items()):
        if per_state.get("Enqueued"):  # MIN(created): the first entry of (queue, state, created)
            oldest = (Job.objects.using(using).filter(queue=queue, state="Enqueued")
                      .aggregate(m=Min("created"))["m"])
            if oldest is not None:
                counts.oldest_waiting[queue] = oldest
    return counts


_PAIRS_SQL = f"""
WITH RECURSIVE pairs(queue, state) AS (
  (SELECT queue, state FROM "{_JOB}" ORDER BY queue, state LIMIT 1)
  UNION ALL
  SELECT n.queue, n.state FROM pairs p CROSS JOIN LATERAL (
    SELECT j.queue, j.state FROM "{_JOB}" j WHERE (j.queue, j.state) > (p.queue, p.state)
    ORDER BY j.queue, j.state LIMIT 1) n
)
SELECT p.queue, p.state, (SELECT count(*) FROM (SELECT 1 FROM "{_JOB}" j
    WHERE j.queue = p.queue AND j.state = p.state LIMIT %s) c)
FROM pairs p
"""
_STATS_SQL = """
SELECT attname, most_common_vals::text::text[], most_common_freqs, n_distinct, null_frac
FROM pg_stats WHERE schemaname = current_schema() AND tablename = %s
  AND attname IN ('queue', 'state')
"""


def _bounded_counts(using: str, size: int) -> Counts:
    """PostgreSQL, big table: exact counts up to CELL_CAP per pair, estimates above."""
    with connections[using].cursor() as cursor:
        cursor.execute(_PAIRS_SQL, [CELL_CAP + 1])
        pairs = {(queue, state): (Count(CELL_CAP, at_least=True) if n > CELL_CAP else Count(n))
                 for queue, state, n in cursor.fetchall()}
        cursor.execute(_STATS_SQL, [_JOB])
        stats = {row[0]: row[1:] for row in cursor.fetchall()}
    return _fold(pairs, stats, size)


def _estimate(stats: dict[str, Any], column: str, value: str, size: int) -> int | None:
    """The planner's idea of how many rows have ``column = value`` (None: no statistics)."""
    if column not in stats:
        return None
    values, freqs, n_distinct, null_frac = stats[column]
    values, freqs = values or [], freqs or []
    if value in values:
        return round(size * freqs[values.index(value)])
    distinct = n_distinct if n_distinct > 0 else -n_distinct * size
    rest = max(distinct - len(values), 1)
    return round(size * max(1 - sum(freqs) - (null_frac or 0), 0) / rest)


def _fold(pairs: dict[tuple[str, str], Count], stats: dict[str, Any], size: int | None
          ) -> Counts:
    """Per-state and per-queue totals from the pair counts (estimates where one is capped)."""
    queues: dict[str, dict[str, Count]] = {}
    states: dict[str, list[Count]] = {}
    for (queue, state), n in sorted(pairs.items()):
        queues.setdefault(queue, {})[state] = n
        states.setdefault(state, []).append(n)

    def total(column: str, value: str, parts: list[Count]) -> Count:
        found = sum(parts)
        if all(p.exact for p in parts):
            return Count(found)
        guess = _estimate(stats, column, value, size) if size else None
        if guess is None:
            return Count(found, at_least=True)
        return Count(max(guess, found), estimated=True)

    state_totals = {s: total("state", s, parts) for s, parts in states.items()}
    queue_totals = {q: total("queue", q, list(per.values())) for q, per in queues.items()}
    everything = sum(state_totals.values())
    exact = all(c.exact for c in state_totals.values())
    grand = Count(everything) if exact else Count(max(everything, size or 0), estimated=True)
    return Counts(state_totals, queues, queue_totals, grand, {})


# -- finished jobs over time -----------------------------------------------------------


@dataclasses.dataclass
class Slot:
    """Jobs that finished in one slot (a minute or an hour)."""

    start: datetime
    succeeded: int = 0
    failed: int = 0


#: PostgreSQL: the environments by a loose scan of ``(environment, state, modified)``,
#: so that index answers the whole range by itself (half the time of ``modified``'s,
#: which must read each row for its state).
_SERIES_SQL = f"""
WITH RECURSIVE envs(e) AS (
  (SELECT environment FROM "{_JOB}" ORDER BY environment LIMIT 1)
  UNION ALL
  SELECT (SELECT environment FROM "{_JOB}" WHERE environment > envs.e
          ORDER BY environment LIMIT 1) FROM envs WHERE envs.e IS NOT NULL
)
SELECT date_trunc(%s, modified AT TIME ZONE 'UTC'), state, count(*) FROM "{_JOB}"
WHERE environment = ANY(ARRAY(SELECT e FROM envs WHERE e IS NOT NULL))
  AND state = ANY(%s) AND modified >= %s
GROUP BY 1, 2
"""


def finished_series(now: datetime, using: str = "default", *, unit: str = "minute",
                    slots: int = 60) -> list[Slot]:
    """Succeeded and failed jobs per ``unit`` for the last ``slots`` units, oldest first
    (the last slot is the current, unfinished one)."""
    step = timedelta(minutes=1) if unit == "minute" else timedelta(hours=1)
    current = now.replace(second=0, microsecond=0)
    if unit == "hour":
        current = current.replace(minute=0)
    first = current - step * (slots - 1)
    series = [Slot(first + step * i) for i in range(slots)]
    if connections[using].vendor == "postgresql":
        with connections[using].cursor() as cursor:
            cursor.execute(_SERIES_SQL, [unit, list(FINISHED), first])
            rows = [(start.replace(tzinfo=timezone.utc), state, n)
                    for start, state, n in cursor.fetchall()]
    else:
        rows = (Job.objects.using(using)
                .filter(state__in=FINISHED, modified__gte=first)
                .annotate(slot=Trunc("modified", unit, tzinfo=timezone.utc)).order_by()
                .values_list("slot", "state").annotate(n=CountRows("pk")))
    for start, state, n in rows:
        index = round((start - first) / step)
        if 0 <= index < slots:
            if state == "Succeeded":
                series[index].succeeded += n
            else:
                series[index].failed += n
    return series


def change_marker(using: str = "default") -> str:
    """What changes whenever a job is written: the newest ``modified`` (one index probe)."""
    newest = Job.objects.using(using).aggregate(m=Max("modified"))["m"]
    return newest.isoformat() if newest else "-"


# -- run time percentiles --------------------------------------------------------------

_PERCENTILE_SQL = f"""
WITH recent AS (
  SELECT id, name, modified FROM "{_JOB}" WHERE modified >= %s AND state = ANY(%s)
  ORDER BY modified DESC LIMIT %s
), runs AS (
  SELECT r.name, extract(epoch FROM r.modified - s.elected) AS seconds FROM recent r
  CROSS JOIN LATERAL (SELECT elected FROM "{_STATE}" WHERE job_id = r.id
    AND name = 'Executing' ORDER BY sequence DESC LIMIT 1) s
  WHERE r.modified >= s.elected
)
SELECT name, count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY seconds)
FROM runs GROUP BY name ORDER BY count(*) DESC, name LIMIT %s
"""


def duration_percentiles(now: datetime, using: str = "default", *,
                         window: timedelta = timedelta(days=1), sample: int = SAMPLE,
                         top: int = TOP_NAMES) -> list[tuple[str, int, tuple[float, ...]]]:
    """``(name, jobs, (p50, p95, p99))`` in seconds for the busiest names, busiest first."""
    since = now - window
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_PERCENTILE_SQL, [since, list(FINISHED), sample, top])
            return [(name, n, tuple(float(p) for p in ps))
                    for name, n, ps in cursor.fetchall()]
    runs = (JobState.objects.using(using).filter(job=OuterRef("pk"), name="Executing")
            .order_by("-sequence").values("elected")[:1])
    rows = (Job.objects.using(using).filter(state__in=FINISHED, modified__gte=since)
            .order_by("-modified").annotate(started=Subquery(runs))
            .values_list("name", "modified", "started")[:sample])
    by_name: dict[str, list[float]] = {}
    for name, modified, started in rows:
        if started is not None and modified >= started:
            by_name.setdefault(name, []).append((modified - started).total_seconds())
    busiest = sorted(by_name.items(), key=lambda item: (-len(item[1]), item[0]))[:top]
    return [(name, len(values), percentiles(values, (0.5, 0.95, 0.99)))
            for name, values in busiest]


def percentiles(values: Sequence[float], fractions: Sequence[float]) -> tuple[float, ...]:
    """Linear interpolation between the closest ranks (PostgreSQL's ``percentile_cont``)."""
    ordered = sorted(values)
    out = []
    for fraction in fractions:
        rank = fraction * (len(ordered) - 1)
        low, high = math.floor(rank), math.ceil(rank)
        out.append(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))
    return tuple(out)
