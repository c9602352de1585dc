"""The Kafka and schema registry security settings: from the environment to every client's config.

For a set of environments, the producer, consumer and admin configs and the registry client's config hold
exactly the expected properties (PLAINTEXT adds none); librdkafka and the registry client accept them; the
registry client sends its basic auth; settings no client could connect with fail at startup; secrets never
show.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import certifi
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from eddy.avro.serde import registry_client, registry_config
from eddy.core.settings import MASK, REPO_ROOT, Settings, SettingsError, redact_url, settings_table
from eddy.kafka.client import admin_config, consumer_config, producer_config, security_config

SASL = {"EDDY_KAFKA_SASL_USERNAME": "eddy", "EDDY_KAFKA_SASL_PASSWORD": "s3cret-pw"}
# A readable PEM bundle, so that clients which open the CA file at construction accept it.
CA = certifi.where()

# (environment, the security properties every Kafka client config must add: exactly these)
KAFKA_CASES: list[tuple[dict[str, str], dict[str, str]]] = [
    ({}, {}),
    ({"EDDY_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, {}),
    # Settings of protocols not in use are ignored, not passed on.
    ({**SASL, "EDDY_KAFKA_SSL_CA_LOCATION": CA, "EDDY_KAFKA_SSL_ENDPOINT_IDENTIFICATION": "none"}, {}),
    (
        {"EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **SASL, "EDDY_KAFKA_SSL_CA_LOCATION": CA},
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "eddy",
            "sasl.password": "s3cret-pw",
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.ca.location": CA,
        },
    ),
    (
        {"EDDY_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext", "EDDY_KAFKA_SASL_MECHANISM": "scram-sha-256", **SASL},
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "eddy",
            "sasl.password": "s3cret-pw",
        },
    ),
    (
        {"EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "EDDY_KAFKA_SASL_MECHANISM": "PLAIN", **SASL},
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "eddy",
            "sasl.password": "s3cret-pw",
            "ssl.endpoint.identification.algorithm": "https",
        },
    ),
    (
        {
            "EDDY_KAFKA_SECURITY_PROTOCOL": "SSL",
            "EDDY_KAFKA_SSL_CA_LOCATION": CA,
            "EDDY_KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/eddy/secrets/client.pem",
            "EDDY_KAFKA_SSL_KEY_LOCATION": "/etc/eddy/secrets/client.key",
            "EDDY_KAFKA_SSL_KEY_PASSWORD": "key-pw",
            "EDDY_KAFKA_SSL_ENDPOINT_IDENTIFICATION": "none",
            # Not SASL: the credentials stay out.
            **SASL,
        },
        {
            "security.protocol": "SSL",
            "ssl.endpoint.identification.algorithm": "none",
            "ssl.ca.location": CA,
            "ssl.certificate.location": "/etc/eddy/secrets/client.pem",
            "ssl.key.location": "/etc/eddy/secrets/client.key",
            "ssl.key.password": "key-pw",
        },
    ),
]

# (environment, the registry client's whole config)
REGISTRY_CASES: list[tuple[dict[str, str], dict[str, str]]] = [
    ({}, {"url": "http://127.0.0.1:8081"}),
    ({"EDDY_SCHEMA_REGISTRY_URL": "https://sr:8081"}, {"url": "https://sr:8081"}),
    (
        {
            "EDDY_SCHEMA_REGISTRY_URL": "https://sr:8081",
            "EDDY_SCHEMA_REGISTRY_BASIC_AUTH": "reg:pa:ss",
            "EDDY_SCHEMA_REGISTRY_CA_LOCATION": CA,
        },
        {"url": "https://sr:8081", "basic.auth.user.info": "reg:pa:ss", "ssl.ca.location": CA},
    ),
    # Kafka's security settings are not the registry's.
    ({"EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **SASL}, {"url": "http://127.0.0.1:8081"}),
]

PLAINTEXT = Settings()


def client_configs(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "producer": producer_config(settings),
        "consumer": consumer_config(settings, "g"),
        "background consumer": consumer_config(settings, "g", background=True),
        "admin": admin_config(settings),
    }


def test_plaintext_adds_nothing() -> None:
    assert security_config(PLAINTEXT) == {}
    for kind, conf in client_configs(PLAINTEXT).items():
        assert not [key for key in conf if key.startswith(("security.", "sasl.", "ssl."))], kind


@pytest.mark.parametrize(("env", "expected"), KAFKA_CASES)
def test_kafka_clients_get_exactly_the_security_properties(env: dict[str, str], expected: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert security_config(settings) == expected
    baseline = client_configs(PLAINTEXT)
    for kind, conf in client_configs(settings).items():
        assert conf == {**baseline[kind], **expected}, kind


def test_overrides_still_win() -> None:
    settings = Settings.from_env({"EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **SASL})
    assert producer_config(settings, **{"sasl.username": "other"})["sasl.username"] == "other"


@pytest.mark.parametrize(("env", "expected"), KAFKA_CASES[3:])
def test_librdkafka_accepts_the_configs(env: dict[str, str], expected: dict[str, str]) -> None:
    # Constructing a client checks every property (names, values, SASL and TLS support, the CA file) without a
    # broker; port 9 on loopback refuses at once. Client keys are not made here, so they are left out.
    settings = Settings.from_env(
        {
            **{k: v for k, v in env.items() if "CERTIFICATE" not in k and "KEY" not in k},
            "EDDY_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        }
    )
    Producer(producer_config(settings)).flush(0)
    Consumer(consumer_config(settings, "g")).close()
    AdminClient(admin_config(settings))


@pytest.mark.parametrize(("env", "expected"), REGISTRY_CASES)
def test_registry_client_config(env: dict[str, str], expected: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert registry_config(settings) == expected
    registry_client(settings)  # the client accepts it (and reads the CA file)


class _Recorder(BaseHTTPRequestHandler):
    """Answers ``GET /subjects`` with an empty list, keeping each request's Authorization header."""

    seen: list[str | None] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def recording_registry() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_registry_client_sends_basic_auth(recording_registry: str) -> None:
    env = {"EDDY_SCHEMA_REGISTRY_URL": recording_registry, "EDDY_SCHEMA_REGISTRY_BASIC_AUTH": "reg:pa:ss"}
    assert registry_client(Settings.from_env(env)).get_subjects() == []
    assert registry_client(Settings.from_env({"EDDY_SCHEMA_REGISTRY_URL": recording_registry})).get_subjects() == []
    assert _Recorder.seen == [f"Basic {base64.b64encode(b'reg:pa:ss').decode()}", None]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EDDY_KAFKA_SECURITY_PROTOCOL": "TLS"}, "EDDY_KAFKA_SECURITY_PROTOCOL='TLS' is not one of"),
        ({"EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs EDDY_KAFKA_SASL_USERNAME and EDDY_KAFKA_SASL_PASSWORD"),
        (
            {"EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "EDDY_KAFKA_SASL_USERNAME": "eddy"},
            "needs EDDY_KAFKA_SASL_PASSWORD",
        ),
        (
            {"EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "EDDY_KAFKA_SASL_MECHANISM": "GSSAPI", **SASL},
            "EDDY_KAFKA_SASL_MECHANISM='GSSAPI' is not one of",
        ),
        ({"EDDY_KAFKA_SSL_ENDPOINT_IDENTIFICATION": "strict"}, "EDDY_KAFKA_SSL_ENDPOINT_IDENTIFICATION='strict'"),
        (
            {"EDDY_KAFKA_SECURITY_PROTOCOL": "SSL", "EDDY_KAFKA_SSL_CERTIFICATE_LOCATION": "/c.pem"},
            "EDDY_KAFKA_SSL_CERTIFICATE_LOCATION and EDDY_KAFKA_SSL_KEY_LOCATION",
        ),
        ({"EDDY_SCHEMA_REGISTRY_BASIC_AUTH": "no-colon"}, "EDDY_SCHEMA_REGISTRY_BASIC_AUTH must be user:password"),
        (
            {"EDDY_SCHEMA_REGISTRY_URL": "https://u:p@sr", "EDDY_SCHEMA_REGISTRY_BASIC_AUTH": "u:p"},
            "keep one",
        ),
    ],
)
def test_settings_no_client_could_use_fail_at_construction(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_a_process_refuses_to_start_with_unusable_settings() -> None:
    env = {"PATH": "/usr/bin:/bin", "EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "EDDY_KAFKA_SASL_USERNAME": "eddy"}
    result = subprocess.run(
        [sys.executable, "-m", "eddy.runtime.create_topics"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs EDDY_KAFKA_SASL_PASSWORD" in result.stderr


SECRETS = {
    "EDDY_KAFKA_SASL_PASSWORD": "sasl-secret-1",
    "EDDY_KAFKA_SSL_KEY_PASSWORD": "key-secret-2",
    "EDDY_SCHEMA_REGISTRY_BASIC_AUTH": "reg:registry-secret-3",
    "EDDY_PII_KEY": "pii-secret-4",
}


def test_secrets_never_show() -> None:
    settings = Settings.from_env(
        {"EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "EDDY_KAFKA_SASL_USERNAME": "eddy", **SECRETS}
    )
    shown = settings.shown()
    for name, value in SECRETS.items():
        secret = value.split(":")[-1]
        assert secret not in repr(settings) and secret not in str(shown), name
        assert shown[name] == MASK
    assert shown["EDDY_KAFKA_SASL_USERNAME"] == "eddy"
    # Unset secrets show as unset, not as a mask.
    assert Settings().shown()["EDDY_KAFKA_SASL_PASSWORD"] == ""
    defaults = {name: default for name, default, _ in settings_table()}
    assert all(defaults[name] == "" for name in SECRETS)


def test_registry_url_credentials_are_masked() -> None:
    settings = Settings.from_env({"EDDY_SCHEMA_REGISTRY_URL": "https://reg:url-secret@sr:8081"})
    assert settings.shown()["EDDY_SCHEMA_REGISTRY_URL"] == f"https://reg:{MASK}@sr:8081"
    assert redact_url("http://sr:8081") == "http://sr:8081"
    assert redact_url("http://reg@sr:8081") == "http://reg@sr:8081"


def test_child_processes_get_the_same_security_settings() -> None:
    settings = Settings.from_env(
        {"EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "EDDY_KAFKA_SSL_CA_LOCATION": CA, **SASL, **SECRETS}
    )
    child = Settings.from_env(settings.kafka_env())
    assert security_config(child) == security_config(settings)
    assert registry_config(child) == registry_config(settings)


def test_configuration_doc_maps_each_security_setting_to_its_property() -> None:
    text = (REPO_ROOT / "docs/configuration.md").read_text()
    rows = {
        cells[0].strip("`"): cells
        for line in text.splitlines()
        if line.startswith("| `EDDY_") and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 4
    }
    defaults = {name: default for name, default, _ in settings_table()}
    full = Settings.from_env(
        {
            "EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            **SASL,
            "EDDY_KAFKA_SSL_CA_LOCATION": "a",
            "EDDY_KAFKA_SSL_CERTIFICATE_LOCATION": "b",
            "EDDY_KAFKA_SSL_KEY_LOCATION": "c",
            "EDDY_KAFKA_SSL_KEY_PASSWORD": "d",
            "EDDY_SCHEMA_REGISTRY_BASIC_AUTH": "e:f",
            "EDDY_SCHEMA_REGISTRY_CA_LOCATION": "g",
        }
    )
    kafka, registry = security_config(full), registry_config(full)
    assert len(rows) == len(kafka) + len(registry) - 1  # every property but the registry's url has its row
    properties = {*kafka, *registry}
    for name, (_, default, _, prop) in rows.items():
        assert default == f"`{defaults[name]}`", name
        assert prop.strip("`") in properties, name
