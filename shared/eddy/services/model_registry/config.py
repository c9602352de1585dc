"""Where the registry keeps its state, and its knobs (environment variables, like every eddy setting)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from eddy.core.settings import Settings

ACTOR = "model_registry"


@dataclass(frozen=True)
class RegistryConfig:
    """The registry's files and its lineage write throttle.

    Examples
    --------
    >>> config = RegistryConfig.from_settings(Settings(state_dir=Path("/tmp/s")), env={})
    >>> str(config.db_path), config.lineage_interval_s
    ('/tmp/s/registry/registry.db', 1.0)
    """

    root: Path
    lineage_interval_s: float = 1.0

    @property
    def db_path(self) -> Path:
        return self.root / "registry.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @classmethod
    def from_settings(cls, settings: Settings, env: dict[str, str] | None = None) -> RegistryConfig:
        source = os.environ if env is None else env
        interval = float(source.get("EDDY_REGISTRY_LINEAGE_INTERVAL_S") or 1.0)
        return cls(settings.state_dir / "registry", lineage_interval_s=interval)
