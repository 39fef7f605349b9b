"""The OT allocator: clears the energy and task markets by optimal transport.

Energy: offers (Wh above a forecast-aware reserve) to requests (Wh to a safe level, in sent
units), cost per Wh sent = path loss (1 - efficiency) + battery wear; a request left unmet costs
``max_loss`` per Wh (times the node's fairness weight), so a transfer is made only when it loses
less than that. Tasks: offered tasks (predicted to miss or beyond the backlog target) to spare
capacity, cost per task = (transfer + expected wait) in epochs + processing energy at the target;
pairs that cannot meet the deadline are infeasible. Plans become decisions within every limit the
world enforces; the duals are the nodes' shadow prices of energy and compute.
"""
from __future__ import annotations

import numpy as np

from otmarl.simulator.control import Decision, Observation, WorldInfo

from . import market as M
from .transport import FlowGraph, solve


class OTController:
    name = "ot"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        self.info, self.rng = world_info, rng
        self.p = M.parse_params(world_info)
        self.unmet = np.zeros(world_info.n_nodes)          # smoothed share of request left unmet
        self.energy_price = np.zeros(world_info.n_nodes)   # duals of the last epoch
        self.task_price = np.zeros(world_info.n_nodes)

    # ----------------------------------------------------------------------------- solve
    def _solve(self, supply, demand, cost, nodes_s, nodes_d, penalty, obs: Observation):
        p, kw = self.p, {}
        if p.solver == "hierarchical":
            kw = {"supply_xy": self.info.positions[nodes_s], "demand_xy": self.info.positions[nodes_d],
                  "rng": 0}
        elif p.solver in ("sinkhorn", "unbalanced"):
            kw = {"reg": p.reg, "reg_m": p.reg_m}
        elif p.solver == "network":
            kw = {"graph": self._flow_graph(obs), "supply_nodes": nodes_s, "demand_nodes": nodes_d}
        if p.solver == "unbalanced":
            return solve(supply, demand, cost, "unbalanced", **kw)
        return solve(supply, demand, cost, p.solver, penalty=penalty, **kw)

    def _flow_graph(self, obs: Observation) -> FlowGraph:
        net, info = obs.network, self.info
        L = net.links
        up = net.link_up & ~obs.failed[L.u] & ~obs.failed[L.v]
        u, v = L.u[up], L.v[up]
        loss = 1.0 - L.transfer_efficiency[up]
        cap = info.link_power_limit_w[up] * info.dt_s / 3600.0
        return FlowGraph(info.n_nodes, np.concatenate([u, v]), np.concatenate([v, u]),
                         np.concatenate([loss, loss]), np.concatenate([cap, cap]))

    # ---------------------------------------------------------------------------- decide
    def decide(self, obs: Observation) -> Decision:
        p = self.p
        em = M.energy_market(obs, self.info, p) if p.energy else None
        ok = obs.stored_wh > p.low_soc * obs.capacity_wh
        tm = M.task_market(obs, self.info, p, ok) if p.tasks else None
        return self.clear(obs, em, tm)

    def clear(self, obs: Observation, em: M.EnergyMarket | None, tm: M.TaskMarket | None) -> Decision:
        """Clear given markets (either may be None) by OT; updates ``energy_price``/``task_price``."""
        audit: dict = {}
        prices: dict = {}
        energy = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        tasks = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        if em is not None:
            energy = self._clear_energy(em, obs, audit, prices)
        if tm is not None:
            sent = np.bincount(energy[0], energy[2], len(obs.stored_wh))
            tasks = self._clear_tasks(tm, obs, audit, prices, sent)
        audit["rows"] = M.offer_rows(em, tm, prices)
        return M.build_decision(energy, tasks, audit)

    def _clear_energy(self, em: M.EnergyMarket, obs, audit, prices):
        o, r = em.offers, em.requests
        if not len(o.nodes) or not len(r.nodes) or not np.isfinite(em.cost).any():
            self._update_fairness(r.nodes, r.amount, np.zeros(len(r.nodes)))
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        weight = 1.0 + self.p.fairness * self.unmet[r.nodes] / max(self.unmet.mean(), 1e-12)
        pen_d = self.p.max_loss * weight
        res = self._solve(o.amount, em.demand_sent, em.cost, o.nodes, r.nodes,
                          (np.zeros(len(o.nodes)), pen_d * np.ones(len(r.nodes))), obs)
        out = M.energy_transfers(em, res.plan, obs, self.info)
        got = np.bincount(np.searchsorted(r.nodes, out[1]), out[2] * em.eff[
            np.searchsorted(o.nodes, out[0]), np.searchsorted(r.nodes, out[1])], len(r.nodes))
        self._update_fairness(r.nodes, r.amount, got)
        self.energy_price[:] = 0.0
        self.energy_price[o.nodes], self.energy_price[r.nodes] = -res.u, res.v
        prices["energy_offer"], prices["energy_request"] = -res.u, res.v
        audit["energy"] = {"solver": res.solver, "status": res.status, "objective": res.objective}
        return out

    def _clear_tasks(self, tm: M.TaskMarket, obs, audit, prices, sent):
        o, r = tm.offers, tm.requests
        if not len(o.nodes) or not len(r.nodes) or not np.isfinite(tm.cost).any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        res = self._solve(o.amount.astype(float), r.amount.astype(float), tm.cost, o.nodes, r.nodes,
                          None, obs) if self.p.solver != "network" else \
            solve(o.amount.astype(float), r.amount.astype(float), tm.cost, "exact")
        counts = M.round_plan(np.where(np.isfinite(tm.cost), res.plan, 0.0), o.amount, r.amount)
        self.task_price[:] = 0.0
        self.task_price[o.nodes], self.task_price[r.nodes] = -res.u, res.v
        prices["task_offer"], prices["task_request"] = -res.u, res.v
        audit["task"] = {"solver": res.solver, "status": res.status, "objective": res.objective}
        return M.task_routes(tm, counts, obs, sent)

    def _update_fairness(self, nodes, asked, got) -> None:
        b = self.p.fairness_memory
        self.unmet *= b
        self.unmet[nodes] += (1 - b) * np.minimum(np.maximum(1 - got / np.maximum(asked, 1e-12), 0.0), 1.0)
