"""The ``controller`` section of a scenario: which controller runs, and its parameters, typed and
bounded here so that ``otmarl validate`` rejects a bad value at its FILE:LINE:COL before anything
runs.

One parameter block serves every controller: ``otmarl compare`` runs several controllers on one
scenario, so a block written for ``ot`` must also load when ``local`` or ``greedy`` run it. Each
key belongs to the controllers its docstring names; the others ignore it. An unknown key, an
out-of-range value or an unknown solver is an error for every controller. The names listed here
are the policies' registries' names (``otmarl.policies.REGISTRY``, ``otmarl.policies.transport.
SOLVERS``); tests/test_validate.py checks that they agree.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .fields import Model, closest, located_error

#: The built-in controllers (``marl:DIR`` names a trained MARL policy besides these).
CONTROLLERS = ("local", "random", "greedy", "proportional", "threshold", "ot", "mpc")
#: The OT solvers of the transport registry.
SOLVERS = ("exact", "network", "sinkhorn", "unbalanced", "hierarchical")


def policy_problem(name: str) -> str | None:
    """Why ``name`` names no controller (with a did-you-mean), or None."""
    if name in CONTROLLERS or (name.startswith("marl:") and len(name) > 5):
        return None
    close = closest(name, list(CONTROLLERS))
    hint = f"did you mean '{close}'? " if close else ""
    return (f"unknown policy '{name}'; {hint}known: {', '.join(CONTROLLERS)}, or marl:DIR "
            "(a policy trained by otmarl train)")


class ControllerParams(Model):
    """Parameters of the controllers (``controller.params``)."""

    energy: bool = True
    """Market controllers (greedy, proportional, threshold, ot): share energy."""
    tasks: bool = True
    """Market controllers: offload tasks."""
    levels: Literal["forecast", "soc"] = "forecast"
    """Market controllers: how a node sets its energy offer and request. 'forecast': project its
    stored energy over the lookahead with the expected harvest and its need, and offer what the
    lowest point leaves above the brownout level plus reserve_epochs of need, or request what it
    lacks (no thresholds to tune; docs/model.md). 'soc': the fixed state-of-charge levels
    high_soc and low_soc, shifted by lookahead_epochs of the current net forecast."""
    reserve_epochs: float = Field(1.0, ge=0, le=1e4)
    """Market controllers with levels 'forecast': epochs of a node's need kept above its brownout
    level at the projected lowest point."""
    high_soc: float = Field(0.6, ge=0, le=1)
    """Market controllers with levels 'soc': a node offers the energy it holds above this state of
    charge (shifted by its forecast)."""
    low_soc: float = Field(0.3, ge=0, le=1)
    """Market controllers: with levels 'soc', a node requests energy up to this state of charge
    (shifted by its forecast); at most high_soc. Below it a node offers all its waiting tasks and
    takes none."""
    lookahead_epochs: float | None = Field(None, ge=0, le=1e5)
    """Market controllers: the forecast's window in epochs; by default one day for levels
    'forecast' (cut at the end of the run) and 4 for levels 'soc'."""
    clearness: float = Field(0.7, ge=0, le=1)
    """Market controllers with levels 'soc': expected fraction of clear-sky harvest (with levels
    'forecast' the expectation comes from the scenario's weather model)."""
    max_loss: float = Field(0.5, ge=0, le=1)
    """Market controllers, energy: leaving a Wh of request unmet costs this much; a transfer
    losing more is not made."""
    wear_cost: float = Field(0.01, ge=0, le=1)
    """Market controllers, energy: battery wear per Wh sent, in the units of loss (fraction of a
    Wh)."""
    backlog_epochs: float = Field(1.0, gt=0, le=1e4)
    """Market controllers, tasks: a node offers the waiting work beyond this many epochs of its
    servers' time, and every waiting task predicted to miss its deadline."""
    energy_weight: float = Field(1.0, ge=0, le=1e6)
    """Market controllers, tasks: weight of the processing energy at the target (relative to the
    mean) in the cost."""
    fairness: float = Field(0.0, ge=0, le=1e6)
    """ot: weight of a node's history of unmet requests in the penalty for leaving it unserved."""
    urgency: float = Field(0.0, ge=0, le=1e3)
    """ot with levels 'forecast': weight of a request's urgency (1 when the requester would fall
    below its floor this epoch, falling to 0 at the end of the window) in the penalty for leaving
    it unmet, so scarce energy goes first where it is needed soonest."""
    fairness_memory: float = Field(0.9, ge=0, lt=1)
    """ot: exponential smoothing of that history per epoch."""
    solver: Literal["exact", "network", "sinkhorn", "unbalanced", "hierarchical"] = "exact"
    """ot: the OT solver (docs/policies.md)."""
    reg: float = Field(1e-3, gt=0, le=1e3)
    """ot with sinkhorn or unbalanced: entropic regularisation, relative to the largest cost
    (benchmarks/entropic_gap.py: at 1e-3 the plans cost at most 0.005 % more than the exact ones
    on the built-ins' markets)."""
    reg_m: float = Field(1.0, gt=0, le=1e6)
    """ot with unbalanced: marginal relaxation."""
    p_act: float = Field(0.3, ge=0, le=1)
    """random: probability that a node acts in an epoch."""
    mpc_horizon: int = Field(8, ge=1, le=1000)
    """mpc: epochs in the rolling window of its linear program."""
    mpc_forecast: Literal["market", "perfect"] = "market"
    """mpc: harvest over the window: the market's forecast (the scenario's expected harvest of
    each epoch, failures as they are now) or the realised harvest and failures (perfect)."""
    mpc_unserved_weight: float = Field(1.0, gt=0, le=1e6)
    """mpc: cost per Wh of idle load left unserved in the window."""
    mpc_store_value: float = Field(0.5, ge=0, le=1e6)
    """mpc: value per Wh above the brownout level at the end of the window (below the unserved
    weight, so that serving the load comes first)."""
    mpc_transfer_cost: float = Field(0.01, ge=0, le=1e3)
    """mpc: cost per Wh entering a link (keeps transfers to those that help)."""

    @model_validator(mode="after")
    def _levels_in_order(self) -> "ControllerParams":
        if self.low_soc > self.high_soc:
            raise located_error([(("low_soc",), f"value {self.low_soc:g} must be <= "
                                                f"high_soc={self.high_soc:g}", "value")])
        return self


class Controller(Model):
    policy: str = "local"
    """Controller name: local, random, greedy, proportional, threshold, ot, or marl:DIR."""
    params: ControllerParams = ControllerParams()
    """Parameters of the controllers (each key names the controllers that read it)."""

    @field_validator("policy")
    @classmethod
    def _known(cls, v: str) -> str:
        bad = policy_problem(v)
        if bad:
            raise ValueError(bad)
        return v


def params_table() -> list[tuple[str, str, str, str]]:
    """(name, default, allowed values, description) of every controller parameter, in the order of
    ``ControllerParams``: what ``otmarl policies`` prints and docs/policies.md lists."""
    import typing
    rows = []
    for name, f in ControllerParams.model_fields.items():
        args = typing.get_args(f.annotation)
        if typing.get_origin(f.annotation) is Literal:
            allowed = "one of " + ", ".join(map(str, args))
        elif f.annotation is bool:
            allowed = "true, false"
        else:
            ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
            bounds = [f"{op} {getattr(m, k):g}" for m in f.metadata for k, op in ops.items()
                      if getattr(m, k, None) is not None]
            allowed = "a number " + " and ".join(bounds) + (", or null" if type(None) in args else "")
        default = "null" if f.default is None else str(f.default).lower() if isinstance(f.default, bool) \
            else f"{f.default:g}" if isinstance(f.default, float) else str(f.default)
        rows.append((name, default, allowed, " ".join((f.description or "").split())))
    return rows


def params_markdown() -> str:
    """The parameters as a Markdown table (docs/policies.md holds this text; a test compares)."""
    lines = ["| parameter | default | allowed | meaning |", "|---|---|---|---|"]
    lines += [f"| `{n}` | `{d}` | {a} | {m.replace('|', '/')} |" for n, d, a, m in params_table()]
    return "\n".join(lines) + "\n"
