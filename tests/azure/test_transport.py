"""The azurequeue:// transport through kombu, against a real Azurite (issue 3, points 1-9)."""
from __future__ import annotations

import logging
import time
import traceback
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.queue import QueueServiceClient
from kombu import Connection, Exchange, Queue

from celery_bgp.transport import names
from celery_bgp.transport.azurequeue import Channel, Transport
from celery_bgp.transport.storage import MAX_DELAY, MessageTooLarge
from tests.azure.helpers import collect, decode, peek_texts, publish, task_queue
from tests.helpers.azurite import ACCOUNT, KEY, free_ports

pytestmark = pytest.mark.integration


def base(conn, queue):
    return conn.default_channel.base_name(queue)


# -- 1. at-least-once, leases -------------------------------------------------------------


def test_unacked_message_of_a_dead_consumer_comes_back(connect):
    dead = connect(visibility_timeout=2)
    publish(dead, "work", {"n": 1})
    [held] = collect(dead, "work", 1, ack=False)
    assert held.delivery_info["azure_message_id"]
    assert held.delivery_info["azure_pop_receipt"]
    dead.transport.leases.stop()  # as if SIGKILLed: nobody renews or releases it
    dead.default_channel.do_restore = False
    live = connect(visibility_timeout=2)
    assert collect(live, "work", 1, timeout=1.0) == []
    [again] = collect(live, "work", 1, timeout=5)
    assert again.payload == {"n": 1}
    assert again.delivery_info["redelivered"] is True
    assert again.delivery_info["azure_dequeue_count"] == 2
    assert live.default_channel._size("work") == 0


def test_lease_is_renewed_while_the_message_is_held(connect):
    holder = connect(visibility_timeout=2)
    publish(holder, "long", {"n": 1})
    [held] = collect(holder, "long", 1, ack=False)
    other = connect(visibility_timeout=2)
    assert collect(other, "long", 1, timeout=4.5) == []  # > 2 leases long
    held.ack()
    assert holder.transport.leases.flush()
    assert holder.default_channel._size("long") == 0


def test_explicit_lease_extension(connect):
    conn = connect(visibility_timeout=2)
    publish(conn, "ext", {"n": 1})
    [held] = collect(conn, "ext", 1, ack=False)
    conn.transport.leases.stop()
    assert conn.default_channel.extend_lease(held.delivery_tag, 6)
    assert collect(connect(), "ext", 1, timeout=3) == []
    held.ack()


def test_reject_with_requeue_is_visible_at_once_without_requeue_deleted(connect):
    conn = connect(visibility_timeout=60)
    publish(conn, "rej", {"n": 1})
    [first] = collect(conn, "rej", 1, ack=False)
    first.reject(requeue=True)
    [second] = collect(conn, "rej", 1, ack=False, timeout=5)
    assert second.payload == {"n": 1}
    second.reject(requeue=False)
    assert conn.transport.leases.flush()
    assert conn.default_channel._size("rej") == 0


# -- 2. batches and polling -----------------------------------------------------------------


def test_receive_batches_are_bounded_by_prefetch(connect):
    conn = connect()
    for i in range(40):
        publish(conn, "batch", {"n": i})
    calls = []
    storage = conn.transport.storage
    real = storage.receive
    storage.receive = lambda name, count: calls.append(count) or real(name, count)
    got = collect(conn, "batch", 10, prefetch=10, ack=False)
    assert len(got) == 10
    normal = [c for c in calls if c == 10]
    assert normal, calls  # one receive asked for the whole budget
    for m in got:
        m.ack()
    conn.transport.leases.flush()
    got = collect(conn, "batch", 30, prefetch=0)
    assert len(got) == 30
    assert max(calls) == 32


def test_polling_backs_off_when_idle_and_resets_on_a_message(connect):
    conn = connect(polling_interval=0.05, max_polling_interval=0.4)
    physical = base(conn, "idle")
    collect(conn, "idle", 1, timeout=2.0)
    assert conn.transport.schedule.interval(physical) == pytest.approx(0.4)
    publish(conn, "idle", {"n": 1})
    started = time.monotonic()
    assert len(collect(conn, "idle", 1, timeout=3)) == 1
    assert time.monotonic() - started < 1.5
    assert conn.transport.schedule.interval(physical) == 0.0


