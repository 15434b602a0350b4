"""Django settings for the test suite: PostgreSQL when it answers (always under CI)."""
from __future__ import annotations

import os

from tests.helpers.servers import IN_CI, PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT, reachable

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
]

_BASE = int(os.environ.get("BGP_TEST_REDIS_DB_BASE", "10"))

if IN_CI or reachable(PG_HOST, PG_PORT) or os.environ.get("BGP_TEST_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "postgres",
            "USER": "postgres",
            "HOST": PG_HOST,
            "PORT": PG_PORT,
            "TEST": {"NAME": os.environ.get("BGP_TEST_PG_TEST_NAME", "test_celery_bgp")},
        }
    }
    if os.environ.get("BGP_TEST_USE_TEST_DB"):
        # Worker subprocesses: talk to the test database pytest-django created.
        DATABASES["default"]["NAME"] = DATABASES["default"]["TEST"]["NAME"]
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    },
    "redis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://{REDIS_HOST}:{REDIS_PORT}/{_BASE + 2}",
        "KEY_PREFIX": "django",
    },
    "db": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "bgp_cache",
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
