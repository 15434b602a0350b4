"""Priorities, settings, message checks and layering."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from celery import Celery

from celery_bgp import ImproperlyConfigured, Priority
from celery_bgp.priority import REDIS_PRIORITY_STEPS, broker_priority
from celery_bgp.settings import resolve_settings
from celery_bgp.worker import check_message


def test_priority_direction_per_broker():
    amqp = [p.for_transport("amqp") for p in Priority]
    redis = [p.for_transport("redis") for p in Priority]
    assert amqp == sorted(amqp, reverse=True)  # RabbitMQ: higher number first
    assert redis == sorted(redis)  # Redis: lower number first
    assert set(redis) <= set(REDIS_PRIORITY_STEPS)
    assert broker_priority("high", "pyamqp") == Priority.HIGH.for_transport("amqp")
    assert broker_priority(7, "redis") == 7
    with pytest.raises(ValueError, match="unknown priority 'urgent'"):
        broker_priority("urgent", "redis")


def test_settings_come_from_options_then_celery_config_then_defaults():
    app = Celery(set_as_current=False)
    app.conf.bgp_event_expiry = "none"
    app.conf.bgp_handler_modules = "a.handlers, b.handlers"
    settings = resolve_settings({"max_payload_bytes": 10}, app.conf)
    assert settings.event_expiry is None
    assert settings.handler_modules == ("a.handlers", "b.handlers")
    assert settings.max_payload_bytes == 10
    assert settings.event_repository == "memory://"


def test_django_namespace_reaches_bgp_settings():
    app = Celery(set_as_current=False)

    class DjangoSettings:
        CELERY_BGP_EVENT_REPOSITORY = "redis://127.0.0.1:6379/3"
        CELERY_BROKER_URL = "memory://"

    app.config_from_object(DjangoSettings, namespace="CELERY")
    assert resolve_settings({}, app.conf).event_repository == "redis://127.0.0.1:6379/3"


def test_bad_expiry_setting_is_clear():
    app = Celery(set_as_current=False)
    app.conf.bgp_event_expiry = "-5"
    with pytest.raises(ImproperlyConfigured, match="positive seconds"):
        resolve_settings({}, app.conf)


class Message:
    def __init__(self, body, content_type="application/json", headers=None):
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (Message(json.dumps([[{}], {}, {}]).encode()), None),
        (Message(b"\x80pickle", "application/x-python-serialize"), "must be JSON"),
        (Message(b"{oops"), "not valid JSON"),
        (Message(b'{"a": 1}'), "not a Celery [args, kwargs, embed] triple"),
        (Message(b"[1, 2]"), "not a Celery [args, kwargs, embed] triple"),
        # kombu inflated a compressed body (bounded) when it received the message:
        # what the check sees is the decompressed body, checked like any other.
        (Message(json.dumps([[{}], {}, {}]).encode(),
                 headers={"compression": "application/x-gzip"}), None),
        (Message(b"\x80still compressed", headers={"compression": "application/x-gzip"}),
         "not valid JSON"),
    ],
)
def test_check_message(message, problem):
    found = check_message(message)
    if problem is None:
        assert found is None
    else:
        assert problem in found


BLOCK_EXTRAS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('django', 'azure', 'redis', 'opentelemetry'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_core_works_without_any_extra_installed():
    code = BLOCK_EXTRAS + (
        "import celery_bgp, celery_bgp.events, celery_bgp.processing\n"
        "from celery import Celery\n"
        "bgp = celery_bgp.BackgroundProcessing(Celery(broker='memory://'))\n"
        "print(bgp.events.repository)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_extra_names_the_extra():
    code = BLOCK_EXTRAS + (
        "from celery_bgp.events import repository_from_url\n"
        "try:\n"
        "    repository_from_url('redis://127.0.0.1:6379/0')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install 'celery-bgp[redis]'" in result.stdout, result.stderr


def test_deeply_nested_bodies_are_refused_not_crashing():
    assert "nested too deeply" in check_message(Message(b"[" * 100_000))


def test_deeply_nested_transport_text_is_undecodable():
    import base64

    from celery_bgp.transport.codec import UndecodableMessage, decode_text

    with pytest.raises(UndecodableMessage, match="not valid JSON"):
        decode_text(base64.b64encode(b"[" * 100_000).decode())
