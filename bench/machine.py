"""The machine a benchmark ran on, for the line printed with its results."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> str:
    """``2 cores, <CPU>, Python 3.11.7``."""
    return f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}"
