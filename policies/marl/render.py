"""Rendering the MARL env: a text table (``ansi``) and a small image (``rgb_array``)."""
from __future__ import annotations

import numpy as np

from .features import COL

CELL = 12      # pixels per node square
SIZE = 240     # image side, pixels


def render_ansi(core) -> str:
    """One line per node: state of charge, status, queue and prices of the current epoch."""
    f, sim = core.obs, core.sim
    lines = [f"epoch {sim.k}/{sim.world.n_epochs}  team return {core.team_return:.3f}",
             f"{'agent':14s} {'soc':>6s} {'status':>8s} {'queue':>6s} {'e_price':>8s} {'t_price':>8s}"]
    for i, name in enumerate(core.names):
        status = "failed" if f[i, COL["failed"]] else ("up" if f[i, COL["up"]] else "brownout")
        lines.append(f"{name:14s} {f[i, COL['soc']]:6.1%} {status:>8s} {int(core.cur.queue_len[i]):6d} "
                     f"{f[i, COL['energy_price']]:8.3f} {f[i, COL['task_price']]:8.3f}")
    return "\n".join(lines)


def _colour(soc: np.ndarray) -> np.ndarray:
    """Red (empty) through yellow to green (full), (n, 3) uint8."""
    s = np.clip(soc, 0.0, 1.0)
    r = np.where(s < 0.5, 1.0, 2.0 - 2.0 * s)
    g = np.where(s < 0.5, 2.0 * s, 1.0)
    return (np.stack([r, g, np.zeros_like(s)], axis=1) * 230).astype(np.uint8)


def render_rgb(core) -> np.ndarray:
    """A (SIZE, SIZE, 3) uint8 image: links as grey lines, nodes as squares coloured by state of
    charge at their map positions; a node that is down is drawn dark with a coloured core."""
    img = np.full((SIZE, SIZE, 3), 255, np.uint8)
    info = core.info
    xy = info.positions
    span = np.where(np.ptp(xy, axis=0) > 0, np.ptp(xy, axis=0), 1.0)
    px = (CELL + (xy - xy.min(0)) / span * (SIZE - 3 * CELL)).astype(int)
    u, v = px[np.asarray(info.link_u, np.int64)], px[np.asarray(info.link_v, np.int64)]
    # points along every link at once, at least one per pixel of the longest link
    steps = int(np.abs(v - u).max(initial=0)) + 2
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    p = (u[:, None, :] + t * (v - u)[:, None, :]).astype(int).reshape(-1, 2) + CELL // 2
    img[p[:, 1], p[:, 0]] = 190
    colour = _colour(core.obs[:, COL["soc"]])
    up = core.obs[:, COL["up"]] > 0
    for i, (x, y) in enumerate(px.tolist()):
        img[y:y + CELL, x:x + CELL] = colour[i] if up[i] else 40
        if not up[i]:
            img[y + 3:y + CELL - 3, x + 3:x + CELL - 3] = colour[i]
    return img
