"""Progress lines for long work: a live line on a terminal; a plain line every few seconds
otherwise (logs and CI stay readable). Work made of runs (compare, sweep) shows its first line at
once and a heartbeat line at least every ``every_s`` seconds, with the rate and an ETA."""
from __future__ import annotations

import sys
import threading
import time


class Progress:
    """Call as ``progress(done, total)``, ``progress(done, total, failed)`` or, for work partly
    done by an earlier invocation, ``progress(done, total, failed, resumed=k)``: the ``k`` resumed
    units are shown but do not count towards the rate and the ETA.

    Used as a context manager (``with Progress(...) as p``), it prints a first line at once and
    then at least every ``every_s`` seconds until the block ends, even while nothing finishes.
    Without it, nothing is printed off a terminal until ``quiet_s`` have passed, so short jobs
    stay silent.
    """

    def __init__(self, label: str, unit: str = "epochs", every_s: float = 5.0, quiet_s: float = 2.0,
                 stream=None):
        self.label, self.unit, self.every_s, self.quiet_s = label, unit, every_s, quiet_s
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = self.last = time.monotonic()
        self.state: tuple[int, int, int | None, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __call__(self, done: int, total: int, failed: int | None = None, resumed: int = 0) -> None:
        now = time.monotonic()
        with self._lock:
            first = self.state is None or self.state[1] == 0
            self.state = (done, total, failed, resumed)
            if not first and done < total and now - self.last < (0.2 if self.tty else self.every_s):
                return
            self._write(now, force=self._beat is not None)

    def line(self, now: float | None = None) -> str:
        """The current progress line (units done/total, resumed, failed, rate, elapsed, ETA)."""
        now = time.monotonic() if now is None else now
        done, total, failed, resumed = self.state or (0, 0, None, 0)
        el, new = now - self.t0, done - resumed
        rate = new / el if el > 0 else 0.0
        parts = [f"{self.label}: {done}/{total} {self.unit}" + (f" ({resumed} resumed)" if resumed else "")]
        if failed:
            parts.append(f"{failed} failed")
        parts.append(f"{rate * 60:.3g} {self.unit}/min" if self.unit == "runs" else f"{rate:.3g} {self.unit}/s")
        eta = f"ETA {(total - done) / rate:.0f} s" if new and rate > 0 else "ETA -"
        return ", ".join(parts + [f"{el:.0f} s elapsed", eta])

    def _write(self, now: float, force: bool = False) -> None:
        self.last = now
        done, total = (self.state or (0, 0))[:2]
        if self.tty:
            self.stream.write("\r" + self.line(now) + ("\n" if done == total else ""))
        elif force or now - self.t0 >= self.quiet_s:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    # ------------------------------------------------------------------------ the heartbeat
    def __enter__(self) -> "Progress":
        self.t0 = time.monotonic()
        with self._lock:
            if self.state is None:
                self.state = (0, 0, None, 0)
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        # the first line comes from the caller's first call (when the total is known)
        while not self._stop.wait(self.every_s):
            with self._lock:
                if self.state is not None and self.state[1] > 0:
                    self._write(time.monotonic(), force=True)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=1.0)
