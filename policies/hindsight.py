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

from .horizon_lp import (HorizonInputs, Program, dual_bound, energy_program, price_moves, solve,
                         solve_without_presolve, task_program)


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


TIE_BREAK = 1e-4
"""Cost per Wh entering a link in the first solve: it settles the many equivalent ways to route
energy (the simplex method took 15x longer without it on edge-offload's first 24 epochs). The
bound is then read from the solve's multipliers with the true objective (``dual_bound``), so the
cost never makes it invalid; when that leaves a gap above ``GAP_TOL`` to the plan found, the
program is solved again without it."""
GAP_TOL = 1e-7


def _certified(build, method: str, floor: float, how: str = "scipy") -> tuple[float, float, dict]:
    """(lower bound, value of the plan found, size) of ``min cost @ x`` for the program that
    ``build(lp, tie_break, moves_open)`` makes (returning the indices of its link flows and its
    ``TaskVars`` or None); ``floor`` is a value the optimum cannot go below (a plan reaching it
    needs no certificate). With ``method`` 'simplex', ``how`` picks the solve: 'scipy' (HiGHS
    with presolve), 'no-presolve' (``horizon_lp.solve_without_presolve``) or 'price' (task moves
    by column generation, ``horizon_lp.price_moves``; the bound is certified for every move open).
    Both of those start from the parts' bases (``horizon_lp.start_from_blocks``) unless ``how``
    ends in '-cold'."""
    how = how if method == "simplex" else "scipy"
    warm, how = not how.endswith("-cold"), how.removesuffix("-cold")
    for tie in (TIE_BREAK, 0.0):
        lp = Program()
        flows, tv = build(lp, tie, how != "price")
        ub, rounds, added = None, 0, 0
        start = flows.ravel() if warm else None
        if how == "price" and tv is not None:
            sol, rounds, added = price_moves(lp, tv, coupling=start)
            ub = np.concatenate(lp.ub).copy()
            ub[tv.moves.ravel()] = tv.move_cap
        else:
            sol = (solve_without_presolve(lp, coupling=start) if how == "no-presolve"
                   else solve(lp, method))
        cost = np.concatenate(lp.cost).copy()
        cost[flows.ravel()] = 0.0
        lower, upper = max(dual_bound(lp, sol, cost, ub), floor), float(cost @ sol.x)
        if upper - lower <= GAP_TOL * max(1.0, abs(upper)):
            break
    size = {"variables": sol.n_var, "rows": sol.n_row, "tie_break": tie}
    priced = {"pricing_rounds": rounds, "moves_added": added, "moves": tv.moves.size} if rounds else {}
    return lower, upper, {**size, **priced}


def least_unserved(x: HorizonInputs, method: str = "simplex", network: str = "links",
                   how: str = "no-presolve") -> tuple[float, dict]:
    """The least unserved idle energy over the horizon (Wh, a certified lower bound) and the
    program's size and the unserved energy of the plan found (``plan_wh``); ``how`` as in
    ``_certified`` (benchmarks/bound.py --paired times the alternative)."""
    demand = float((x.idle_wh * x.alive).sum())
    lower, upper, size = _certified(
        lambda lp, tie, _: (energy_program(lp, x, flow_cost=tie, network=network).flow, None), method,
        -demand, how=how)
    return max(demand + lower, 0.0), {**size, "plan_wh": demand + upper}


def most_on_time(x: HorizonInputs, method: str = "simplex", network: str = "links",
                 how: str = "price") -> tuple[float, dict]:
    """The most tasks started (so completed) on time over the horizon (a certified upper bound),
    the program's size and the plan's count (``plan_tasks``). With the dual simplex the task
    moves are priced in (``horizon_lp.price_moves``)."""
    def build(lp: Program, tie: float, moves_open: bool):
        ev = energy_program(lp, x, idle_cost=0.0, flow_cost=tie, network=network)
        return ev.flow, task_program(lp, x, ev, moves_open=moves_open)

    lower, upper, size = _certified(build, method, -float(len(x.task_node)), how=how)
    return min(-lower, float(len(x.task_node))), {**size, "plan_tasks": -upper}


def hindsight_bound(scenario: S.Scenario, seed: int, epochs: int | None = None,
                    tasks: bool = True, method: str = "simplex", network: str = "links") -> Bound:
    """Both optima for a run of ``scenario`` with ``seed`` (over its first ``epochs``); with
    ``network='pool'`` the transfers are pooled per connected part (faster, looser, still a bound)."""
    t0 = time.perf_counter()
    x = inputs_from_foresight(foresee(scenario, seed, epochs))
    t1 = time.perf_counter()
    unserved, size_e = least_unserved(x, method, network)
    t2 = time.perf_counter()
    on_time, size_t, t3 = float(len(x.task_node)), {}, t2
    if tasks and len(x.task_node):
        on_time, size_t = most_on_time(x, method, network)
        t3 = time.perf_counter()
    return Bound(unserved_wh=unserved, idle_demand_wh=float((x.idle_wh * x.alive).sum()),
                 on_time_tasks=on_time, generated_tasks=int(len(x.task_node)),
                 sizes={"energy": size_e, "tasks": size_t},
                 seconds={"inputs": t1 - t0, "energy": t2 - t1, "tasks": t3 - t2})
