"""Configuration shared by the hostile-message worker app and the tests' publishers."""
from __future__ import annotations

import json
from collections.abc import Mapping

from celery import Celery
from kombu import Exchange, Queue


def dead_letter_queue(queue: str) -> str:
    return f"{queue}-dlq"


def task_queue(queue: str, broker: str) -> Queue:
    """The worker's queue; on RabbitMQ, rejected messages go to ``<queue>-dlq``."""
    arguments = None
    if broker.startswith("amqp"):
        arguments = {"x-dead-letter-exchange": "",
                     "x-dead-letter-routing-key": dead_letter_queue(queue)}
    return Queue(queue, Exchange(queue, type="direct"), routing_key=queue,
                 queue_arguments=arguments)


def configure(app: Celery, env: Mapping[str, str]) -> None:
    broker, queue = env["BGP_TEST_BROKER"], env["BGP_TEST_QUEUE"]
    app.conf.update(
        broker_url=broker,
        task_default_queue=queue,
        task_queues=[task_queue(queue, broker)],
        task_ignore_result=True,
        # The project's own tasks may use pickle: command tasks must still refuse it.
        accept_content=["json", "pickle"],
        task_compression="gzip",
        task_acks_late=True,
        broker_connection_retry_on_startup=True,
    )
    if broker.startswith("azurequeue"):
        app.conf.broker_transport_options = json.loads(env["BGP_TEST_TRANSPORT_OPTIONS"])

