"""The one configuration reader (``eddy.core.envconfig``): every eddy setting goes through it, is documented in
docs/configuration.md with its true default, and a bad value is one error naming its variable."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from dataclasses import dataclass, is_dataclass
from pathlib import Path

import eddy.services
import pytest
from eddy.core.envconfig import SettingsError, env_fields, explicitly_set, read_env, read_one, setting, spelled
from eddy.core.settings import REPO_ROOT, Settings

CONFIG_MODULES = ["eddy.core.settings", "eddy.cli.common"] + [
    f"eddy.services.{info.name}.config"
    for info in pkgutil.iter_modules(eddy.services.__path__)
    if importlib.util.find_spec(f"eddy.services.{info.name}.config") is not None
]


def config_classes() -> list[type]:
    """Every dataclass with settings in the modules that hold eddy's configuration."""
    found: list[type] = []
    for name in CONFIG_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and is_dataclass(value) and value.__module__ == name and env_fields(value):
                found.append(value)
    return found


def documented_defaults() -> dict[str, str]:
    """variable -> default cell of every table row of docs/configuration.md."""
    rows = {}
    for line in (REPO_ROOT / "docs/configuration.md").read_text().splitlines():
        match = re.match(r"\| `(EDDY_[A-Z0-9_]+)` \| `([^`]*)` \|", line)
        if match:
            rows[match[1]] = match[2]
    return rows


def test_every_service_has_its_settings_in_one_config_class() -> None:
    names = {cls.__module__ for cls in config_classes()}
    services_with_settings = {"inference", "ingestion", "learning", "model_registry", "monitoring", "validation"}
    assert {f"eddy.services.{s}.config" for s in services_with_settings | {"schema_registry"}} <= names
    assert {"eddy.core.settings", "eddy.cli.common"} <= names


def test_docs_list_every_setting_with_its_default() -> None:
    docs = documented_defaults()
    variables: list[str] = []
    for cls in config_classes():
        for f in env_fields(cls):
            variable = f.metadata["env"]
            variables.append(variable)
            assert variable in docs, f"docs/configuration.md has no row for {variable} ({cls.__name__}.{f.name})"
            shown = docs[variable]
            if shown.startswith("<repo>/"):
                assert f.default == REPO_ROOT / shown.removeprefix("<repo>/"), variable
            elif shown == "":
                assert spelled(f.default) == "", f"{variable}: the docs show no default, the code has {f.default!r}"
            else:
                assert read_one(cls, f.name, {variable: shown}) == f.default, f"{variable}: docs say {shown}"
            assert f.metadata["doc"].strip(), f"{variable} has no doc line"
    repeated = {v for v in variables if variables.count(v) > 1}
    assert not repeated, f"one variable, several settings: {repeated}"


@pytest.mark.parametrize(
    ("variable", "raw", "says"),
    [
        ("EDDY_BATCH_SIZE", "many", "is not an integer"),
        ("EDDY_BATCH_TIMEOUT_S", "soon", "is not a number"),
        ("EDDY_KAFKA_TRANSACTIONS", "maybe", "is not true or false"),
        ("EDDY_SERDE", "avro", "is not one of fast, confluent"),
    ],
)
def test_a_bad_value_is_one_error_naming_the_variable(variable: str, raw: str, says: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable}=.*{says}"):
        Settings.from_env({variable: raw})


def test_service_settings_are_checked_and_named() -> None:
    from eddy.services.inference.config import inference_config
    from eddy.services.learning.config import join_limits
    from eddy.services.schema_registry.config import parse_settings

    with pytest.raises(SettingsError, match=r"EDDY_INFERENCE_HTTP_PORT=70000 .* must be at most 65535"):
        inference_config({"EDDY_INFERENCE_HTTP_PORT": "70000"})
    with pytest.raises(SettingsError, match=r"EDDY_LEARNING_MAX_PENDING=0 .* must be at least 1"):
        join_limits({"EDDY_LEARNING_MAX_PENDING": "0"})
    with pytest.raises(SystemExit, match="EDDY_SCHEMA_REGISTRY_PORT='x'"):
        parse_settings([], {"EDDY_SCHEMA_REGISTRY_PORT": "x"})
    # An empty variable is unset, as in a compose file's `VAR: ${VAR:-}`.
    assert join_limits({"EDDY_LEARNING_MAX_PENDING": ""}).max_pending == 500_000


def test_names_and_defaults_are_unchanged() -> None:
    from eddy.services.ingestion.config import ingestion_config
    from eddy.services.model_registry.config import RegistryConfig
    from eddy.services.monitoring.config import monitor_config
    from eddy.services.validation.config import validation_config

    assert ingestion_config({}).max_body_bytes == 16 * 1024 * 1024
    assert monitor_config({"EDDY_MONITORING_TICK_S": "0.5"}).tick_s == 0.5
    assert validation_config({"EDDY_VALIDATION_PROFILE_EVERY": "1"}).profile_every == 1
    config = RegistryConfig.from_settings(Settings(), {"EDDY_REGISTRY_LINEAGE_INTERVAL_S": "0.25"})
    assert config.lineage_interval_s == 0.25 and config.root == Path(".eddy/registry")


def test_cli_reads_through_the_same_reader() -> None:
    from eddy.cli.common import cli_log_level, cli_settings

    assert cli_settings({"EDDY_MODEL_REGISTRY_URL": "http://r:1/"}).model_registry_url == "http://r:1/"
    assert cli_log_level("ERROR", {}) == "ERROR"
    assert cli_log_level("ERROR", {"EDDY_LOG_LEVEL": "debug"}) == "debug"
    assert explicitly_set("EDDY_BOOTSTRAP_SERVERS", {"EDDY_BOOTSTRAP_SERVERS": "b:9092"})


def test_a_type_the_reader_cannot_read_is_refused() -> None:
    @dataclass(frozen=True)
    class Odd:
        weights: dict = setting(None, "EDDY_TEST_WEIGHTS", "A mapping.")  # type: ignore[type-arg]

    with pytest.raises(TypeError, match=r"Odd\.weights"):
        read_env(Odd, {"EDDY_TEST_WEIGHTS": "a=1"})
    assert read_env(Odd, {}).weights is None


def test_no_eddy_variable_is_read_outside_the_reader() -> None:
    """Stray ``os.environ`` reads of eddy settings bypass the checks and the docs."""
    allowed = {
        "core/envconfig.py",  # the reader
        "native/__init__.py",  # EDDY_NATIVE: native is the one layer below core, so below the reader
        "runtime/auth.py",  # API keys: a structured secret, parsed by ApiKeys.from_env
        "stack/embedded.py",  # EDDY_TANSU_BIN, EDDY_KAFKA_HOME: where the embedded brokers' binaries are
        "stack/apache_kafka.py",
        "stack/up.py",
    }
    root = REPO_ROOT / "shared" / "eddy"
    stray = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(environ\.get|environ\[|getenv)\(?.*EDDY_", line) and "environ[" not in line.split("=")[0]:
                stray.append(f"{relative}:{number}: {line.strip()}")
    assert not stray, "read these through eddy.core.envconfig:\n" + "\n".join(stray)
