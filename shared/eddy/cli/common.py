"""What every ``eddy`` subcommand module shares: the one-line error and how settings are found.

They live here, not in ``shared/eddy/cli/main.py``: under ``python -m eddy.cli.main`` that module runs as
``__main__``, so a class defined there would be a different class from the one its subcommand
modules import, and their errors would escape ``main()``'s one-line handling.
"""

from __future__ import annotations

import os
from dataclasses import replace

from eddy.core.settings import Settings

# eddy's exit codes (README, "Using eddy"): 0 done, 1 the command ran and failed, 2 the command line is wrong.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure while running a command (broker down, unknown topic, refused request): one line, exit code 1."""

    exit_code = EXIT_FAILURE


class UsageError(CliError):
    """The command line itself is wrong (a missing or invalid option): one line, exit code 2, like argparse's."""

    exit_code = EXIT_USAGE


def resolve_settings() -> Settings:
    """The environment's settings, with Kafka and the schema registry of a running ``eddy up`` unless set."""
    settings = Settings.from_env()
    from eddy.stack.up import pid_alive, read_stack

    stack = read_stack(settings.state_dir)
    if stack and pid_alive(stack.get("supervisor_pid")):
        if not os.environ.get("EDDY_BOOTSTRAP_SERVERS"):
            settings = replace(settings, bootstrap_servers=stack["bootstrap_servers"])
        if not os.environ.get("EDDY_SCHEMA_REGISTRY_URL"):
            settings = replace(settings, schema_registry_url=stack["schema_registry_url"])
    return settings
