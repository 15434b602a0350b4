"""Django's system checks of celery-bgp (``manage.py check``): docs/jobs.rst, "The
Django store's writes" (psycopg 3 for the hot path) and the USE_TZ requirement."""
from __future__ import annotations

import types

import pytest
from django.core import checks
from django.db.backends.postgresql import psycopg_any

from celery_bgp.contrib.django import checks as bgp_checks


def messages() -> dict[str, checks.CheckMessage]:
    return {m.id: m for m in checks.run_checks() if m.id.startswith("celery_bgp.")}


def databases(engine: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(DATABASES={"default": {"ENGINE": engine, "NAME": "app"}})


@pytest.fixture
def postgresql(monkeypatch):
    monkeypatch.setattr(bgp_checks, "settings", databases("django.db.backends.postgresql"))


def test_psycopg2_on_postgresql_is_a_warning_with_the_fix(postgresql, monkeypatch):
    assert "celery_bgp.W002" not in messages()  # psycopg 3, as the suite runs
    monkeypatch.setattr(psycopg_any, "is_psycopg3", False)
    found = messages()["celery_bgp.W002"]
    assert found.level == checks.WARNING
    assert 'pip install "psycopg[binary]"' in found.hint


@pytest.mark.parametrize("engine", ["django.db.backends.sqlite3", "django.db.backends.mysql"])
def test_psycopg2_without_a_postgresql_database_says_nothing(monkeypatch, engine):
    monkeypatch.setattr(psycopg_any, "is_psycopg3", False)
    monkeypatch.setattr(bgp_checks, "settings", databases(engine))
    assert "celery_bgp.W002" not in messages()


def test_use_tz_false_is_an_error(settings):
    settings.USE_TZ = False
    assert messages()["celery_bgp.E001"].level == checks.ERROR