# -- 3. delay and TTL ---------------------------------------------------------------------


def test_countdown_uses_the_queue_not_worker_memory(connect):
    conn = connect()
    publish(conn, "later", {"n": 1}, delay=3)
    assert peek_texts(conn, base(conn, "later")) == []  # invisible in Azure
    assert conn.default_channel._size("later") == 1
    started = time.monotonic()
    [m] = collect(conn, "later", 1, timeout=8)
    assert time.monotonic() - started > 1.5
    assert m.payload == {"n": 1}


def test_delay_beyond_seven_days_sends_the_maximum_then_redefers(connect):
    conn = connect()
    sent = []
    storage = conn.transport.storage
    real = storage.send_text
    storage.send_text = lambda name, text, **kw: sent.append((text, kw)) or real(name, text, **kw)
    publish(conn, "far", {"n": 1}, delay=9 * 24 * 3600)
    text, options = sent[-1]
    assert options["delay"] == MAX_DELAY
    # Once those 7 days are over the message is received before its ETA: it must go back
    # to sleep (as a fresh message) instead of waiting in the worker's memory.
    physical = base(conn, "far")
    real(physical, text)  # the same message, visible now
    assert collect(conn, "far", 1, timeout=1.0) == []
    text2, options2 = sent[-1]
    assert text2 == text and options2["delay"] > 8 * 24 * 3600 - MAX_DELAY - 5
    assert conn.default_channel._size("far") == 2  # both asleep, nothing delivered


def test_messages_never_expire_by_default(connect):
    conn = connect()
    publish(conn, "forever", {"n": 1})
    [peeked] = conn.transport.storage.queue_client(base(conn, "forever")).peek_messages()
    assert peeked.expires_on.year >= 9999


def test_message_ttl_option_expires_messages(connect):
    conn = connect(message_ttl=1)
    publish(conn, "short", {"n": 1})
    time.sleep(2.2)
    assert collect(conn, "short", 1, timeout=1) == []


# -- 4. priorities ------------------------------------------------------------------------


def test_priorities_are_served_highest_first(connect):
    conn = connect(priority_fairness=0)
    for number in (1, 3, 5, 7, 9, 1, 3, 5, 7, 9):
        publish(conn, "prio", {"p": number}, priority=number)
    publish(conn, "prio", {"p": "default"})
    got = collect(conn, "prio", 11, prefetch=1)
    order = [m.payload["p"] for m in got]
    assert order[:4] == [9, 9, 7, 7] and order[-2:] == [1, 1]
    levels = [names.level_for_priority(None if p == "default" else p) for p in order]
    assert levels == sorted(levels)


def test_lower_priorities_are_not_starved(connect):
    conn = connect(priority_fairness=4)
    for _ in range(24):
        publish(conn, "starve", {"p": 9}, priority=9)
    publish(conn, "starve", {"p": 1}, priority=1)
    got = collect(conn, "starve", 25, prefetch=1)
    position = [m.payload["p"] for m in got].index(1)
    assert position < 20  # served before the critical backlog was drained


# -- 5. fanout and shared bindings --------------------------------------------------------


def test_fanout_reaches_queues_bound_by_other_connections(connect):
    exchange = Exchange("broadcast", type="fanout")
    receivers = []
    for name in ("fan-a", "fan-b"):
        conn = connect()
        Queue(name, exchange)(conn.default_channel).declare()
        receivers.append((conn, name))
    sender = connect()
    from kombu import Producer

    Producer(sender.default_channel).publish({"hello": "all"}, exchange=exchange,
                                             declare=[exchange], serializer="json")
    for conn, name in receivers:
        assert [m.payload for m in collect(conn, name, 1, timeout=5)] == [{"hello": "all"}]


