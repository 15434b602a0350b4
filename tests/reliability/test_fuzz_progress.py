"""Property-based tests of the progress record a job stores (job data ``progress``):
any JSON value, however a job or a hand-edited row left it, reads as a report or as
nothing, never an error, and a report's bar and ETA stay within bounds."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from celery_bgp.jobs.progress import Progress, read_progress, shown_progress
from celery_bgp.jobs.states import FINAL_STATES
from tests.reliability.test_fuzz import fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
stamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                      timezones=st.just(timezone.utc))
numbers = st.integers(-10**6, 10**6) | st.floats(-1e9, 1e9, allow_nan=False)
reports = st.fixed_dictionaries(
    {"done": numbers},
    optional={"total": st.none() | numbers, "message": st.none() | st.text(max_size=20),
              "at": st.none() | st.text(max_size=30) | stamps.map(lambda d: d.isoformat())})
states = st.sampled_from(["Enqueued", "Executing", "Retrying", *sorted(FINAL_STATES)])


@fuzz
@given(json_values | reports, states, st.none() | stamps)
def test_any_stored_value_reads_as_a_report_or_nothing(value, state, started):
    report = read_progress(value)
    assert report is None or isinstance(report, Progress)
    shown = shown_progress(value, state, started)
    assert shown is None or shown == report


@fuzz
@given(reports, st.none() | stamps, stamps)
def test_the_bar_stays_within_0_and_100_and_the_eta_is_never_before_the_report(
        value, started, now):
    report = read_progress(value)
    assert report is not None
    assert report.percent is None or 0 <= report.percent <= 100
    eta = report.eta(started)
    if eta is not None:
        assert eta >= report.at
    remaining = report.remaining(started, now)
    assert remaining is None or remaining >= 0
    as_json = report.as_dict(started, now)
    assert as_json["done"] == report.done


@fuzz
@given(stamps, st.integers(1, 1000), st.integers(1, 1000))
def test_a_steady_rate_gives_the_eta_of_that_rate(started, done, left):
    at = started + timedelta(seconds=done)  # one unit a second
    report = Progress(done, done + left, None, at)
    assert abs((report.eta(started) - at).total_seconds() - left) < 1e-3
