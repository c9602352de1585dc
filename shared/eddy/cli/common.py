"""What every ``eddy`` subcommand module shares: the one-line error and how settings are found.

They live here, not in ``shared/eddy/cli/main.py``: under ``python -m eddy.cli.main`` that module runs as
``__main__``, so a class defined there would be a different class from the one its subcommand
modules import, and their errors would escape ``main()``'s one-line handling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from eddy.core.envconfig import explicitly_set, read_env, read_one, setting
from eddy.core.settings import Settings

# eddy's exit codes (README, "Using eddy"): 0 done, 1 the command ran and failed, 2 the command line is wrong.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# `eddy backtest --gate`: the backtest ran and a gate failed (the candidate is worse than the gates allow).
EXIT_GATE_FAILED = 3


class CliError(Exception):
    """A failure while running a command (broker down, unknown topic, refused request): one line, exit code 1."""

    exit_code = EXIT_FAILURE


class UsageError(CliError):
    """The command line itself is wrong (a missing or invalid option): one line, exit code 2, like argparse's."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class CliSettings:
    """The command's own settings, beyond the shared ``Settings`` (read by ``eddy.core.envconfig`` too).

    Examples
    --------
    >>> read_env(CliSettings, {"EDDY_MODEL_REGISTRY_URL": "http://r:8001", "EDDY_DEBUG": "1"})
    CliSettings(model_registry_url='http://r:8001', debug=True)
    """

    model_registry_url: str = setting(
        "",
        "EDDY_MODEL_REGISTRY_URL",
        "The model registry `eddy models`, `eddy retrain` and `eddy experiments` talk to; empty: the running "
        "`eddy up`'s (`--url` wins).",
    )
    debug: bool = setting(False, "EDDY_DEBUG", "true: an unexpected CLI error shows its traceback, not one line.")


def cli_settings(env: Mapping[str, str] | None = None) -> CliSettings:
    """The command's own settings from ``env`` (default: the process environment)."""
    return read_env(CliSettings, env)


def cli_log_level(default: str, env: Mapping[str, str] | None = None) -> str:
    """``EDDY_LOG_LEVEL`` when set; else the command's ``default``, quieter than a service's."""
    return str(read_one(Settings, "log_level", env, default))


def resolve_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The environment's settings, with Kafka and the schema registry of a running ``eddy up`` unless set."""
    settings = Settings.from_env(env)
    from eddy.stack.up import pid_alive, read_stack

    stack = read_stack(settings.state_dir)
    if stack and pid_alive(stack.get("supervisor_pid")):
        if not explicitly_set("EDDY_BOOTSTRAP_SERVERS", env):
            settings = replace(settings, bootstrap_servers=stack["bootstrap_servers"])
        if not explicitly_set("EDDY_SCHEMA_REGISTRY_URL", env):
            settings = replace(settings, schema_registry_url=stack["schema_registry_url"])
    return settings