def test_direct_route_to_a_queue_declared_by_another_process(connect):
    owner = connect()
    Queue("replies-x", Exchange("rx", type="direct"), routing_key="k1")(
        owner.default_channel).declare()
    other = connect()
    from kombu import Producer

    Producer(other.default_channel).publish(
        {"reply": 1}, exchange=Exchange("rx", type="direct"), routing_key="k1",
        declare=[Exchange("rx", type="direct")], serializer="json")
    assert owner.default_channel._size("replies-x") == 1


# -- 6. poison ----------------------------------------------------------------------------


def test_garbage_goes_to_poison_and_good_messages_still_flow(connect):
    from celery_bgp.transport.poison import PoisonQueues

    conn = connect()
    publish(conn, "dirty", {"n": 0})
    conn.transport.storage.send_text(base(conn, "dirty"), "<<this is not base64>>")
    publish(conn, "dirty", {"n": 1})
    got = collect(conn, "dirty", 2, timeout=5)
    assert sorted(m.payload["n"] for m in got) == [0, 1]
    poison = PoisonQueues(conn)
    [entry] = poison.list("dirty")
    assert entry.reason == "undecodable: message text is not base64"
    assert entry.text == "<<this is not base64>>"
    assert entry.source == base(conn, "dirty")
    assert poison.name("dirty") == base(conn, "dirty") + "-poison"
    assert poison.purge("dirty") == 1
    assert poison.count("dirty") == 0


def test_repeatedly_failing_message_is_dead_lettered_then_requeued(connect):
    from celery_bgp.transport.poison import PoisonQueues

    conn = connect(visibility_timeout=1, max_dequeue_count=2)
    publish(conn, "flaky", {"n": 1}, headers={"id": "task-1", "task": "proj.flaky"})
    for _ in range(2):
        [m] = collect(conn, "flaky", 1, ack=False, timeout=5)
        m.reject(requeue=True)  # e.g. a worker lost while running it
    assert collect(conn, "flaky", 1, timeout=2) == []
    poison = PoisonQueues(conn)
    [entry] = poison.list("flaky")
    assert "received 3 times, above max_dequeue_count 2" in entry.reason
    assert (entry.task, entry.task_id) == ("proj.flaky", "task-1")
    assert poison.requeue("flaky") == 1
    assert poison.count("flaky") == 0
    [back] = collect(conn, "flaky", 1, timeout=5)
    assert back.payload == {"n": 1}
    assert back.delivery_info["azure_dequeue_count"] == 1


# -- 7. names, size, purge, delete --------------------------------------------------------


def test_size_purge_and_delete_use_the_prefix_everywhere(connect, prefix, azurite):
    conn = connect()
    for number in (1, 5, 9):
        publish(conn, "My__Queue", {"p": number}, priority=number)
    channel = conn.default_channel
    assert channel._size("My__Queue") == 3
    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    mine = sorted(q.name for q in service.list_queues(name_starts_with=prefix))
    family = sorted(p for _, p in channel.physical_queues("My__Queue"))
    assert mine == family
    assert all(name.startswith(prefix + "my-queue-h") for name in mine)
    assert channel.queue_purge("My__Queue") == 3
    assert channel._size("My__Queue") == 0
    assert sorted(q.name for q in service.list_queues(name_starts_with=prefix)) == family
    channel.queue_delete("My__Queue")
    assert [q.name for q in service.list_queues(name_starts_with=prefix)] == []
    assert channel._purge("never-declared") == 0  # no stray queue either
    assert [q.name for q in service.list_queues(name_starts_with=prefix)] == []


# -- 8. message text, claim-check ---------------------------------------------------------


def test_message_text_is_base64_of_the_json_envelope(connect):
    conn = connect()
    publish(conn, "b64", {"n": 1}, headers={"task": "proj.t"})
    [text] = peek_texts(conn, base(conn, "b64"))
    envelope = decode(text)
    assert envelope["headers"]["task"] == "proj.t"
    assert envelope["content-type"] == "application/json"


