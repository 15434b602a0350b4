"""kombu transports shipped by celery-bgp; importing this registers their URL aliases.

Only names are registered here (``azurequeue://`` ->
``celery_bgp.transport.azurequeue:Transport``), so importing ``celery_bgp`` never
imports an Azure SDK: kombu imports the transport module when a connection uses it.
"""
from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

TRANSPORT_ALIASES["azurequeue"] = "celery_bgp.transport.azurequeue:Transport"

__all__: list[str] = []
