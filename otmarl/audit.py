"""``otmarl audit RUN --epoch K``: rebuild one epoch's energy market from a run folder alone and
solve it again.

Everything comes from the folder: the offers and requests (flows.parquet rows ``energy_offer`` /
``energy_request`` with the penalty ot charged per unmet unit), the network of that epoch
(links.parquet, link_events.parquet and the ``failed`` flags of timeseries.parquet), and the
controller's parameters (metadata.json, defaults included). The cost of every pair, traded or
not, is rebuilt as the market builds it (``1 - path efficiency + wear_cost``, inf without a path),
the problem is solved with the run's solver, and the objective and plan are set against what the
run recorded. Tables are float32 on disk, so expect a gap of about 1e-7 relative, not 0.

Every traded epoch's flow rows also carry the plan's total cost and a certified lower bound on the
least total cost (``bound``: the cost itself for an exact solve, the c-transform of the duals for
sinkhorn and hierarchical); the audit prints the distribution of the gap between them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from otmarl.scenarios.errors import UserError

NEEDED = ("flows", "links", "link_events", "timeseries")


@dataclass(frozen=True)
class EpochAudit:
    """One epoch's energy market rebuilt and solved again, beside what the run recorded."""

    epoch: int
    offers: int
    requests: int
    solver: str
    objective: float
    recorded_objective: float | None
    """None when the run moved no energy in that epoch (its objective is not on a flow row)."""
    plan_wh: float
    recorded_wh: float
    """Wh the run sent in that epoch: the plan after headroom and link limits were fitted."""

    @property
    def gap(self) -> float | None:
        """Relative gap of the objective solved again to the recorded one."""
        if self.recorded_objective is None:
            return None
        return abs(self.objective - self.recorded_objective) / max(abs(self.recorded_objective), 1e-12)


def _read(folder: Path, name: str) -> pd.DataFrame:
    path = folder / f"{name}.parquet"
    if not path.is_file():
        raise UserError(f"{folder}: no {name}.parquet (an audit needs {', '.join(NEEDED)}: run with "
                        "--tables all or no-tasks)")
    return pd.read_parquet(path)


