"""Django settings for the test suite: PostgreSQL when it answers (always under CI).

Besides ``default`` (PostgreSQL), the job store's contract runs on the ``sqlite``
alias (a temp file, so threads share it) and on ``mariadb`` when MariaDB answers
(always under CI). ``BGP_TEST_PG_TEST_NAME`` names the test database on every
server, so two checkouts can run their suites side by side.
"""
from __future__ import annotations

import os
import tempfile

import pymysql

from tests.helpers.servers import (
    IN_CI,
    MARIADB_HOST,
    MARIADB_PORT,
    PG_HOST,
    PG_PORT,
    REDIS_HOST,
    REDIS_PORT,
    reachable,
)

pymysql.install_as_MySQLdb()

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
    "django_celery_results",
    "celery_bgp.contrib.django",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
#: The BackgroundProcessing the REST views use (eager, in memory).
CELERY_BGP_INSTANCE = "tests.apps.rest_app.bgp"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

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
    if os.environ.get("BGP_TEST_SERVER_SIDE_BINDING"):  # a worker with Django's option
        DATABASES["default"]["OPTIONS"] = {"server_side_binding": True}
    if os.environ.get("BGP_TEST_PREPARE_THRESHOLD"):  # a worker that prepares statements
        DATABASES["default"]["OPTIONS"] = {
            "prepare_threshold": int(os.environ["BGP_TEST_PREPARE_THRESHOLD"])}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

TEST_DB_NAME = os.environ.get("BGP_TEST_PG_TEST_NAME", "test_celery_bgp")
_SQLITE_FILE = os.path.join(tempfile.gettempdir(), f"{TEST_DB_NAME}.sqlite3")
DATABASES["sqlite"] = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": _SQLITE_FILE,
    "TEST": {"NAME": _SQLITE_FILE},
    "OPTIONS": {"timeout": 30},
}

if IN_CI or reachable(MARIADB_HOST, MARIADB_PORT):
    DATABASES["mariadb"] = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "test",
        "USER": "root",
        "PASSWORD": "",
        "HOST": MARIADB_HOST,
        "PORT": MARIADB_PORT,
        # The server's default collation (case-insensitive) is kept on purpose: the
        # job store must be exact without a binary database default.
        "TEST": {"NAME": TEST_DB_NAME, "CHARSET": "utf8mb4"},
        # Loopback: no TLS (PyMySQL otherwise loads the CA store on every connect, ~90 ms).
        "OPTIONS": {"ssl_disabled": True},
    }

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
