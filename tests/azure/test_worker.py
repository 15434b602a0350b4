"""Real ``celery worker`` processes on azurequeue:// against Azurite (issue 3 end to end)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from celery_bgp import EventStatus, Priority
from celery_bgp.transport import names
from celery_bgp.transport.poison import PoisonQueues
from celery_bgp.transport.storage import MessageTooLarge
from tests.apps.azure_commands import SlowAppend
from tests.apps.commands import Append, Echo
from tests.azure.conftest import FAST, AzureStack, azure_env
from tests.helpers.faults import record
from tests.helpers.workers import ROOT

pytestmark = pytest.mark.integration

S = EventStatus


def physical(stack: AzureStack, queue: str | None = None) -> str:
    return names.azure_queue_name(queue or stack.queue, stack.options["queue_name_prefix"])


def test_command_runs_and_its_events_land_in_azure_table(azure_stack):
    bgp = azure_stack.publisher()
    command = Echo(text="from azure")
    assert bgp.dispatch(command).get(timeout=20) == "from azure"
    assert bgp.events.wait_for(command.id).status is S.PROCESSED
    assert [e.status for e in bgp.events.all(command.id)] == [
        S.PROCESSED, S.PROCESSING, S.DISPATCHED]


def test_celery_inspect_ping_and_control_answer(azure_stack):
    env = {**os.environ, **azure_stack.env, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tests.apps.azure_app", "inspect", "ping",
         "-d", azure_stack.worker.hostname, "--timeout", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "pong" in out.stdout, out.stdout + out.stderr
    app = azure_stack.app()
    registered = app.control.inspect(destination=[azure_stack.worker.hostname],
                                     timeout=5).registered()
    assert "bgp.tests.apps.commands.Echo" in registered[azure_stack.worker.hostname]
    replies = app.control.rate_limit("bgp.tests.apps.commands.Echo", "1000/s", reply=True,
                                     destination=[azure_stack.worker.hostname], timeout=5)
    assert replies and "ok" in next(iter(replies[0].values()))


def celery_cli(stack: AzureStack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "celery", "-A", "tests.apps.azure_app", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("where", ["transport options", "environment"])
def test_inspect_conf_and_report_keep_the_account_key_out(make_stack, monkeypatch, where):
    """`celery inspect conf|report` and `celery report` print the configuration: without
    the connection string (or anything of it), and without failing for lack of one."""
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    if where == "transport options":
        probe = make_stack()
        stack = make_stack(connection_string=probe.azurite.connection_string)
        del stack.env["AZURE_STORAGE_CONNECTION_STRING"]
    else:  # the worker's (and these commands') environment only
        stack = make_stack()
        assert "connection_string" not in stack.options
    stack.env["BGP_TEST_EVENTS"] = "memory://"  # azuretable:// reads only the environment
    secret = stack.azurite.connection_string.split("AccountKey=")[1].split(";")[0]
    with stack.new_worker() as worker:
        outputs = {
            "inspect conf": celery_cli(stack, "inspect", "conf", "-d", worker.hostname,
                                       "--timeout", "10"),
            "inspect conf (defaults)": celery_cli(stack, "inspect", "conf", "true", "-d",
                                                  worker.hostname, "--timeout", "10"),
            "inspect report": celery_cli(stack, "inspect", "report", "-d", worker.hostname,
                                         "--timeout", "10"),
            "report": celery_cli(stack, "report"),
        }
    for name, out in outputs.items():
        text = out.stdout + out.stderr
        assert out.returncode == 0, f"{name}:\n{text[-3000:]}"
        assert secret not in text and "AccountKey" not in text, f"{name}:\n{text}"
        assert "ImproperlyConfigured" not in text, f"{name}:\n{text[-3000:]}"
        assert stack.options["queue_name_prefix"] in text, f"{name}:\n{text[-3000:]}"
        if where == "transport options":
            assert "connection_string" in text and "********" in text, f"{name}:\n{text}"
    assert "OK" in outputs["inspect conf"].stdout
    assert "azure-storage-queue:12." in outputs["report"].stdout


def test_report_needs_no_credentials(make_stack, monkeypatch):
    """Credentials in the worker's environment only: `celery report` here still works."""
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    stack = make_stack()
    del stack.env["AZURE_STORAGE_CONNECTION_STRING"]
    out = celery_cli(stack, "report")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "transport:azurequeue" in out.stdout


def test_delayed_command_waits_in_azure_not_in_worker_memory(azure_stack):
    bgp = azure_stack.publisher()
    later = Echo(text="in an hour")
    bgp.dispatch(later, countdown=3600)
    soon = Echo(text="in two seconds")
    started = time.monotonic()
    bgp.dispatch(soon, countdown=2)
    assert bgp.events.wait_for(soon.id, timeout=20).status is S.PROCESSED
    assert time.monotonic() - started >= 1.9
    inspect = azure_stack.app().control.inspect(destination=[azure_stack.worker.hostname],
                                                timeout=5)
    assert inspect.scheduled()[azure_stack.worker.hostname] == []
    assert later.id not in str(inspect.reserved())
    service = QueueServiceClient.from_connection_string(azure_stack.azurite.connection_string)
    client = service.get_queue_client(physical(azure_stack))
    assert client.get_queue_properties().approximate_message_count >= 1
    assert list(client.peek_messages(max_messages=32)) == []  # invisible until its ETA
    assert bgp.events.latest(later.id).status is S.DISPATCHED


