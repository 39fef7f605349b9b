"""What a run's world will bring, known ahead: the inputs of the hindsight bound.

``foresee(scenario, seed)`` builds the world exactly as a run does (``World(scenario, seed)``) and
reads what no controller can change: the realised harvest of every epoch (the world's own harvest
model, stepped through the horizon on a world of its own), which nodes have failed and which links
are usable in each epoch (the world's fault schedule), the node and link parameters, and the
generated tasks. Nothing here is generated anew, so the bound sees the very harvest and arrivals a
run with the same seed meets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from otmarl.scenarios import schema as S

from .network import Links
from .workload import TaskTable
from .world import NodeParams, World


@dataclass(frozen=True)
class Foresight:
    """The exogenous side of one run (arrays over epochs ``K`` and nodes ``n`` or links ``L``).

    ``harvest_wh`` (K, n): harvest per epoch; ``alive`` (K, n): the node has not failed in the
    epoch; ``link_usable`` (K, L): the link is up and neither end has failed; ``idle_wh`` (n):
    idle load per epoch of an up node; ``link_cap_wh`` (L): most a link carries per epoch."""

    n: int
    n_epochs: int
    dt_s: float
    p: NodeParams
    links: Links
    tasks: TaskTable
    harvest_wh: np.ndarray
    alive: np.ndarray
    link_usable: np.ndarray
    idle_wh: np.ndarray
    link_cap_wh: np.ndarray
    sd_share: np.ndarray


def fault_states(world: World) -> tuple[np.ndarray, np.ndarray]:
    """(alive (K, n), link usable (K, L)) from the world's fault schedule, epoch by epoch."""
    K, n, L = world.n_epochs, world.n, len(world.links)
    failed, up = np.zeros(n, bool), np.ones(L, bool)
    alive, usable = np.zeros((K, n), bool), np.zeros((K, L), bool)
    u, v = world.links.u, world.links.v
    for k in range(K):
        for kind, idx, down in world.faults.get(k, ()):
            if kind == "node":
                failed[idx] = down
            else:
                up[idx] = not down
        alive[k] = ~failed
        usable[k] = up & ~failed[u] & ~failed[v]
    return alive, usable


def foresee(scenario: S.Scenario, seed: int, epochs: int | None = None) -> Foresight:
    """The exogenous inputs of a run of ``scenario`` with ``seed`` (its first ``epochs``)."""
    world = World(scenario, seed)
    K = world.n_epochs if epochs is None else min(epochs, world.n_epochs)
    harvest = np.stack([world.harvest.step() for _ in range(K)]) if K else np.zeros((0, world.n))
    alive, usable = fault_states(world)
    return Foresight(n=world.n, n_epochs=K, dt_s=world.dt, p=world.p, links=world.links,
                     tasks=world.tasks, harvest_wh=harvest, alive=alive[:K], link_usable=usable[:K],
                     idle_wh=world.idle_wh, link_cap_wh=world.link_cap_wh, sd_share=world.sd_share)
