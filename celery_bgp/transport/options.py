"""The ``azurequeue://`` transport options: names, defaults and validation.

The names are a contract (they match kombu's SQS transport where it has one). Read
from ``broker_transport_options``; unknown keys are left for kombu.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..exceptions import ImproperlyConfigured
from .names import check_prefix

__all__ = ["DEFAULTS", "DEFAULT_CLAIM_CHECK_CONTAINER", "TransportOptions"]

#: Claim-check container used unless ``blob_container`` says otherwise (created on first use).
DEFAULT_CLAIM_CHECK_CONTAINER = "bgp-claim-check"

DEFAULTS: dict[str, Any] = {
    "connection_string": None,
    "account_url": None,
    "credential": None,
    "queue_name_prefix": "",
    "visibility_timeout": 1800,
    "polling_interval": 0.2,
    "max_polling_interval": 1.0,
    "batch_size": 32,
    "message_ttl": None,
    "max_dequeue_count": 5,
    "blob_container": DEFAULT_CLAIM_CHECK_CONTAINER,  # None, "" or False: claim-check off
    # beyond the contract
    "fanout_message_ttl": 300,
    "binding_table": "bgpbindings",
    "priority_fairness": 10,
    "ack_threads": 4,
    "scheduled_table": "bgpscheduled",  # None: delayed messages are not recorded
}


@dataclasses.dataclass(frozen=True)
class TransportOptions:
    """Validated options of one connection (secrets are not kept here)."""

    queue_name_prefix: str
    visibility_timeout: int
    polling_interval: float
    max_polling_interval: float
    batch_size: int
    message_ttl: int  # -1: never expire
    max_dequeue_count: int
    blob_container: str | None
    fanout_message_ttl: int
    binding_table: str
    priority_fairness: int
    ack_threads: int
    scheduled_table: str | None = None

    @classmethod
    def from_transport_options(cls, raw: dict[str, Any]) -> TransportOptions:
        """Merge ``raw`` over :data:`DEFAULTS` and check ranges."""
        o = {key: raw.get(key, default) for key, default in DEFAULTS.items()}
        vt = int(o["visibility_timeout"])
        if not 1 <= vt <= 7 * 24 * 3600:
            raise ImproperlyConfigured("visibility_timeout must be 1 s to 7 days")
        batch = int(o["batch_size"])
        if not 1 <= batch <= 32:
            raise ImproperlyConfigured("batch_size must be between 1 and 32")
        poll = float(o["polling_interval"])
        max_poll = max(poll, float(o["max_polling_interval"]))
        if poll < 0:
            raise ImproperlyConfigured("polling_interval must not be negative")
        ttl = o["message_ttl"]
        ttl = -1 if ttl in (None, -1, "-1", "none", "None") else int(ttl)
        if ttl != -1 and ttl < 1:
            raise ImproperlyConfigured("message_ttl must be positive seconds, or None/-1")
        dequeue = int(o["max_dequeue_count"])
        if dequeue < 1:
            raise ImproperlyConfigured("max_dequeue_count must be at least 1")
        return cls(
            queue_name_prefix=check_prefix(str(o["queue_name_prefix"] or "")),
            visibility_timeout=vt,
            polling_interval=poll,
            max_polling_interval=max_poll,
            batch_size=batch,
            message_ttl=ttl,
            max_dequeue_count=dequeue,
            blob_container=o["blob_container"] or None,
            fanout_message_ttl=int(o["fanout_message_ttl"]),
            binding_table=str(o["binding_table"]),
            priority_fairness=max(0, int(o["priority_fairness"])),
            ack_threads=max(0, int(o["ack_threads"])),
            scheduled_table=str(o["scheduled_table"]) if o["scheduled_table"] else None,
        )