def test_garbage_in_the_queue_is_dead_lettered_and_the_worker_goes_on(azure_stack):
    service = QueueServiceClient.from_connection_string(azure_stack.azurite.connection_string)
    service.get_queue_client(physical(azure_stack)).send_message("}}} not a celery message")
    bgp = azure_stack.publisher()
    command = Echo(text="after garbage")
    assert bgp.dispatch(command).get(timeout=20) == "after garbage"
    with azure_stack.app().connection_for_write() as conn:
        poison = PoisonQueues(conn)
        deadline = time.monotonic() + 10
        while not poison.list(azure_stack.queue) and time.monotonic() < deadline:
            time.sleep(0.2)
        [entry] = poison.list(azure_stack.queue)
        assert entry.text == "}}} not a celery message"
        assert entry.reason.startswith("undecodable")
        poison.purge(azure_stack.queue)


def test_priorities_are_drained_highest_first(make_stack, sink):
    stack = make_stack(prefetch=1, priority_fairness=0)
    bgp = stack.publisher()
    key = f"prio-{uuid.uuid4().hex}"
    levels = [Priority.NONE, Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL]
    for round_ in range(2):
        for level in levels:
            bgp.dispatch(Append(key=key, item=f"{level.value}:{round_}"), priority=level)
    with stack.new_worker(concurrency=1) as _worker:
        deadline = time.monotonic() + 30
        while sink.llen(key) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
    ran = [int(item.split(":")[0]) for item in sink.lrange(key, 0, -1)]
    assert ran == sorted(ran) and len(ran) == 10


def test_sigkill_mid_run_loses_no_command(make_stack, sink):
    stack = make_stack(visibility_timeout=3)
    bgp = stack.publisher()
    key = f"kill-{uuid.uuid4().hex}"
    commands = [SlowAppend(key=key, item=str(i), seconds=0.2) for i in range(30)]
    for command in commands:
        bgp.dispatch(command)
    worker = stack.new_worker().start()
    deadline = time.monotonic() + 30
    while sink.llen(key) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.kill()  # SIGKILL: main process and pool children, mid-task
    assert sink.llen(key) < 30
    with stack.new_worker():
        deadline = time.monotonic() + 60
        while len(set(sink.lrange(key, 0, -1))) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
    record("SIGKILL worker mid-run (Azure)", [str(i) for i in range(30)], sink.lrange(key, 0, -1))
    assert set(sink.lrange(key, 0, -1)) == {str(i) for i in range(30)}


def test_large_command_goes_through_blob_storage_and_the_blob_is_deleted(make_stack):
    stack = make_stack(blob_container="bgp-worker-claims")
    bgp = stack.publisher()
    text = "y" * 120_000
    command = Echo(text=text)
    with stack.new_worker():
        assert bgp.dispatch(command).get(timeout=30) == text
        container = BlobServiceClient.from_connection_string(
            stack.azurite.connection_string).get_container_client("bgp-worker-claims")
        deadline = time.monotonic() + 10
        while list(container.list_blobs()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(container.list_blobs()) == []


def test_oversize_command_with_claim_check_off_fails_at_dispatch(make_stack):
    bgp = make_stack(blob_container=None).publisher()
    with pytest.raises(MessageTooLarge, match=r"above Azure Storage Queue's limit of 65536"):
        bgp.dispatch(Echo(text="z" * 70_000))


def test_publisher_and_worker_survive_an_azurite_restart(restartable_azurite, redis_base,
                                                         sink, prefix, monkeypatch):
    options = {**FAST, "queue_name_prefix": prefix, "visibility_timeout": 5,
               # kombu's reconnect back-off, read from the transport options
               "interval_start": 0.5, "interval_step": 0.5, "interval_max": 1}
    queue = f"restart-{uuid.uuid4().hex[:6]}"
    stack = AzureStack(restartable_azurite,
                       azure_env(restartable_azurite, redis_base, queue, options), queue,
                       options)
    stack.env["BGP_TEST_EVENTS"] = "memory://"
    key = f"restart-{uuid.uuid4().hex}"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", restartable_azurite.connection_string)
    bgp = stack.publisher()
    with stack.new_worker() as worker:
        for i in range(10):
            bgp.dispatch(SlowAppend(key=key, item=f"a{i}", seconds=0.1))
        restartable_azurite.stop()
        errors: list[BaseException] = []

        def publish_during_outage() -> None:
            try:
                for i in range(10):
                    bgp.dispatch(SlowAppend(key=key, item=f"b{i}", seconds=0.1),
                                 retry_policy={"max_retries": 60, "interval_start": 0.5,
                                               "interval_step": 0.5, "interval_max": 1})
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=publish_during_outage)
        thread.start()
        time.sleep(3)
        restartable_azurite.start()
        thread.join(60)
        assert not errors, errors
        deadline = time.monotonic() + 60
        while len(set(sink.lrange(key, 0, -1))) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        log = worker.log()
        assert worker.proc.poll() is None  # the same worker, still running
    expected = {f"a{i}" for i in range(10)} | {f"b{i}" for i in range(10)}
    record("Azurite down 3 s and restarted", expected, sink.lrange(key, 0, -1))
    assert set(sink.lrange(key, 0, -1)) == expected, log[-3000:]
