"""Where the registry keeps its state, and its knobs (environment variables, read by ``eddy.core.envconfig``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from eddy.core.envconfig import read_env, setting
from eddy.core.settings import Settings

ACTOR = "model_registry"


@dataclass(frozen=True)
class RegistryConfig:
    """The registry's files (under ``EDDY_STATE_DIR``) and its lineage write throttle.

    Examples
    --------
    >>> config = RegistryConfig.from_settings(Settings(state_dir=Path("/tmp/s")), env={})
    >>> str(config.db_path), config.lineage_interval_s
    ('/tmp/s/registry/registry.db', 1.0)
    """

    root: Path
    lineage_interval_s: float = setting(
        1.0,
        "EDDY_REGISTRY_LINEAGE_INTERVAL_S",
        "The model registry writes a model version's lineage to its database at most once per this many seconds.",
        minimum=0,
    )

    @property
    def db_path(self) -> Path:
        return self.root / "registry.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> RegistryConfig:
        """The registry's config under ``settings.state_dir``, its knobs from ``env`` (default: the process's)."""
        return read_env(cls, env, root=settings.state_dir / "registry")
