"""Is the Wasserstein drift detector calibrated? False alarms on a stationary stream, and the
delay to detect the regime shift.

    python benchmarks/drift_calibration.py
    python benchmarks/drift_calibration.py --episodes 20 --lead-in 6 --check-every 48

The rows are those the trainer pushes (``policies/marl/rollout.py``): per epoch, the mean over
the agents of every non-clock observation feature and the team reward, episodes back to back.
The agents act uniformly at random, so nothing in the stream changes but the world itself:

- **stationary**: microgrid-solar, ``--episodes`` episodes of its horizon on seeds 4000, 4001,
  ... (weather drawn day by day from the same climate). Every ``--check-every`` rows (the
  default update of 8 envs x 48 epochs pushes 48 rows) the detector checks; a false alarm is a
  check whose distance exceeds its threshold. The target is at most 5 % of checks.
- **shift**: regime-shift (two sunny days, then overcast from hour 48 on). Per seed k, a calm
  lead-in of ``--lead-in`` episodes cut at hour 48 (sunny only; seeds 5000 + 100 k, ...) then
  one whole episode (seed 4000 + k): the delay from the first overcast row to the first alarm
  after it, in hours, and the alarms before the shift (false ones).

Prints one line per detector calibration (``DriftDetector(calibration=...)``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from otmarl.policies.marl.core import EnvOptions, MarlCore
from otmarl.policies.marl.drift import CALIBRATIONS, DriftDetector, drift_row
from otmarl.scenarios import load


def stream(scenario: str, seed: int, sets: list[str]) -> np.ndarray:
    """One episode under uniform random actions: the rows the trainer would push."""
    core = MarlCore(load(scenario, sets), EnvOptions())
    rng = np.random.default_rng(seed)
    core.reset(seed)
    rows, done = [], False
    nvec = np.asarray(core.spec.nvec)
    while not done:
        obs, _, done, terms = core.step(rng.integers(0, nvec, size=(core.n, len(nvec))))
        rows.append(drift_row(obs, terms["team"]))
    return np.array(rows)


def alarms(rows: np.ndarray, window: int, every: int, calibration: str, seed: int) -> list[tuple[int, bool]]:
    """(row index, alarm) of every check over the stream."""
    det = DriftDetector(window, seed=seed, calibration=calibration)
    out = []
    for i, row in enumerate(rows):
        det.push(row)
        if (i + 1) % every == 0:
            sig = det.check()
            if sig is not None:
                out.append((i, sig.drift))
    return out


def window_rows(scenario: str, hours: float) -> int:
    return max(2, int(round(hours * 3600.0 / load(scenario).control_interval_s)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--lead-in", type=int, default=12)
    ap.add_argument("--shift-seeds", type=int, default=6)
    ap.add_argument("--check-every", type=int, default=48)
    ap.add_argument("--window-h", type=float, default=24.0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    calm = np.concatenate([stream("microgrid-solar", 4000 + k, []) for k in range(a.episodes)])
    lead = [np.concatenate([stream("regime-shift", 5000 + 100 * k + j, ["horizon_h=48"])
                            for j in range(a.lead_in)]) for k in range(a.shift_seeds)]
    shifts = [np.concatenate([lead[k], stream("regime-shift", 4000 + k, [])]) for k in range(a.shift_seeds)]
    w_calm, w_shift = window_rows("microgrid-solar", a.window_h), window_rows("regime-shift", a.window_h)
    dt_shift = load("regime-shift").control_interval_s / 3600.0
    shift_row = len(lead[0]) + int(round(48 / dt_shift))
    print(f"stationary: microgrid-solar, {len(calm)} rows ({a.episodes} episodes), window {w_calm} rows; "
          f"shift: regime-shift x {a.shift_seeds} seeds, window {w_shift} rows, overcast from row {shift_row}")
    for cal in CALIBRATIONS:
        c = alarms(calm, w_calm, a.check_every, cal, 1)
        rate = np.mean([x for _, x in c])
        delays, early = [], 0
        for k, rows in enumerate(shifts):
            s = alarms(rows, w_shift, a.check_every, cal, k)
            early += sum(x for i, x in s if i < shift_row)
            after = [i for i, x in s if x and i >= shift_row]
            delays.append((after[0] - shift_row) * dt_shift if after else np.inf)
        print(f"{cal:12s} false alarms {rate:6.1%} of {len(c)} checks on the stationary stream; "
              f"regime shift detected after {np.median(delays):.1f} h (median; per seed "
              f"{', '.join('never' if np.isinf(d) else f'{d:.0f}' for d in delays)}), "
              f"{early} alarms before it over {a.shift_seeds} seeds")
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
