"""kombu transports shipped by celery-bgp; importing this registers their URL aliases.

Only names are registered here (``azurequeue://`` ->
``celery_bgp.transport.azurequeue:Transport``), so importing ``celery_bgp`` never
imports an Azure SDK: kombu imports the transport module when a connection uses it.
The secret transport options (``connection_string``, ``credential``) are registered
with the setting names Celery masks in ``celery report`` and ``celery inspect conf``.
"""
from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

from .credentials import hide_secret_options

TRANSPORT_ALIASES["azurequeue"] = "celery_bgp.transport.azurequeue:Transport"
hide_secret_options()

__all__: list[str] = []
