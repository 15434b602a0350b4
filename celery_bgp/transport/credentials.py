"""Azure credentials and service clients for one connection, with secrets kept out of text.

Sources, first match wins: the ``connection_string`` option, an ``account_url``
(option or the broker URL's host) with a ``credential`` (account key, SAS token,
``"DefaultAzureCredential"``/``"ManagedIdentityCredential"`` or any azure-core
credential object; DefaultAzureCredential when none is given), then the
``AZURE_STORAGE_CONNECTION_STRING`` environment variable. ``UseDevelopmentStorage=true``
means Azurite on its default ports. Without any of them the connection fails when it is
used (connect, send, receive), not when it is built: Celery builds transports of the
broker URL alone to print it (``celery report``, ``celery inspect conf``). Clients are
built per connection and never shared between connections. :func:`redact` strips keys,
signatures and connection strings from any text before it reaches a log or an
exception; :func:`hide_secret_options` keeps the :data:`SECRET_OPTIONS` out of Celery's
configuration reports.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import BGPError, ImproperlyConfigured
from ..extras import require

__all__ = [
    "SECRET_OPTIONS",
    "AzureClients",
    "AzureStorageError",
    "BrokerUnavailable",
    "azure_errors",
    "hide_secret_options",
    "parse_connection_string",
    "redact",
]

ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_DEV_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}

#: Seconds to open a TCP connection to Azure Storage: an unreachable endpoint fails
#: within this, and kombu's retry policy (not the SDK's) decides what happens next.
CONNECT_TIMEOUT = 3
#: Client settings: a refused or timed-out connect is never retried by the SDK
#: (``retry_connect=0``), so a connection error reaches kombu at once; a throttled
#: or failed request (HTTP 5xx, a read timeout) is still retried by the SDK, briefly.
CLIENT_KWARGS: dict[str, Any] = {
    "retry_total": 2,
    "retry_connect": 0,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 2,
    "connection_timeout": CONNECT_TIMEOUT,
    "read_timeout": 30,
}
#: Queue and blob clients retry with their own policy (15 s first back-off by default).
STORAGE_KWARGS: dict[str, Any] = {
    "retry_total": 2,
    "retry_connect": 0,
    "initial_backoff": 0.5,
    "increment_base": 2,
    "random_jitter_range": 1,
    "connection_timeout": CONNECT_TIMEOUT,
    "read_timeout": 30,
}

#: Transport options whose values are secrets (an account key or SAS token may be in
#: either). Option names with KEY, TOKEN, SECRET, PASS or SIGNATURE are Celery's already.
SECRET_OPTIONS = ("connection_string", "credential")


def hide_secret_options() -> None:
    """Register :data:`SECRET_OPTIONS` with the setting names Celery masks.

    ``celery report``, ``celery inspect conf`` (and ``inspect report``) print the
    configuration through ``celery.app.utils.filter_hidden_settings``, which masks a
    value (at any depth, ``broker_transport_options`` included) when its key matches
    ``celery.app.utils.HIDDEN_SETTINGS``; these names do not. Importing
    ``celery_bgp`` (or ``celery_bgp.transport``) calls this; calling it again is a no-op.
    """
    from celery.app import utils

    hidden = utils.HIDDEN_SETTINGS
    missing = [name for name in SECRET_OPTIONS if not hidden.search(name)]
    if missing:
        utils.HIDDEN_SETTINGS = re.compile(
            "|".join([hidden.pattern, *(re.escape(name.upper()) for name in missing)]),
            hidden.flags | re.IGNORECASE)


_SECRET_PATTERNS = [
    re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|sig|secret|password)=[^;&\s'\"]+"),
    re.compile(r"(?i)\b(SharedKey(?:Lite)?\s+[^:\s]+):\S+"),
]


class AzureStorageError(BGPError):
    """An Azure Storage call failed (status and error code, never a secret)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 exists: bool = False):
        super().__init__(message)
        self.status = status
        self.code = code
        self.exists = exists or status == 409

    @property
    def not_found(self) -> bool:
        """The queue, message, table or blob does not exist (HTTP 404)."""
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """It already exists (or is being deleted)."""
        return self.exists


class BrokerUnavailable(AzureStorageError, ConnectionError):
    """Azure Storage could not be reached; kombu treats this as a lost connection."""


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove account keys, SAS signatures and the given secret values from ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)}=***", text)
    return _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}:***", text)


