"""The OT allocator: the clearing rule that clears the energy and task markets by optimal transport.

Energy: offers (Wh above a forecast-aware reserve) to requests (Wh to a safe level, in sent
units), cost per Wh sent = path loss (1 - efficiency) + battery wear; a request left unmet costs
``max_loss`` per Wh (times the node's fairness weight), so a transfer is made only when it loses
less than that. Tasks: offered tasks (predicted to miss or beyond the backlog target) to spare
capacity, cost per task = (transfer + expected wait) in epochs + processing energy at the target;
pairs that cannot meet the deadline are infeasible. The solver is the scenario's
``controller.params.solver``, looked up in the transport registry; plans become decisions in the
market pipeline (``policies/clearing.py``); the duals are the nodes' shadow prices of energy and
compute.
"""
from __future__ import annotations

import numpy as np

from otmarl.scenarios.controllers import OTParams
from otmarl.simulator.control import Decision, Observation, WorldInfo

from . import market as M
from .clearing import Cleared, Clearing, clear_markets
from .transport import SOLVERS, FlowGraph, Site, Solver, SparsePlan, TransportResult, solve, solve_pairs


class OTController:
    """Optimal transport: clears the energy and task markets at the least total cost (path loss
    and wear for energy, delay and energy for tasks), leaving a request unmet only where serving
    it would lose more than max_loss per Wh"""
    name = "ot"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        self.info = world_info
        self.p = M.parse_params(world_info, OTParams)
        self.solver = SOLVERS[self.p.solver]
        # the solver's own stream, spawned from the run's policy stream without drawing from it
        self.rng = rng.spawn(1)[0]
        self.unmet = np.zeros(world_info.n_nodes)          # smoothed share of request left unmet
        self.scarcity = 0.0                                 # smoothed share of all requests unmet
        self.scarcity_memory = float(np.exp(-world_info.dt_s / 86400.0))

    def decide(self, obs: Observation) -> Decision:
        # a large energy market comes sparse (``market.SPARSE_ABOVE``), and a large task market
        # cut to each offer's cheapest requests (``market.FEW_REQUESTS_FROM``), for a solver whose
        # optimum is the least-cost plan (``Solver.pairs``); the entropic ones need every pair
        markets = M.build_markets(obs, self.info, self.p, self.least_efficiency(), sparse=self.solver.pairs)
        return self.clear(obs, markets).decision

    def least_efficiency(self) -> float | None:
        """The path efficiency below which no energy transfer can be in an optimal plan: its cost
        (loss plus wear) reaches the largest unmet penalty of the epoch (plus the store value,
        which raises the penalty of every request and the cost of stored energy alike, but not
        the cost of energy that would be curtailed), so leaving the request unmet costs no more.
        The market then searches paths only that far. None where the bound does not hold:
        latency-only costs, or a solver that finds its own paths on the graph."""
        p = self.p
        if p.path_costs != "energy" or self.solver.on_graph:
            return None
        most = float(self.weight(self.unmet.max(), 1.0))
        least = 1.0 + p.wear_cost - p.max_loss * most - self.store_value()
        return least if least > 0 else None

    def weight(self, unmet, urgency):
        """A request's weight on ``max_loss`` (its unmet penalty per Wh): 1, plus ``fairness`` times
        its node's smoothed unmet share over the mean share, plus ``urgency`` times its urgency
        (0 .. 1). The clearing and ``least_efficiency`` both use it."""
        return 1.0 + self.p.fairness * unmet / max(self.unmet.mean(), 1e-12) + self.p.urgency * urgency

    def clear(self, obs: Observation, markets: M.Markets) -> Cleared:
        """Clear given markets (MARL market mode sets its own) and update the fairness history."""
        out = clear_markets(self, markets, obs, self.info)
        if markets.energy is not None:
            self._update_fairness(markets.energy, out)
        return out

    # ------------------------------------------------------------------ the clearing rule
    def clear_energy(self, m: M.EnergyMarket, obs: Observation) -> Clearing:
        o, r = m.offers, m.requests
        weight = self.weight(self.unmet[r.nodes], m.urgency)
        penalty = (np.zeros(len(o.nodes)), self.p.max_loss * weight * np.ones(len(r.nodes)))
        site = self._site(o, r, obs)
        if self.store_value() > 0 and not self.solver.on_graph and m.spill.any():
            return self._clear_tiered(m, penalty, site)
        if m.pairs is not None:
            res = solve_pairs(o.amount, m.demand_sent, m.pairs.i, m.pairs.j, m.pairs.cost, penalty)
        else:
            res = self._solve(self.solver, o.amount, m.demand_sent, m.cost, penalty, site)
        return _clearing(res, penalty[1])

    def _clear_tiered(self, m: M.EnergyMarket, penalty, site) -> Clearing:
        """Each offer as two rows: the Wh it would curtail (path cost only), then the Wh from its
        store (path cost plus ``store_value``); the plan is their sum."""
        o = m.offers
        k = len(o.nodes)
        supply = np.concatenate([m.spill, o.amount - m.spill])
        value = self.store_value()
        # the unmet penalty rises by as much, so stored energy reaches as far as before
        pen = (np.zeros(2 * k), penalty[1] + value)
        if m.pairs is not None:
            pr = m.pairs
            res = solve_pairs(supply, m.demand_sent, np.concatenate([pr.i, pr.i + k]), np.concatenate([pr.j, pr.j]),
                              np.concatenate([pr.cost, pr.cost + value]), pen)
            c = _clearing(res, pen[1])
            plan = _fold(res.plan_coo, k)
        else:
            cost = np.vstack([m.cost, m.cost + value])
            tsite = Site(np.concatenate([site.supply_nodes, site.supply_nodes]), site.demand_nodes,
                         site.positions, site.graph, site.reg, site.reg_m)
            res = self._solve(self.solver, supply, m.demand_sent, cost, pen, tsite)
            c = _clearing(res, pen[1])
            plan = res.plan[:k] + res.plan[k:]
        price = None if c.offer_price is None else np.maximum(c.offer_price[:k], c.offer_price[k:])
        return Clearing(plan, c.solver, c.status, c.objective, price, c.request_price, c.request_penalty,
                        c.total_cost, c.bound)

    def clear_tasks(self, m: M.TaskMarket, obs: Observation) -> Clearing:
        o, r = m.offers, m.requests
        # a graph solver prices energy paths: task costs are not the graph's
        solver = SOLVERS["exact"] if self.solver.on_graph else self.solver
        res = self._solve(solver, o.amount.astype(float), r.amount.astype(float), m.cost, None,
                          self._site(o, r, obs))
        return _clearing(res)

    def _solve(self, solver: Solver, supply: np.ndarray, demand: np.ndarray, cost: np.ndarray,
               penalty: tuple[np.ndarray, np.ndarray] | None, site: Site) -> TransportResult:
        return solve(supply, demand, cost, solver.name, penalty=penalty if solver.penalty else None,
                     options=solver.options_at(site), rng=self.rng)

    def _site(self, offers: M.Side, requests: M.Side, obs: Observation) -> Site:
        return Site(offers.nodes, requests.nodes, self.info.positions, lambda: self._flow_graph(obs),
                    self.p.reg, self.p.reg_m)

    def _flow_graph(self, obs: Observation) -> FlowGraph:
        """The energy network of the links that are up: loss per Wh and power limit per epoch."""
        net, info = obs.network, self.info
        L = net.links
        up = net.link_up & ~obs.failed[L.u] & ~obs.failed[L.v]
        u, v = L.u[up], L.v[up]
        loss = 1.0 - L.transfer_efficiency[up]
        cap = info.link_power_limit_w[up] * info.dt_s / 3600.0
        return FlowGraph(info.n_nodes, np.concatenate([u, v]), np.concatenate([v, u]),
                         np.concatenate([loss, loss]), np.concatenate([cap, cap]))

    def store_value(self) -> float:
        """Cost per Wh taken from a store: the parameter, or ``max_loss`` times the share of the
        requested energy the market left unmet over about the last day."""
        v = self.p.store_value
        return self.p.max_loss * self.scarcity if v is None else v

    def _update_fairness(self, m: M.EnergyMarket, out: Cleared) -> None:
        """Smooth each requester's unmet share of this epoch into its history."""
        r = m.requests
        e = out.energy
        got = np.bincount(np.searchsorted(r.nodes, e.dst), e.wh * e.eff, len(r.nodes))
        b = self.p.fairness_memory
        self.unmet *= b
        self.unmet[r.nodes] += (1 - b) * np.clip(1 - got / np.maximum(r.amount, 1e-12), 0.0, 1.0)
        asked = float(r.amount.sum())
        short = min(max(1.0 - float(got.sum()) / asked, 0.0), 1.0) if asked > 1e-9 else 0.0
        c = self.scarcity_memory
        self.scarcity = c * self.scarcity + (1 - c) * short


def _clearing(res: TransportResult, request_penalty: np.ndarray | None = None) -> Clearing:
    """An OT result as a clearing: prices are the duals (an offer's price is -u)."""
    total = res.value + res.unserved_cost
    bound = res.lower_bound if res.lower_bound is not None else total if res.status == "optimal" else np.nan
    return Clearing(res.plan if res.plan is not None else res.plan_coo, res.solver, res.status, res.objective,
                    -res.u, res.v, request_penalty, total, bound)


def _fold(plan: SparsePlan, k: int) -> SparsePlan:
    """A plan over two tiers of ``k`` offers each (``_clear_tiered``) as one plan over the offers."""
    n_r = plan.shape[1]
    keys, inverse = np.unique((plan.rows % k) * n_r + plan.cols, return_inverse=True)
    return SparsePlan(keys // n_r, keys % n_r, np.bincount(inverse.ravel(), plan.mass, len(keys)), (k, n_r))
