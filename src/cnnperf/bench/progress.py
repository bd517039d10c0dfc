"""A one-line progress bar on stderr: plain text, no dependency, only on a terminal."""

from __future__ import annotations

import shutil
import sys
import time

__all__ = ["ProgressBar"]


class ProgressBar:
    """``[#####-----] 3/12 resnet18.layer1.3x3/b1  0:07`` rewritten in place with ``\\r``.

    Args:
        stream: where to draw (default ``sys.stderr``).
        enabled: None: only when ``stream`` is a terminal.
    """

    def __init__(self, stream=None, enabled: bool | None = None, width: int = 24):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.width = width
        self._t0 = time.monotonic()
        self._drawn = 0

    def __call__(self, done: int, total: int, label: str = "") -> None:
        if not self.enabled:
            return
        if done >= total:
            self.close()
            return
        filled = self.width * done // max(1, total)
        secs = int(time.monotonic() - self._t0)
        line = (
            f"[{'#' * filled}{'-' * (self.width - filled)}] {done}/{total} {label}  "
            f"{secs // 60}:{secs % 60:02d}"
        )
        cols = shutil.get_terminal_size((100, 20)).columns - 1
        line = line[:cols]
        self.stream.write("\r" + line + " " * max(0, self._drawn - len(line)))
        self.stream.flush()
        self._drawn = len(line)

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0
