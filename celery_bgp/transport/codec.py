"""Queue message text: base64 of the kombu JSON envelope, claim-check references.

The text of every message is the base64 of a JSON object, which is what an Azure
Functions queue trigger decodes by default. The object is either the kombu
envelope itself (``body``, ``headers``, ``properties`` ...) or, for a payload too
large for one queue message, a claim-check reference
``{"bgp_claim_check": {"container": ..., "blob": ..., "size": ...}}`` to a blob
holding the envelope's JSON. No Azure SDK is imported here.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "CLAIM_CHECK_KEY",
    "MAX_MESSAGE_BYTES",
    "UndecodableMessage",
    "claim_check_text",
    "decode_text",
    "encode_envelope",
    "eta_seconds",
    "expiration_seconds",
    "parse_envelope",
]

#: Azure Storage Queue's limit for one message, after encoding (64 KiB).
MAX_MESSAGE_BYTES = 64 * 1024
CLAIM_CHECK_KEY = "bgp_claim_check"


class UndecodableMessage(ValueError):
    """Queue text that is not a celery-bgp message; the reason says what is wrong."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_envelope(envelope: dict[str, Any]) -> tuple[str, bytes]:
    """Return (queue text, envelope JSON bytes) for a kombu envelope."""
    raw = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _b64(raw), raw


def claim_check_text(container: str, blob: str, size: int) -> str:
    """Queue text of a claim-check reference to ``container/blob``."""
    ref = {CLAIM_CHECK_KEY: {"container": container, "blob": blob, "size": size}}
    return _b64(json.dumps(ref, separators=(",", ":")).encode("ascii"))


def decode_text(text: Any) -> dict[str, Any]:
    """Decode queue text into a JSON object: an envelope or a claim-check reference.

    Raises :class:`UndecodableMessage` with the reason (never the content).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise UndecodableMessage("message text is not ASCII base64") from None
    if not isinstance(text, str) or not text:
        raise UndecodableMessage("message text is empty")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise UndecodableMessage("message text is not base64") from None
    return parse_envelope(raw)


def parse_envelope(raw: bytes | str) -> dict[str, Any]:
    """Parse JSON bytes into a message object and check its shape."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UndecodableMessage(f"message is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UndecodableMessage(f"message JSON is a {type(data).__name__}, not an object")
    ref = data.get(CLAIM_CHECK_KEY)
    if ref is not None:
        if not (isinstance(ref, dict) and isinstance(ref.get("container"), str)
                and isinstance(ref.get("blob"), str)):
            raise UndecodableMessage("malformed claim-check reference")
        return data
    if not isinstance(data.get("properties"), dict) or "body" not in data:
        raise UndecodableMessage("message JSON is not a kombu envelope (no body/properties)")
    if not isinstance(data.get("headers") or {}, dict):
        raise UndecodableMessage("message headers are not an object")
    return data


def claim_check_ref(data: dict[str, Any]) -> dict[str, Any] | None:
    """The claim-check reference in a decoded message object, if it is one."""
    ref = data.get(CLAIM_CHECK_KEY)
    return ref if isinstance(ref, dict) else None


def eta_seconds(envelope: dict[str, Any]) -> float:
    """Seconds until the Celery ETA of ``envelope`` (0 without one)."""
    eta = (envelope.get("headers") or {}).get("eta")
    if not eta or not isinstance(eta, str):
        return 0.0
    try:
        when = datetime.fromisoformat(eta)
    except ValueError:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - datetime.now(timezone.utc)).total_seconds()


def expiration_seconds(envelope: dict[str, Any]) -> int | None:
    """kombu's per-message ``expiration`` (Celery's ``expires``) in whole seconds, or None."""
    value = (envelope.get("properties") or {}).get("expiration")
    if value in (None, ""):
        return None
    try:
        return max(1, math.ceil(float(value) / 1000))
    except (TypeError, ValueError):
        return None