def test_large_message_travels_through_blob_storage(connect, azurite):
    from azure.storage.blob import BlobServiceClient

    conn = connect(blob_container="bgp-claims")
    big = "x" * 200_000
    publish(conn, "big", {"data": big})
    [text] = peek_texts(conn, base(conn, "big"))
    ref = decode(text)["bgp_claim_check"]
    container = BlobServiceClient.from_connection_string(
        azurite.connection_string).get_container_client("bgp-claims")
    assert [b.name for b in container.list_blobs()] == [ref["blob"]]
    [m] = collect(conn, "big", 1, timeout=5)
    assert m.payload == {"data": big}
    assert [b.name for b in container.list_blobs(name_starts_with=ref["blob"])] == []


def test_oversize_message_with_claim_check_off_fails_at_publish(connect):
    conn = connect(blob_container=None)
    with pytest.raises(MessageTooLarge) as info:
        publish(conn, "toobig", {"data": "x" * 70_000})
    text = str(info.value)
    assert "65536" in text and "blob_container" in text
    assert str(info.value.size) in text
    assert conn.default_channel._size("toobig") == 0


# -- 9. credentials, secrets, per-connection clients --------------------------------------


def account_sas() -> str:
    """An account SAS for the queue, table and blob services of Azurite's account."""
    from azure.storage.queue._shared.shared_access_signature import SharedAccessSignature

    return SharedAccessSignature(ACCOUNT, KEY).generate_account(
        "bqt", "sco", "rwdlacup", datetime.now(timezone.utc) + timedelta(hours=1))


def test_account_url_with_key_or_sas(azurite, prefix):
    opts = {"queue_name_prefix": prefix, "polling_interval": 0.05}
    with Connection("azurequeue://", transport_options={
            **opts, "account_url": azurite.queue_url, "credential": KEY,
            "table_account_url": azurite.table_url}) as conn:
        publish(conn, "keyed", {"n": 1})
        assert len(collect(conn, "keyed", 1)) == 1
    sas = account_sas()
    with Connection("azurequeue://", transport_options={
            **opts, "account_url": azurite.queue_url, "credential": sas,
            "table_account_url": azurite.table_url}) as conn:
        publish(conn, "signed", {"n": 2})
        assert [m.payload for m in collect(conn, "signed", 1)] == [{"n": 2}]


def test_secrets_never_reach_logs_or_errors(azurite, prefix, caplog):
    sas = account_sas()
    signature = sas.split("sig=")[1].split("&")[0]
    caplog.set_level(logging.DEBUG)
    logging.getLogger("azure").setLevel(logging.DEBUG)
    try:
        opts = {"queue_name_prefix": prefix, "account_url": azurite.queue_url,
                "credential": sas, "table_account_url": azurite.table_url}
        with Connection("azurequeue://", transport_options=opts) as conn:
            publish(conn, "secret", {"n": 1})
            collect(conn, "secret", 1)
        [closed] = free_ports(1)
        dead_url = azurite.queue_url.replace(str(azurite.queue_port), str(closed))
        with Connection("azurequeue://", transport_options={**opts, "account_url": dead_url},
                        connect_timeout=2) as conn, pytest.raises(Exception) as info:
            conn.transport.establish_connection()
        seen = "".join(traceback.format_exception(info.value)) + caplog.text
    finally:
        logging.getLogger("azure").setLevel(logging.NOTSET)
    assert "unreachable" in seen
    for secret in (signature, KEY, KEY[:20]):
        assert secret not in seen


def test_clients_and_state_belong_to_one_connection(connect):
    a, b = connect(), connect(queue_name_prefix="other-")
    assert a.transport.clients is not b.transport.clients
    assert a.transport.storage is not b.transport.storage
    assert a.transport.leases is not b.transport.leases
    for cls in (Transport, Channel):
        shared = [k for k, v in vars(cls).items()
                  if isinstance(v, (dict, set, list)) and not k.startswith("__")
                  and k != "implements"]  # kombu capability metadata, read-only
        assert shared == [], shared
    publish(a, "iso", {"n": 1})
    assert b.default_channel._size("iso") == 0
    assert a.default_channel._size("iso") == 1


def test_celery_task_queue_declared_via_task_queue_helper(connect):
    conn = connect()
    task_queue("declared")(conn.default_channel).declare()
    assert conn.default_channel._has_queue("declared")
