"""Django's system checks of celery-bgp (``manage.py check``): docs/jobs.rst, "The
Django store's writes" (psycopg 3 for the hot path) and the USE_TZ requirement."""
from __future__ import annotations

import types

from django.core import checks
from django.db.backends.postgresql import psycopg_any


def messages(**kwargs) -> dict[str, checks.CheckMessage]:
    return {m.id: m for m in checks.run_checks(**kwargs) if m.id.startswith("celery_bgp.")}


def test_psycopg2_on_postgresql_is_a_warning_with_the_fix(monkeypatch):
    assert "celery_bgp.W002" not in messages()  # the suite runs psycopg 3
    monkeypatch.setattr(psycopg_any, "is_psycopg3", False)
    found = messages()["celery_bgp.W002"]
    assert found.level == checks.WARNING
    assert 'pip install "psycopg[binary]"' in found.hint


def test_psycopg2_without_a_postgresql_database_says_nothing(monkeypatch):
    from celery_bgp.contrib.django import checks as bgp_checks

    monkeypatch.setattr(psycopg_any, "is_psycopg3", False)
    sqlite_only = types.SimpleNamespace(DATABASES={"default": {
        "ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
    monkeypatch.setattr(bgp_checks, "settings", sqlite_only)
    assert bgp_checks.check_psycopg() == []


def test_use_tz_false_is_an_error(settings):
    settings.USE_TZ = False
    assert messages()["celery_bgp.E001"].level == checks.ERROR