def parse_connection_string(value: str) -> dict[str, str]:
    """Split ``key=value;...`` (keys lowercased); expand ``UseDevelopmentStorage=true``."""
    parts: dict[str, str] = {}
    for item in value.split(";"):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep:
            raise ImproperlyConfigured("the Azure connection string is malformed "
                                       "(expected key=value pairs separated by ';')")
        parts[key.strip().lower()] = val.strip()
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        proxy = parts.get("developmentstorageproxyuri", "http://127.0.0.1").rstrip("/")
        parts.update(
            defaultendpointsprotocol="http", accountname=DEV_ACCOUNT, accountkey=DEV_KEY,
            **{f"{svc}endpoint": f"{proxy}:{port}/{DEV_ACCOUNT}"
               for svc, port in _DEV_PORTS.items()},
        )
    explicit = any(f"{svc}endpoint" in parts for svc in _DEV_PORTS)
    if "accountname" in parts and not explicit:
        # Endpoints derived from the account only when none is named: a string that
        # names its endpoints (Azurite, a custom domain) reaches only those services.
        protocol = parts.get("defaultendpointsprotocol", "https")
        suffix = parts.get("endpointsuffix", "core.windows.net")
        for svc in _DEV_PORTS:
            parts.setdefault(f"{svc}endpoint",
                             f"{protocol}://{parts['accountname']}.{svc}.{suffix}")
    return parts


class RedactingFilter(logging.Filter):
    """Rewrites log records that carry a SAS signature or an account key."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_REDACTING = RedactingFilter()
#: Loggers that print request URLs unredacted (a SAS token travels in the URL).
_URL_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry")


def quiet_sdk_logging() -> None:
    """Keep SDK logging safe and quiet under a worker's ``-l INFO``.

    azure-core logs every HTTP request at INFO: raised to WARNING unless the project
    set that logger's level. urllib3 logs request URLs (with any SAS signature) at
    DEBUG: a filter redacts them.
    """
    http = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    if http.level == logging.NOTSET:
        http.setLevel(logging.WARNING)
    for name in _URL_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTING not in logger.filters:
            logger.addFilter(_REDACTING)


class AzureClients:
    """Queue, table and blob service clients of one kombu connection."""

    def __init__(self, options: dict[str, Any], hostname: str | None = None,
                 connect_timeout: float | None = None) -> None:
        quiet_sdk_logging()
        #: kombu's ``connect_timeout`` (Celery's ``broker_connection_timeout``) when given.
        self.connect_timeout = float(connect_timeout or CONNECT_TIMEOUT)
        self._queue_mod = require("azure.storage.queue", "azure",
                                  "The azurequeue:// transport")
        self.options = options
        self.secrets: tuple[str, ...] = ()
        #: Why the connection cannot be used (no credentials), raised at first use.
        self.unconfigured: str | None = None
        self._queue_service: Any = None
        self._table_service: Any = None
        self._blob_service: Any = None
        cs = options.get("connection_string")
        url = options.get("account_url") or _url_from_host(hostname)
        if not cs and not url:
            cs = os.environ.get(ENV_CONNECTION_STRING)
        if cs:
            parts = parse_connection_string(cs)
            self.account_name = parts.get("accountname")
            key = parts.get("accountkey")
            sas = parts.get("sharedaccesssignature")
            self.secrets = tuple(s for s in (cs, key, sas) if s)
            self.endpoints = {svc: parts.get(f"{svc}endpoint") for svc in _DEV_PORTS}
            if key:
                self.credential = _named_key(self.account_name or "", key)
            elif sas:
                self.credential = _sas(sas)
            else:
                self.credential = None
        elif url:
            url = url.rstrip("/")
            self.account_name = options.get("account_name") or _account_from_url(url)
            self.endpoints = {
                "queue": url,
                "table": options.get("table_account_url") or _sibling(url, "table"),
                "blob": options.get("blob_account_url") or _sibling(url, "blob"),
            }
            self.credential = self._credential(options.get("credential"))
        else:
            # Not an error yet: Celery builds a transport of the bare broker URL only to
            # print it (celery report, inspect conf); using it raises this.
            self.unconfigured = (
                "azurequeue:// needs credentials: the connection_string or account_url "
                f"transport option, or the {ENV_CONNECTION_STRING} environment variable"
            )
            self.account_name, self.endpoints, self.credential = None, {}, None
            return
        if not self.endpoints.get("queue"):
            raise ImproperlyConfigured("the Azure connection string has no queue endpoint")

    def _check_configured(self) -> None:
        if self.unconfigured:
            raise ImproperlyConfigured(self.unconfigured)

    def _credential(self, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.lower() in (
                "defaultazurecredential", "managedidentitycredential")):
            identity = require("azure.identity", "azure",
                               "azurequeue:// with DefaultAzureCredential / managed identity")
            if isinstance(value, str) and value.lower() == "managedidentitycredential":
                return identity.ManagedIdentityCredential()
            return identity.DefaultAzureCredential()
        if isinstance(value, str):
            self.secrets = (value,)
            if "sig=" in value:
                return _sas(value)
            return _named_key(self.account_name or "", value)
        if isinstance(value, dict) and "account_key" in value:
            self.secrets = (value["account_key"],)
            return _named_key(value.get("account_name") or self.account_name or "",
                              value["account_key"])
        return value  # a credential object from azure-core / azure-identity

    @property
    def queue_service(self) -> Any:
        """The ``QueueServiceClient`` (built on first use)."""
        if self._queue_service is None:
            self._check_configured()
            self._queue_service = self._queue_mod.QueueServiceClient(
                self.endpoints["queue"], credential=self.credential,
                **self._kwargs(STORAGE_KWARGS))
        return self._queue_service

    @property
    def table_service(self) -> Any:
        """The ``TableServiceClient`` for the binding registry."""
        if self._table_service is None:
            tables = require("azure.data.tables", "azure", "azurequeue:// fanout bindings")
            self._table_service = tables.TableServiceClient(
                self._endpoint("table"), credential=self.credential,
                **self._kwargs(CLIENT_KWARGS))
        return self._table_service

    @property
    def blob_service(self) -> Any:
        """The ``BlobServiceClient`` for claim-check payloads."""
        if self._blob_service is None:
            blobs = require("azure.storage.blob", "azure", "azurequeue:// claim-check")
            self._blob_service = blobs.BlobServiceClient(
                self._endpoint("blob"), credential=self.credential,
                **self._kwargs(STORAGE_KWARGS))
        return self._blob_service

    def _kwargs(self, base: dict[str, Any]) -> dict[str, Any]:
        return {**base, "connection_timeout": self.connect_timeout}

    def _endpoint(self, service: str) -> str:
        self._check_configured()
        endpoint = self.endpoints.get(service)
        if not endpoint:
            raise ImproperlyConfigured(
                f"no {service} endpoint: set {service}_account_url in the transport options")
        return endpoint

    def queue_client(self, name: str) -> Any:
        """A ``QueueClient`` for the physical queue ``name``."""
        return self.queue_service.get_queue_client(name)

    def close(self) -> None:
        """Close every client built so far."""
        for client in (self._queue_service, self._table_service, self._blob_service):
            if client is not None:
                with suppress(Exception):
                    client.close()
        self._queue_service = self._table_service = self._blob_service = None

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Translate SDK errors of ``what`` into redacted celery-bgp errors."""
        with azure_errors(what, self.secrets):
            yield


