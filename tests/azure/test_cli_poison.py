"""``celery bgp poison list|requeue|purge`` against Azurite."""
from __future__ import annotations

import json

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner

from celery_bgp import BackgroundProcessing
from celery_bgp.cli import bgp as bgp_cli
from tests.azure.conftest import FAST
from tests.azure.helpers import collect, publish

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(azurite, prefix):
    app = Celery("azure-cli", set_as_current=False)
    app.conf.update(broker_url="azurequeue://",
                    broker_transport_options={**FAST, "queue_name_prefix": prefix})
    BackgroundProcessing(app, name=f"cli-{prefix}")

    def run(*args, code=0):
        result = CliRunner().invoke(bgp_cli, list(args), obj=CLIContext(app, True, None),
                                    catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return run


def test_list_requeue_and_purge_poison_messages(cli, connect):
    conn = connect()
    storage = conn.transport.storage
    publish(conn, "orders", {"n": 1})
    from celery_bgp.transport import names

    base = names.azure_queue_name("orders", storage.options.queue_name_prefix)
    storage.send_text(base, "<<garbage>>")
    storage.send_text(base, "<<more garbage>>")
    assert len(collect(conn, "orders", 1, timeout=5)) == 1  # the good one; garbage moved
    listed = json.loads(cli("poison", "list", "orders", "--json"))
    assert listed["count"] == 2
    assert {m["text"] for m in listed["messages"]} == {"<<garbage>>", "<<more garbage>>"}
    assert all(m["reason"].startswith("undecodable") for m in listed["messages"])
    first = listed["messages"][0]["id"]
    assert json.loads(cli("poison", "purge", "orders", "--id", first, "--json")) == {"purged": 1}
    assert json.loads(cli("poison", "requeue", "orders", "--yes", "--json")) == {"requeued": 1}
    assert "about 0" in cli("poison", "list", "orders")


def test_poison_needs_the_azure_broker():
    app = Celery("redis-cli", broker="redis://127.0.0.1:6379/0", set_as_current=False)
    BackgroundProcessing(app, name="cli-not-azure")
    result = CliRunner().invoke(bgp_cli, ["poison", "list", "q"],
                                obj=CLIContext(app, True, None))
    assert result.exit_code == 1
    assert "azurequeue:// broker only" in result.output
