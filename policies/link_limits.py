"""Fitting energy transfers into the links' power limits: the one algorithm that the market
pipeline (``policies/clearing.py``) and the MARL direct actions (``policies/marl/actions.py``) share.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SAFETY = 1e-12
"""Relative margin a cut transfer keeps below its share, so that the world's own sums of the
loads, rounded in another order, stay within the limits too."""


def fit_link_limits(amount_wh: np.ndarray, paths: Sequence[Sequence[int]], limit_wh: np.ndarray) -> np.ndarray:
    """The transfers ``amount_wh`` (one per path; ``paths[k]`` lists the link indices transfer k
    crosses) scaled down so that no link carries more than ``limit_wh``; a new array.

    One pass: with ``load_e`` the sum of the transfers crossing link e, every transfer is scaled by
    ``f_k = min(1, min over e in its path of limit_e / load_e)`` (taken over the overloaded links).

    *Feasible always.* On a link e that is not overloaded the new load is at most the old one
    (every f_k <= 1). On an overloaded one every transfer crossing e has f_k <= limit_e / load_e,
    so its new load is sum_k f_k x_k <= (limit_e / load_e) * sum_k x_k = limit_e. Transfers only
    shrink and stay >= 0 (0 <= f_k <= 1); a limit of 0 stops every transfer across it. When no
    link is overloaded the amounts come back unchanged.

    *Exactness.* When no transfer crosses two overloaded links, the result is a largest feasible
    flow (in total Wh, among flows that cut no transfer above its amount): every overloaded link
    ends full and every other transfer is whole. Otherwise it may keep less: a transfer cut hard by
    one link leaves capacity unused on the others it crosses. E.g. link A (limit 1) carries x1 = 1
    alone and x2 = 1 on its way to link B (limit 0): the pass keeps x1 = 0.5, x2 = 0, where x1 = 1
    is feasible. What it always keeps is at least rho = min over links of min(1, limit / load) of
    every transfer, hence at least rho times the largest feasible total.

    *Floating point.* The kept share is shrunk by ``SAFETY`` (1e-12), which covers the rounding of
    the factors and of the sums of up to thousands of transfers per link, while limits are 0 or
    normal-sized (the test draws 0 or 1e-9 to 1e3 Wh against amounts up to 1e4 Wh); a limit near
    the underflow range (1e-308) would need a wider margin.
    """
    amount = np.array(amount_wh, dtype=float)
    lengths = np.array([len(p) for p in paths], np.int64)
    edges = np.array([e for p in paths for e in p], np.int64)
    owner = np.repeat(np.arange(len(paths)), lengths)
    load = np.bincount(edges, amount[owner], len(limit_wh))
    over = load > limit_wh
    if not over.any():
        return amount
    scale = np.ones(len(limit_wh))
    scale[over] = limit_wh[over] / load[over]
    factor = np.ones(len(amount))
    np.minimum.at(factor, owner, scale[edges])
    return np.where(lengths > 0, amount * (factor * (1 - SAFETY)), amount)