def _named_key(account: str, key: str) -> Any:
    from azure.core.credentials import AzureNamedKeyCredential

    return AzureNamedKeyCredential(account, key)


def _sas(token: str) -> Any:
    from azure.core.credentials import AzureSasCredential

    return AzureSasCredential(token.lstrip("?"))


def _url_from_host(hostname: str | None) -> str | None:
    if not hostname or hostname in ("localhost",):
        return None
    if "://" in hostname:
        return hostname
    return f"https://{hostname}"


def _account_from_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if re.match(r"^[\d.]+$", host) or host == "localhost":
        return parts.path.strip("/").split("/")[0]
    return host.split(".")[0]


def _sibling(url: str, service: str) -> str | None:
    if ".queue." in url:
        return url.replace(".queue.", f".{service}.", 1)
    return None


@contextmanager
def azure_errors(what: str, secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Re-raise Azure SDK and socket errors as redacted :class:`AzureStorageError`s.

    The original exception is dropped (``from None``) because its text and its
    request URL may hold a SAS signature.
    """
    from azure.core import exceptions as ax

    try:
        yield
    except (ax.ServiceRequestError, ax.ServiceResponseError, OSError) as exc:
        raise BrokerUnavailable(
            f"{what}: Azure Storage unreachable ({type(exc).__name__}: "
            f"{redact(_first_line(exc), secrets)})"
        ) from None
    except ax.HttpResponseError as exc:
        code = getattr(exc, "error_code", None)
        status = getattr(exc, "status_code", None)
        raise AzureStorageError(
            f"{what}: HTTP {status} {code or ''} {redact(_first_line(exc), secrets)}".strip(),
            status=status, code=str(code) if code else None,
            exists=isinstance(exc, ax.ResourceExistsError),
        ) from None
    except ax.AzureError as exc:
        raise AzureStorageError(f"{what}: {redact(_first_line(exc), secrets)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
