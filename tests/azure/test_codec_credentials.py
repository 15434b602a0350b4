"""Message text codec, connection strings and redaction (no Azurite needed)."""
from __future__ import annotations

import base64
import json

import pytest

from celery_bgp.transport import codec
from celery_bgp.transport.credentials import (
    DEV_ACCOUNT,
    AzureClients,
    parse_connection_string,
    redact,
)


def test_envelope_is_base64_json_for_functions():
    envelope = {"body": "e30=", "headers": {"id": "x"}, "properties": {"delivery_tag": "t"},
                "content-type": "application/json"}
    text, _raw = codec.encode_envelope(envelope)
    assert json.loads(base64.b64decode(text)) == envelope
    assert codec.decode_text(text) == envelope


def test_claim_check_reference_round_trip():
    text = codec.claim_check_text("c", "b/1.json", 123)
    ref = codec.claim_check_ref(codec.decode_text(text))
    assert ref == {"container": "c", "blob": "b/1.json", "size": 123}


@pytest.mark.parametrize(("text", "reason"), [
    ("not base64 at all!", "not base64"),
    (base64.b64encode(b"{broken").decode(), "not valid JSON"),
    (base64.b64encode(b"[1, 2]").decode(), "not an object"),
    (base64.b64encode(b'{"a": 1}').decode(), "not a kombu envelope"),
    ("", "empty"),
])
def test_garbage_is_refused_with_a_reason(text, reason):
    with pytest.raises(codec.UndecodableMessage, match=reason):
        codec.decode_text(text)


def test_use_development_storage_expands_to_azurite_defaults():
    parts = parse_connection_string("UseDevelopmentStorage=true")
    assert parts["accountname"] == DEV_ACCOUNT
    assert parts["queueendpoint"] == f"http://127.0.0.1:10001/{DEV_ACCOUNT}"
    assert parts["tableendpoint"] == f"http://127.0.0.1:10002/{DEV_ACCOUNT}"
    clients = AzureClients({"connection_string": "UseDevelopmentStorage=true"})
    assert clients.endpoints["blob"] == f"http://127.0.0.1:10000/{DEV_ACCOUNT}"
    assert clients.credential.named_key == (DEV_ACCOUNT, parts["accountkey"])


def test_cloud_connection_string_endpoints():
    parts = parse_connection_string(
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=c2VjcmV0;"
        "EndpointSuffix=core.windows.net")
    assert parts["queueendpoint"] == "https://acme.queue.core.windows.net"


def test_account_url_with_default_credential():
    clients = AzureClients({"account_url": "https://acme.queue.core.windows.net"})
    assert type(clients.credential).__name__ == "DefaultAzureCredential"
    assert clients.endpoints["table"] == "https://acme.table.core.windows.net"


def test_broker_url_host_is_the_account():
    clients = AzureClients({"credential": "ManagedIdentityCredential"},
                           hostname="acme.queue.core.windows.net")
    assert clients.endpoints["queue"] == "https://acme.queue.core.windows.net"
    assert type(clients.credential).__name__ == "ManagedIdentityCredential"


def test_missing_azure_identity_names_the_extra(monkeypatch):
    import sys

    from celery_bgp.exceptions import MissingExtra

    monkeypatch.setitem(sys.modules, "azure.identity", None)  # makes the import fail
    with pytest.raises(MissingExtra, match=r"celery-bgp\[azure\]"):
        AzureClients({"account_url": "https://acme.queue.core.windows.net"})


def test_redact_removes_keys_and_signatures():
    text = ("GET /q?sv=2021&sig=abc%2Bdef&se=x AccountKey=c2VjcmV0==;x "
            "Authorization: SharedKey acme:Zm9vYmFy")
    out = redact(text, ("c2VjcmV0==",))
    assert "abc%2Bdef" not in out and "c2VjcmV0" not in out and "Zm9vYmFy" not in out
    assert "sv=2021" in out


def test_no_credentials_fail_at_first_use_not_when_the_transport_is_built(monkeypatch):
    """Celery builds ``Connection(broker_url)`` only to print it (report, inspect conf)."""
    from kombu import Connection

    from celery_bgp.exceptions import ImproperlyConfigured

    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    clients = AzureClients({})
    for use in (lambda: clients.queue_service, lambda: clients.queue_client("q"),
                lambda: clients.table_service, lambda: clients.blob_service):
        with pytest.raises(ImproperlyConfigured, match="AZURE_STORAGE_CONNECTION_STRING"):
            use()
    conn = Connection("azurequeue://")
    assert conn.as_uri().startswith("azurequeue://")
    assert conn.transport.driver_version() != "N/A"
    with pytest.raises(ImproperlyConfigured, match="needs credentials"):
        conn.ensure_connection(max_retries=1)


def test_secret_options_are_masked_in_celery_configuration_reports():
    from celery import Celery
    from celery.app.utils import filter_hidden_settings

    from celery_bgp.transport.credentials import hide_secret_options

    hide_secret_options()  # importing celery_bgp did it already; again is a no-op
    key = "c2VjcmV0a2V5Zm9ydGVzdHM="
    app = Celery("masked", set_as_current=False)
    app.conf.update(broker_url="azurequeue://", broker_transport_options={
        "connection_string": f"AccountName=acme;AccountKey={key}",
        "credential": key, "queue_name_prefix": "shown-"})
    table = filter_hidden_settings(app.conf.table(with_defaults=False))
    options = table["broker_transport_options"]
    assert options == {"connection_string": "********", "credential": "********",
                       "queue_name_prefix": "shown-"}
    assert key not in app.conf.humanize() and "shown-" in app.conf.humanize()
    nested = filter_hidden_settings({"o": {"credential": {"account_name": "acme",
                                                          "account_key": key}}})
    assert key not in str(nested) and "acme" in str(nested)
