"""Settings of the demo project: SQLite, an embedded broker, and celery-bgp everywhere.

``BGP_DEMO_DATA`` is the folder for the database and the embedded broker;
``BGP_DEMO_BROKER`` switches the broker (``embedded``, ``redis``, ``rabbitmq``,
``azurite``).
"""
from __future__ import annotations

import os
from pathlib import Path

DATA = Path(os.environ.get("BGP_DEMO_DATA", Path(__file__).resolve().parents[1] / ".demo"))
DATA.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("BGP_DEMO_SECRET_KEY", "demo-only-not-a-secret")
DEBUG = os.environ.get("BGP_DEMO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "django_celery_beat",
    "celery_bgp.contrib.django",
    "shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "proj.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
WSGI_APPLICATION = "proj.wsgi.application"
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": DATA / "demo.sqlite3",
    # The web server, the worker and the demo script share this file.
    "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
}}
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- Celery and celery-bgp ---------------------------------------------------------------

_BROKERS = {
    "embedded": "filesystem://",
    "redis": "redis://127.0.0.1:6379/3",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
    "azurite": "azurequeue://",
}
BROKER = os.environ.get("BGP_DEMO_BROKER", "embedded")
# BGP_DEMO_BROKER_URL points --broker redis|rabbitmq at another server (or database, vhost).
CELERY_BROKER_URL = os.environ.get("BGP_DEMO_BROKER_URL") or _BROKERS[BROKER]
if BROKER == "embedded":
    (DATA / "broker").mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(DATA / "broker"), "data_folder_out": str(DATA / "broker"),
        "control_folder": str(DATA / "broker-control"), "store_processed": False,
    }
elif BROKER == "azurite":
    CELERY_BROKER_TRANSPORT_OPTIONS = {"connection_string": os.environ.get(
        "AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")}
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

CELERY_BGP_EVENT_REPOSITORY = "django-db://"  # commands show up as jobs in the admin
CELERY_BGP_JOB_STORE = "django://"
CELERY_BGP_JOB_MODULES = ["shop"]
CELERY_BGP_JOB_RETRY = {"max_attempts": 2, "delays": [3]}
CELERY_BGP_JOB_LOCK_TIMEOUT = 30
CELERY_BGP_JOB_MONITOR_INTERVAL = 10
CELERY_BGP_REST_PERMISSION = "staff"
#: The instance the REST views and the admin's actions (requeue, cancel) use.
CELERY_BGP_INSTANCE = "proj.celery.bgp"

CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
