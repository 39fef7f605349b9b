"""Headroom for a state-dependent policy: the best shared action per part of the day.

    python benchmarks/marl_schedule.py microgrid-solar --phases 4 --eval-seeds 10

Best-fixed plays one action at every epoch. This script asks how much a policy could gain by
depending on the time of day alone: it searches a schedule of ``--phases`` shared actions (the
local day cut into equal parts, 0-6 h, 6-12 h, ... for 4 phases), starting from best-fixed in
every phase and sweeping every option of every component of every phase in turn (keeping strict
improvements of the mean team return on the tuning seeds of ``policies/marl/controls.py``, at
most ``--sweeps`` sweeps), then prints the paired difference schedule - best-fixed on the
evaluation seeds (``analysis.stats.mean_ci``). It is a bound-like control for learning, not a
policy of the package: a trained MAPPO policy sees the same clock features.
"""
from __future__ import annotations

import argparse

import numpy as np

from otmarl.analysis.stats import mean_ci
from otmarl.policies.marl import controls
from otmarl.policies.marl.core import EnvOptions, MarlCore, resolve_scenario
from otmarl.policies.marl.features import NAMES

Schedule = tuple[tuple[int, ...], ...]


class ScheduleAction(controls.Driver):
    """Every agent plays ``schedule[phase]``, the phase read off the observation's clock."""

    def __init__(self, schedule: Schedule):
        self.schedule = np.asarray(schedule, np.int64)
        self.sin, self.cos = NAMES.index("tod_sin"), NAMES.index("tod_cos")

    def reset(self, core: MarlCore, seed: int) -> None:
        self.obs = core.obs

    def step(self, core: MarlCore) -> bool:
        angle = np.arctan2(self.obs[0, self.sin], self.obs[0, self.cos]) % (2 * np.pi)
        phase = int(angle / (2 * np.pi) * len(self.schedule)) % len(self.schedule)
        self.obs, _, done, _ = core.step(np.tile(self.schedule[phase], (core.n, 1)))
        return done


def search(core: MarlCore, start: Schedule, seeds: list[int], sweeps: int) -> Schedule:
    """Coordinate ascent over (phase, component) from ``start``."""
    scores: dict[Schedule, float] = {}

    def score(s: Schedule) -> float:
        if s not in scores:
            scores[s] = float(np.mean([controls.play(core, ScheduleAction(s), x).team_return for x in seeds]))
        return scores[s]
    best = start
    for sweep in range(sweeps):
        before = best
        for p in range(len(best)):
            for c, k in enumerate(core.spec.nvec):
                for v in range(k):
                    cand = best[:p] + (best[p][:c] + (v,) + best[p][c + 1:],) + best[p + 1:]
                    if score(cand) > score(best):
                        best = cand
        print(f"sweep {sweep + 1}: {best} {score(best):.3f} (best-fixed {score(start):.3f})", flush=True)
        if best == before:
            break
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario")
    p.add_argument("--phases", type=int, default=4)
    p.add_argument("--tune-seeds", type=int, default=3)
    p.add_argument("--eval-seeds", type=int, default=10)
    p.add_argument("--sweeps", type=int, default=2)
    a = p.parse_args()
    sc, opts = resolve_scenario(a.scenario), EnvOptions()
    core, tune = MarlCore(sc, opts), controls.tune_seeds(a.tune_seeds)
    fixed = controls.search_fixed(sc, opts, tune).action
    print(f"best-fixed {fixed}", flush=True)
    best = search(core, (fixed,) * a.phases, tune, a.sweeps)
    diff = [controls.play(core, ScheduleAction(best), s).team_return
            - controls.play(core, controls.FixedAction(fixed), s).team_return for s in controls.eval_seeds(a.eval_seeds)]
    ci = mean_ci(diff)
    print(f"schedule - best-fixed on {a.eval_seeds} evaluation seeds: {ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]")


if __name__ == "__main__":
    main()