def network_at(folder: Path, epoch: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(links, which links are up, which nodes have failed) in ``epoch``."""
    links = _read(folder, "links")
    events = _read(folder, "link_events")
    up = np.ones(len(links), bool)
    for link, state in events[events.epoch <= epoch][["link", "up"]].itertuples(index=False):
        up[int(link)] = bool(state)
    ts = _read(folder, "timeseries")
    now = ts[ts.epoch == epoch].sort_values("node")
    return links, up, now["failed"].to_numpy(bool)


def efficiency(links: pd.DataFrame, up: np.ndarray, failed: np.ndarray, n: int,
               src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Best path efficiency (src x dst) over the usable links, 0 where there is no path: the
    simulator's own energy paths (``Paths`` with weight -ln efficiency) on the recorded network."""
    from otmarl.simulator.network import LINK_FIELDS, Links, Paths
    arrays = Links(u=links.u.to_numpy(np.int64), v=links.v.to_numpy(np.int64),
                   **{f: links[f].to_numpy(float) for f in LINK_FIELDS})
    paths = Paths(n, arrays, -np.log(arrays.transfer_efficiency))
    paths.invalidate(link_up=up, node_ok=~failed)
    dist = paths.rows(src)[:, dst] if len(src) else np.zeros((0, len(dst)))
    return np.where(np.isfinite(dist), np.exp(-dist), 0.0)


def audit_epoch(folder: str | Path, epoch: int) -> EpochAudit:
    """Rebuild and solve ``epoch``'s energy market of the run in ``folder`` (module docstring)."""
    from otmarl.policies.transport import solve
    folder = Path(folder)
    meta = json.loads((folder / "metadata.json").read_text())
    params = meta["scenario"]["controller"]["params"]
    flows = _read(folder, "flows")
    rows = flows[flows.epoch == epoch]
    offers, requests = rows[rows.kind == "energy_offer"], rows[rows.kind == "energy_request"]
    if not len(offers) or not len(requests):
        raise UserError(f"--epoch: epoch {epoch} of {folder} has no energy market to audit (offers "
                        f"{len(offers)}, requests {len(requests)}); epochs with one: "
                        f"{_epochs_with_markets(flows)}")
    links, up, failed = network_at(folder, epoch)
    n = len(failed)
    o, r = offers.src.to_numpy(np.int64), requests.src.to_numpy(np.int64)
    eff = efficiency(links, up, failed, n, o, r)
    cost = np.where(eff > 0, 1.0 - eff + params["wear_cost"], np.inf)
    best = eff.max(axis=0)
    demand = np.where(best > 0, requests.amount.to_numpy(float) / np.where(best > 0, best, 1.0), 0.0)
    pen = requests["penalty"].to_numpy(float) if "penalty" in requests else np.full(len(r), np.nan)
    pen = np.where(np.isfinite(pen), pen, params["max_loss"])
    traded = rows[rows.kind == "energy"]
    solver = str(traded.solver.iloc[0]) if len(traded) and "solver" in traded else params["solver"]
    res = solve(offers.amount.to_numpy(float), demand, cost, solver if solver in _SOLVABLE else "exact",
                penalty=(np.zeros(len(o)), pen))
    plan = res.plan if res.plan is not None else np.zeros((len(o), len(r)))
    return EpochAudit(epoch, len(o), len(r), res.solver, float(res.objective),
                      float(traded.objective.iloc[0]) if len(traded) and "objective" in traded else None,
                      float(np.where(np.isfinite(cost), plan, 0.0).sum()), float(traded.amount.sum()))


_SOLVABLE = ("exact", "sinkhorn", "unbalanced")
"""Solvers the audit runs as the run did; the graph solvers are checked by the exact one."""


def _epochs_with_markets(flows: pd.DataFrame) -> str:
    both = set(flows.epoch[flows.kind == "energy_offer"]) & set(flows.epoch[flows.kind == "energy_request"])
    shown = sorted(int(e) for e in both)
    return ", ".join(map(str, shown[:10])) + (", ..." if len(shown) > 10 else "") if shown else "none"


def add_parser(subparsers) -> None:
    a = subparsers.add_parser("audit", help="rebuild one epoch's energy market from a run folder "
                              "and solve it again")
    a.add_argument("run", metavar="RUN", help="a run folder")
    a.add_argument("--epoch", type=int, help="the epoch (default: the first with trades)")


def cmd(args) -> int:
    folder = Path(args.run)
    if not (folder / "metadata.json").is_file():
        raise UserError(f"{folder}: not a run folder (no metadata.json)")
    epoch = args.epoch
    if epoch is None:
        flows = _read(folder, "flows")
        traded = flows.epoch[flows.kind == "energy"]
        if not len(traded):
            raise UserError(f"{folder}: the run moved no energy; name an epoch with --epoch")
        epoch = int(traded.min())
    a = audit_epoch(folder, epoch)
    print(f"{folder}, epoch {a.epoch}: {a.offers} offers x {a.requests} requests, solved again "
          f"with {a.solver}")
    print(f"  objective solved again {a.objective:.9g}; recorded "
          + ("none (no energy moved)" if a.recorded_objective is None else
             f"{a.recorded_objective:.9g}; relative gap {a.gap:.2e}"))
    print(f"  plan {a.plan_wh:.6g} Wh; sent by the run after headroom and link limits {a.recorded_wh:.6g} Wh")
    for line in gap_lines(_read(folder, "flows")):
        print(line)
    return 0


def solver_gaps(flows: pd.DataFrame) -> pd.DataFrame:
    """Per market kind and traded epoch: the plan's total cost, the certified lower bound on the
    least total cost recorded with it, and the relative gap ``(total - bound) / total`` (an upper
    bound on how far the solver's plan is from the exact optimum; 0 for an exact solve). Epochs
    without a bound (rules, the unbalanced solver, runs from before the column) are left out."""
    if "bound" not in flows:
        return pd.DataFrame(columns=["kind", "epoch", "total_cost", "bound", "gap"])
    rows = flows[flows.kind.isin(["energy", "task"]) & flows.bound.notna()]
    first = rows.groupby(["kind", "epoch"], sort=True)[["total_cost", "bound"]].first().reset_index()
    total = first.total_cost.astype(float)
    first["gap"] = np.where(total.abs() > 1e-12, (total - first.bound) / total.abs(), 0.0)
    return first


def gap_lines(flows: pd.DataFrame) -> list[str]:
    """The distribution of the solver's certified gap over every traded epoch, per market kind."""
    g = solver_gaps(flows)
    lines = []
    for kind, x in g.groupby("kind", sort=True):
        q = x.gap.quantile([0.5, 0.9]).to_numpy()
        lines.append(f"  {kind} markets, certified gap to the exact optimum over {len(x)} traded "
                     f"epochs: median {q[0]:.2e}, p90 {q[1]:.2e}, max {x.gap.max():.2e}")
    return lines
