"""REST polling against a real worker on Redis and RabbitMQ: 202, 200 + Retry-After, 303."""
from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.django import live

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_post_poll_and_fetch_the_output(stack, settings):
    from tests.apps.commands import Sleep

    live.bgp = stack.publisher()
    live.bgp.register_command(Sleep)  # a web process knows the types, not the handlers
    settings.CELERY_BGP_INSTANCE = "tests.django.live.bgp"
    client = Client()
    client.force_login(get_user_model().objects.create_user("live", password="x",
                                                            is_staff=True))
    response = client.post("/bgp/commands/tests.apps.commands.Sleep",
                           data=json.dumps({"seconds": 1.0}), content_type="application/json")
    assert response.status_code == 202
    seen = []
    deadline = time.monotonic() + 30
    while True:
        status = client.get(response["Location"])
        seen.append(status.status_code)
        if status.status_code == 303:
            break
        assert status.status_code == 200 and status["Retry-After"] == "10"
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    assert 200 in seen  # it was seen dispatched or processing first
    output = client.get(status["Location"])
    assert output.json()["result"] == 1.0
