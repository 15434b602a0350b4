"""Bounded decompression of received messages, in the worker's main process.

kombu decompresses a message body while it builds the message object (its
``compression`` header names the codec), in the process that consumes: a few hundred
kilobytes of zlib can inflate to gigabytes there before any check of ours runs.
:func:`install` replaces kombu's registered decoders with ones that, in the process
that installed them (the worker's consumer; pool children and other processes keep
kombu's own), refuse a codec the app did not enable (``task_compression`` /
``result_compression``) without decompressing anything, and inflate the others in a
stream that stops at ``limit`` bytes. A refusal raises :class:`CompressionRefused`;
kombu keeps it on the message, and the consumer dead-letters the message with the
reason (see :mod:`celery_bgp.worker`).
"""
from __future__ import annotations

import bz2
import dataclasses
import logging
import lzma
import os
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from kombu import compression

__all__ = ["CompressionRefused", "bounded", "enabled_compressions", "install", "uninstall"]

logger = logging.getLogger("celery_bgp.worker")

#: Memory an xz/lzma stream may ask for (its dictionary), whatever its header says.
LZMA_MEMLIMIT = 128 * 1024 * 1024


class CompressionRefused(ValueError):
    """A compressed body the worker will not inflate; the message says why."""


@dataclasses.dataclass(frozen=True)
class _Policy:
    pid: int
    allowed: frozenset[str]
    limit: int | None


_policy: _Policy | None = None
_originals: dict[str, Callable[[Any], bytes]] = {}
_lock = threading.Lock()


def enabled_compressions(names: Iterable[Any]) -> frozenset[str]:
    """kombu content types of the given compression names/aliases (unknown ones dropped)."""
    found = set()
    for name in names:
        if not name:
            continue
        try:
            found.add(compression.get_encoder(str(name))[1])
        except KeyError:
            logger.warning("celery-bgp: compression %r is not known to kombu", name)
    return frozenset(found)


def install(allowed: Iterable[str], limit: int | None) -> object:
    """Bound kombu's decoders in this process: only ``allowed`` codecs, ``limit`` bytes out.

    ``allowed`` holds kombu content types (see :func:`enabled_compressions`); ``limit``
    None inflates enabled codecs without a bound. The last call wins; returns a token
    for :func:`uninstall`.
    """
    global _policy
    with _lock:
        _policy = policy = _Policy(os.getpid(), frozenset(allowed), limit)
        for content_type in compression.encoders():
            decoder = compression.get_decoder(content_type)
            if getattr(decoder, "_bgp_bounded", False):
                continue
            _originals[content_type] = decoder
            encoder = compression.get_encoder(content_type)[0]
            compression.register(encoder, _bounded_decoder(content_type, decoder),
                                 content_type)
        for content_type in _policy.allowed:
            if content_type not in _STREAMS:
                logger.warning(
                    "celery-bgp: compression %s is enabled but celery-bgp cannot bound how "
                    "much it inflates; a small message may use a lot of memory", content_type)
    return policy


def uninstall(token: object) -> None:
    """Back to kombu's own decoding, if the policy ``token`` installed is still the one."""
    global _policy
    with _lock:
        if _policy is token:
            _policy = None


def _bounded_decoder(content_type: str, original: Callable[[Any], bytes]
                     ) -> Callable[[Any], bytes]:
    def decode(body: Any) -> bytes:
        policy = _policy
        if policy is None or policy.pid != os.getpid():
            return original(body)
        if content_type not in policy.allowed:
            raise CompressionRefused(
                f"compression {content_type!r} is not enabled on this worker (set "
                "task_compression or result_compression to accept it); the body was not "
                "decompressed")
        if policy.limit is None or content_type not in _STREAMS:
            return original(body)
        return bounded(content_type, body, policy.limit)

    decode._bgp_bounded = True  # type: ignore[attr-defined]
    decode.__name__ = f"bounded_{getattr(original, '__name__', 'decompress')}"
    return decode


def bounded(content_type: str, body: Any, limit: int) -> bytes:
    """Decompress ``body`` like kombu, but never to more than ``limit`` bytes."""
    if isinstance(body, str):
        body = body.encode("latin-1")
    size = len(body)
    if size > limit:
        raise CompressionRefused(
            f"compressed body is {size} bytes, above the worker's limit of {limit} bytes "
            "(bgp_max_message_bytes)")
    return _STREAMS[content_type](body, limit)


def _too_large(limit: int) -> CompressionRefused:
    return CompressionRefused(
        f"compressed body decompresses to more than {limit} bytes, the worker's limit "
        "(bgp_max_message_bytes); decompression stopped there")


def _zlib(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    if not inflater.eof:
        raise zlib.error("Error -5 while decompressing data: incomplete or truncated stream")
    return out


def _streams(make: Callable[[], Any], error: type[Exception]) -> Callable[[bytes, int], bytes]:
    """bz2/lzma: concatenated streams, as ``bz2.decompress``/``lzma.decompress`` read them."""

    def inflate(body: bytes, limit: int) -> bytes:
        out = bytearray()
        data = body
        while data:
            inflater = make()
            try:
                out += inflater.decompress(data, limit + 1 - len(out))
            except error:
                if out:
                    break  # trailing garbage after a complete stream: ignored, as kombu does
                raise
            if len(out) > limit:
                raise _too_large(limit)
            if not inflater.eof:
                if not inflater.needs_input:
                    raise _too_large(limit)
                raise error("Compressed data ended before the end-of-stream marker was reached")
            data = inflater.unused_data
        return bytes(out)

    return inflate


_STREAMS: dict[str, Callable[[bytes, int], bytes]] = {
    "application/x-gzip": _zlib,
    "application/x-bz2": _streams(bz2.BZ2Decompressor, OSError),
    "application/x-lzma": _streams(lambda: lzma.LZMADecompressor(memlimit=LZMA_MEMLIMIT),
                                   lzma.LZMAError),
}
