"""Progress lines for long work: a live line on a terminal; a plain line every few seconds
otherwise (logs and CI stay readable)."""
from __future__ import annotations

import sys
import time


class Progress:
    """Call as ``progress(done, total)`` or ``progress(done, total, failed)``.

    Work already done at the first call (e.g. runs resumed from an earlier invocation) is shown
    but does not count towards the ETA. Nothing is printed off a terminal until ``quiet_s`` have
    passed, so short jobs stay silent.
    """

    def __init__(self, label: str, unit: str = "epochs", every_s: float = 5.0, quiet_s: float = 2.0,
                 stream=None):
        self.label, self.unit, self.every_s, self.quiet_s = label, unit, every_s, quiet_s
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = self.last = time.monotonic()
        self.start: int | None = None

    def __call__(self, done: int, total: int, failed: int | None = None) -> None:
        now = time.monotonic()
        if self.start is None:
            self.start = done
        if done < total and done > self.start and now - self.last < (0.2 if self.tty else self.every_s):
            return
        self.last = now
        el, new = now - self.t0, done - self.start
        eta = f"ETA {el / new * (total - done):.0f} s" if new else "ETA -"
        parts = [f"{self.label}: {done}/{total} {self.unit}"]
        if self.start:
            parts[0] += f" ({self.start} resumed)"
        if failed is not None:
            parts.append(f"{failed} failed")
        line = ", ".join(parts + [f"{el:.0f} s elapsed", eta])
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done == total else ""))
        elif el >= self.quiet_s:
            self.stream.write(line + "\n")
        self.stream.flush()
