"""The hindsight bound: the horizon program over a whole run, with perfect knowledge of its world.

``hindsight_bound(scenario, seed)`` reads the run's exogenous side (``simulator.foresight``), builds
the program of ``policies/horizon_lp.py`` and solves it twice: once for the least unserved idle
energy (tasks left out: serving one never lowers it), once for the most tasks started on time
(idle load free, but a node starts tasks only in epochs whose idle load it serves in full). Each
optimum bounds what any controller reaches on that measure; the two need not come from one plan.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from otmarl.scenarios import schema as S
from otmarl.simulator.foresight import Foresight, foresee

from .horizon_lp import HorizonInputs, Program, energy_program, solve, task_program


def inputs_from_foresight(f: Foresight) -> HorizonInputs:
    """The program's inputs for a whole run: the realised harvest, faults and tasks."""
    p, K, dt = f.p, f.n_epochs, f.dt_s
    t = f.tasks
    keep = t.gen_s < K * dt
    first = (t.gen_s[keep] // dt).astype(np.int64)
    last = np.minimum((t.deadline_s[keep] // dt).astype(np.int64), K - 1)
    return HorizonInputs(
        harvest_wh=f.harvest_wh, alive=f.alive, link_usable=f.link_usable,
        usable0_wh=np.maximum(p.initial_wh - p.min_wh, 0.0), room_wh=p.capacity_wh - p.min_wh,
        eta_c=p.eta_c, eta_d=p.eta_d, charge_cap_wh=p.max_charge_w * dt / 3600.0,
        discharge_cap_wh=p.max_discharge_w * dt / 3600.0, sd_share=f.sd_share, idle_wh=f.idle_wh,
        link_u=f.links.u, link_v=f.links.v, link_eff=f.links.transfer_efficiency,
        link_cap_wh=f.link_cap_wh, dt_s=dt, speed=p.speed, servers=p.servers, active_w=p.active_w,
        task_node=t.origin[keep], task_first=first, task_last=np.maximum(last, first),
        task_work_s=t.work_s[keep])


@dataclass(frozen=True)
class Bound:
    """The hindsight bound of one run: the least unserved idle energy (Wh) and the most tasks
    completed on time, with the size of each program and the seconds it took to build and solve."""

    unserved_wh: float
    idle_demand_wh: float
    on_time_tasks: float
    generated_tasks: int
    sizes: dict
    seconds: dict

    def as_dict(self) -> dict:
        return {"unserved_wh": self.unserved_wh, "idle_demand_wh": self.idle_demand_wh,
                "on_time_tasks": self.on_time_tasks, "generated_tasks": self.generated_tasks,
                "programs": self.sizes, "seconds": self.seconds}


def least_unserved(x: HorizonInputs, method: str = "ipm") -> tuple[float, dict]:
    """The least unserved idle energy over the horizon (Wh) and the program's size."""
    lp = Program()
    energy_program(lp, x)
    sol = solve(lp, method)
    demand = float((x.idle_wh * x.alive).sum())
    return max(demand + sol.objective, 0.0), {"variables": sol.n_var, "rows": sol.n_row}


def most_on_time(x: HorizonInputs, method: str = "ipm") -> tuple[float, dict]:
    """The most tasks started (so completed) on time over the horizon, and the program's size."""
    lp = Program()
    ev = energy_program(lp, x, idle_cost=0.0)
    task_program(lp, x, ev)
    sol = solve(lp, method)
    return -sol.objective, {"variables": sol.n_var, "rows": sol.n_row}


def hindsight_bound(scenario: S.Scenario, seed: int, epochs: int | None = None,
                    tasks: bool = True, method: str = "ipm") -> Bound:
    """Both optima for a run of ``scenario`` with ``seed`` (over its first ``epochs``)."""
    t0 = time.perf_counter()
    x = inputs_from_foresight(foresee(scenario, seed, epochs))
    t1 = time.perf_counter()
    unserved, size_e = least_unserved(x, method)
    t2 = time.perf_counter()
    on_time, size_t, t3 = float(len(x.task_node)), {}, t2
    if tasks and len(x.task_node):
        on_time, size_t = most_on_time(x, method)
        t3 = time.perf_counter()
    return Bound(unserved_wh=unserved, idle_demand_wh=float((x.idle_wh * x.alive).sum()),
                 on_time_tasks=on_time, generated_tasks=int(len(x.task_node)),
                 sizes={"energy": size_e, "tasks": size_t},
                 seconds={"inputs": t1 - t0, "energy": t2 - t1, "tasks": t3 - t2})
