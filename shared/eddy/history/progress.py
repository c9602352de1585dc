"""Progress of a long CLI command on stderr: a bar redrawn in place on a terminal, a log line otherwise.

>>> import io
>>> out = io.StringIO()
>>> line = ProgressLine(out, "eddy backtest", log_every_s=0)
>>> line.show(0.5, "reading")
>>> out.getvalue()
'eddy backtest: [############------------]  50%  reading\\n'
"""

from __future__ import annotations

import time
from typing import TextIO

WIDTH = 24


def bar(share: float, width: int = WIDTH) -> str:
    """``share`` (0 to 1) as a bar and a percentage.

    >>> bar(0.25, 8)
    '[##------]  25%'
    """
    share = min(1.0, max(0.0, share))
    filled = round(share * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {share:4.0%}"


class ProgressLine:
    """One line of progress on ``stream``: redrawn in place on a terminal, logged every ``log_every_s`` otherwise."""

    def __init__(self, stream: TextIO, prefix: str, log_every_s: float = 5.0) -> None:
        self.stream = stream
        self.prefix = prefix
        self.tty = stream.isatty()
        self.log_every_s = log_every_s
        self.last_logged = time.monotonic()
        self.drawn = 0

    def show(self, share: float, text: str) -> None:
        line = f"{bar(share)}  {text}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self.drawn))
            self.drawn = len(line)
            self.stream.flush()
        elif time.monotonic() - self.last_logged >= self.log_every_s:
            self.last_logged = time.monotonic()
            print(f"{self.prefix}: {line}", file=self.stream, flush=True)

    def close(self) -> None:
        """Erase the bar, so what follows starts on a clean line."""
        if self.tty and self.drawn:
            self.stream.write("\r" + " " * self.drawn + "\r")
            self.stream.flush()
            self.drawn = 0
