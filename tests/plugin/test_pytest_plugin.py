"""The pytest plugin, exercised the way a user's own test suite uses it."""
from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
from dataclasses import dataclass

import pytest

from celery_bgp import BackgroundCommand, CommandHandler, EventStatus


@dataclass
class Welcome(BackgroundCommand):
    email: str


@dataclass
class SendMail(BackgroundCommand):
    to: str


sent = []


@pytest.fixture
def bgp(bgp):
    """The project's wiring: what a user's conftest.py would do."""

    class WelcomeHandler(CommandHandler[Welcome]):
        def handle(self, command):
            bgp.dispatch(SendMail(to=command.email))
            return "welcomed"

    bgp.register_handler(WelcomeHandler)

    @bgp.handler(SendMail)
    async def send(command):
        sent.append(command.to)

    return bgp


def test_eager(bgp_eager):
    command = Welcome(email="a@example.com")
    assert bgp_eager.dispatch(command).get() == "welcomed"
    assert bgp_eager.events.latest(command.id).status is EventStatus.PROCESSED
    assert "a@example.com" in sent


def test_captured(bgp, bgp_captured):
    bgp.dispatch(Welcome(email="b@example.com"), queue="mail")
    assert bgp_captured.assert_dispatched(Welcome, email="b@example.com")
    assert bgp_captured[0].options["queue"] == "mail"
    assert bgp_captured.run_all() == ["welcomed"]
    bgp_captured.assert_dispatched(SendMail, to="b@example.com")
    assert "b@example.com" not in sent
    with pytest.raises(AssertionError, match="no Welcome"):
        bgp_captured.assert_dispatched(Welcome, email="nobody")


def test_real_worker(bgp, bgp_worker):
    command = Welcome(email="c@example.com")
    bgp.dispatch(command)
    assert bgp_worker.wait(command).status is EventStatus.PROCESSED
    bgp_worker.wait_for_count(2)
    assert "c@example.com" in sent
'''


def test_plugin_fixtures_in_a_user_project(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)  # a plain Celery project
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "celery.contrib.pytest", "-p", "no:django", "-q")
    result.assert_outcomes(passed=3)
