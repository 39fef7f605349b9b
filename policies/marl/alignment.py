"""Wasserstein-barycenter consensus between agents' policies (after Baheri 2025, "Wasserstein-
Barycenter Consensus for Cooperative MARL").

Every ``every`` updates the trainer takes each group's action distribution over the batch (a
group is a node class, or each agent when there is one class), per action component, and their
entropic Wasserstein barycenter ``b`` (debiased, POT's fixed point). The policy loss then gets

    lambda * mean_groups mean_components S_eps(p_g, b),

with ``S_eps(a, b) = OT_eps(a, b) - OT_eps(a, a)/2 - OT_eps(b, b)/2`` the Sinkhorn divergence
(>= 0, = 0 iff a = b), ``OT_eps(a, b) = min_P <P, C> + eps KL(P | a x b)``. Ground cost ``C``:
``|i - j| / (k - 1)`` between ordered levels (market actions), ``1 - [i = j]`` between unordered
choices (direct mode neighbours). lambda > 0 pulls the policies together; lambda < 0 pushes them
apart (diversity). The formulas are in docs/marl.md.
"""
from __future__ import annotations

import numpy as np

from . import deps


def ground_cost(k: int, ordinal: bool) -> np.ndarray:
    """(k, k) cost between the options of one action component, in [0, 1]."""
    i = np.arange(k)
    if ordinal:
        return np.abs(i[:, None] - i[None, :]) / max(k - 1, 1)
    return 1.0 - np.eye(k)


def barycenter(p: np.ndarray, cost: np.ndarray, eps: float = 0.1,
               weights: np.ndarray | None = None) -> np.ndarray:
    """Debiased entropic Wasserstein barycenter of the rows of ``p`` (G, k); sums to 1."""
    import ot
    p = np.asarray(p, float)
    p = p / p.sum(1, keepdims=True)
    w = np.full(len(p), 1.0 / len(p)) if weights is None else np.asarray(weights, float)
    # a target for the penalty, refreshed every few updates: a few thousand iterations are plenty
    b = ot.bregman.barycenter_debiased(p.T, cost, eps, weights=w, numItermax=5000, stopThr=1e-10,
                                       warn=False)
    b = np.maximum(np.nan_to_num(np.asarray(b, float)), 0.0)
    return b / b.sum()


def _potentials(a, b, cost, eps: float, iters: int, symmetric: bool, tol: float = 1e-9):
    """Log-domain Sinkhorn dual potentials (f, g) for OT_eps(a, b); batched over rows (and over
    components, with a cost of shape (..., k, k) broadcast against them). Stops early once a
    sweep moves no potential by more than ``tol`` (checked every 5 sweeps)."""
    torch = deps.torch()
    la, lb = torch.log(a + 1e-30), torch.log(b + 1e-30)
    c = cost / eps
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    for it in range(iters):
        before = f
        f_new = -eps * torch.logsumexp(lb[..., None, :] + g[..., None, :] / eps - c, dim=-1)
        if symmetric:           # OT(a, a): the averaged update converges without oscillating
            f = g = 0.5 * (f + f_new)
        else:
            f = f_new
            g = -eps * torch.logsumexp(la[..., :, None] + f[..., :, None] / eps - c, dim=-2)
        if it % 5 == 4 and float((f - before).abs().max()) <= tol:
            break
    return f, g


def sinkhorn_divergence(a, b, cost, eps: float = 0.1, iters: int = 100, g_bb=None):
    """S_eps(a, b) for probability vectors on a common support, batched over leading dims.

    Differentiable in ``a`` and ``b``: the potentials are computed without gradient and the value
    written as <a, f_ab - f_aa> + <b, g_ab - g_bb>, whose gradient at convergence is the exact
    gradient of S_eps (the envelope theorem), without back-propagating through the iterations.
    ``g_bb``: the potential of OT_eps(b, b) when known (a barycenter held between refreshes).
    """
    torch = deps.torch()
    cost = torch.as_tensor(cost, dtype=a.dtype, device=a.device)
    b = b.expand_as(a) if b.dim() < a.dim() else b
    with torch.no_grad():
        f_ab, g_ab = _potentials(a, b, cost, eps, iters, False)
        f_aa, _ = _potentials(a, a, cost, eps, iters, True)
        if g_bb is None:
            g_bb, _ = _potentials(b, b, cost, eps, iters, True)
    return (a * (f_ab - f_aa)).sum(-1) + (b * (g_ab - g_bb.expand_as(b))).sum(-1)


class Consensus:
    """The barycenter penalty of one training run: ``refresh`` the barycenters from the groups'
    action distributions; ``penalty`` is differentiable in the policy's probabilities."""

    def __init__(self, nvec, ordinal, groups: np.ndarray, lam: float, eps: float = 0.1):
        torch = deps.torch()
        self.lam, self.eps = float(lam), float(eps)
        self.nvec = list(nvec)
        self.costs = [torch.as_tensor(ground_cost(k, o), dtype=torch.float32) for k, o in zip(nvec, ordinal)]
        self.costs_np = [ground_cost(k, o) for k, o in zip(nvec, ordinal)]
        self.groups = np.asarray(groups, np.int64)         # group of each agent
        self.n_groups = int(self.groups.max()) + 1
        self.bary: list | None = None
        # components with the same number of options are solved as one batch (market mode: all)
        self.stacked = torch.stack(self.costs)[:, None] if len(set(self.nvec)) == 1 else None
        self.g_bb = None

    def group_marginals(self, probs, group):
        """Mean action distribution of each group present: (G_present, k) per component."""
        torch = deps.torch()
        out = []
        present = torch.unique(group)
        for p in probs:
            s = torch.zeros(self.n_groups, p.shape[-1], dtype=p.dtype).index_add_(0, group, p)
            cnt = torch.bincount(group, minlength=self.n_groups).clamp_min(1).to(p.dtype)
            out.append((s / cnt[:, None])[present])
        return out

    def refresh(self, probs, group) -> None:
        """New barycenters from a batch of per-sample probabilities (no gradient)."""
        torch = deps.torch()
        with torch.no_grad():
            marg = self.group_marginals(probs, group)
        self.bary = [torch.as_tensor(barycenter(m.numpy(), c, self.eps), dtype=torch.float32)
                     for m, c in zip(marg, self.costs_np)]
        if self.stacked is not None:      # OT_eps(b, b) stays the same until the next refresh
            b = torch.stack(self.bary)[:, None]
            self.g_bb = _potentials(b, b, self.stacked, self.eps, 100, True)[0]

    def dispersion(self, probs, group):
        """Mean Sinkhorn divergence of the groups' distributions to the barycenter."""
        torch = deps.torch()
        if self.bary is None:
            return torch.zeros(())
        marg = self.group_marginals(probs, group)
        if self.stacked is not None:
            b = torch.stack(self.bary)[:, None].to(marg[0].dtype)
            return sinkhorn_divergence(torch.stack(marg), b, self.stacked.to(marg[0].dtype), self.eps,
                                       g_bb=self.g_bb.to(marg[0].dtype)).mean(1).mean()
        d = [sinkhorn_divergence(m, b[None, :], c, self.eps).mean()
             for m, b, c in zip(marg, self.bary, self.costs)]
        return torch.stack(d).mean()

    def penalty(self, probs, group):
        """lambda x dispersion (0 until the first refresh)."""
        return self.lam * self.dispersion(probs, group)
