"""The ``controller`` section of a scenario: which controller runs, and its parameters, typed and
bounded here so that ``otmarl validate`` rejects a bad value at its FILE:LINE:COL before anything
runs.

Each controller declares its parameter model (``PARAMS``): ``local`` has none, ``random`` its
activity, the market rules (greedy, proportional, threshold) the market's levels and costs, ``ot``
those and its solver's, ``mpc`` its window's, and a trained policy (``marl:DIR``) the ``ot``
parameters it clears its market with. The section is a union discriminated by ``policy``
(``otmarl scenarios schema`` emits it as ``oneOf``); a key the named controller does not read is
an error naming the controllers that read it.

When a command runs another controller on the same scenario (``run --policy``, ``compare``, a
sweep's ``policies``), the parameters the two controllers share carry over and the others are
dropped (``with_policy``): ``high_soc`` set for ``ot`` also holds for ``greedy``; ``solver`` does
not reach ``local``. The names listed here are the policies' registries' names
(``otmarl.policies.REGISTRY``, ``otmarl.policies.transport.SOLVERS``); tests/test_validate.py
checks that they agree.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, create_model, model_validator

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


class LocalParams(Model):
    """local: no parameters (each node serves its own load and tasks)."""


class RandomParams(Model):
    """random: its activity."""

    p_act: float = Field(0.3, ge=0, le=1)
    """random: probability that a node acts in an epoch."""


class MarketParams(Model):
    """The market rules (greedy, proportional, threshold; ot and marl:DIR too): the levels at
    which nodes offer and request, and the costs of a transfer."""

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
    backlog_epochs: float | None = Field(None, gt=0, le=1e4)
    """Market controllers, tasks: a node offers the waiting work beyond this many epochs of its
    servers' time, and every waiting task predicted to miss its deadline. Default (null): per
    node, its class's shortest relative deadline in epochs, at most 1 (work queued beyond it
    would make the tightest task arriving next miss)."""
    energy_weight: float = Field(1.0, ge=0, le=1e6)
    """Market controllers, tasks: weight of the processing energy at the target (relative to the
    mean) in the cost."""
    path_costs: Literal["energy", "latency"] = "energy"
    """Market controllers: what a pair costs the allocator. 'energy': an energy transfer's path
    loss plus wear, and a task move's time plus the energy of processing it at the target (the
    design). 'latency': the path's transit time only (the ablation of benchmarks/path_costs.py):
    energy pairs by transit time scaled below max_loss, tasks by time alone. The world routes
    energy on the most efficient path either way."""

    @model_validator(mode="after")
    def _levels_in_order(self) -> "MarketParams":
        if self.low_soc > self.high_soc:
            raise located_error([(("low_soc",), f"value {self.low_soc:g} must be <= "
                                                f"high_soc={self.high_soc:g}", "value")])
        return self


class OTParams(MarketParams):
    """ot (and a trained policy's market clearing): the market's parameters, then the transport's."""

    fairness: float = Field(0.0, ge=0, le=1e6)
    """ot: weight of a node's history of unmet requests in the penalty for leaving it unserved."""
    urgency: float = Field(0.0, ge=0, le=1e3)
    """ot with levels 'forecast': weight of a request's urgency (1 when the requester would fall
    below its floor this epoch, falling to 0 at the end of the window) in the penalty for leaving
    it unmet, so scarce energy goes first where it is needed soonest."""
    fairness_memory: float = Field(0.9, ge=0, lt=1)
    """ot: exponential smoothing of that history per epoch."""
    store_value: float | None = Field(None, ge=0, le=1e3)
    """ot with levels 'forecast': cost per Wh an offer takes from its node's store, on top of the
    path's (the unmet penalty rises by as much, so stored energy reaches as far as before); Wh
    the node would curtail before its next draw cost nothing, so harvest that would be thrown
    away is shared before stored energy. Default (null): max_loss times the share of the
    requested energy left unmet over about the last day, so stores are kept when energy is
    scarce. 0 = every offered Wh alike."""
    solver: Literal["exact", "network", "sinkhorn", "unbalanced", "hierarchical"] = "exact"
    """ot: the OT solver (docs/policies.md)."""
    reg: float = Field(1e-3, gt=0, le=1e3)
    """ot with sinkhorn or unbalanced: entropic regularisation, relative to the largest cost
    (benchmarks/entropic_gap.py: at 1e-3 the plans cost at most 0.005 % more than the exact ones
    on the built-ins' markets)."""
    reg_m: float = Field(1.0, gt=0, le=1e6)
    """ot with unbalanced: marginal relaxation."""

    @model_validator(mode="after")
    def _graph_solver_prices_losses(self) -> "OTParams":
        if self.path_costs == "latency" and self.solver == "network":
            raise located_error([(("path_costs",), "'latency' needs a solver of cost matrices "
                                  "(exact, sinkhorn, unbalanced, hierarchical): 'network' prices "
                                  "each link by its loss", "value")])
        return self


class MPCParams(Model):
    """mpc: its rolling linear program."""

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
    mpc_end_reserve: bool = False
    """mpc: value the energy a node should end the window with (the market's floor plus the
    deepest fall of its projected store over the rest of the day) at the unserved weight, and
    only what is above it at the store value; off by default: every Wh at the end at the store
    value (docs/model.md: it helps on edge-offload and hurts on the microgrid)."""
    mpc_task_weight: float = Field(0.75, ge=0, le=1e6)
    """mpc: value of a task started in time, per Wh a task of mean work draws (between the store
    value and the unserved weight: tasks after the idle load, before storage); 0 plans energy
    only and moves no task."""


#: Each controller's parameter model, by the tag of its section (``marl`` for ``marl:DIR``).
PARAMS: dict[str, type[Model]] = {
    "local": LocalParams, "random": RandomParams, "greedy": MarketParams,
    "proportional": MarketParams, "threshold": MarketParams, "ot": OTParams, "mpc": MPCParams,
    "marl": OTParams}


def policy_tag(policy: Any) -> str | None:
    """The section tag of a policy name: itself for a built-in, 'marl' for marl:DIR; None for
    anything else."""
    if not isinstance(policy, str):
        return None
    if policy.startswith("marl:") and len(policy) > 5:
        return "marl"
    return policy if policy in CONTROLLERS else None


def section_tag(section: Any) -> str | None:
    """The tag of a controller section (a mapping read from YAML or a section model); a section
    without ``policy`` runs local."""
    if isinstance(section, dict):
        return policy_tag(section.get("policy", "local"))
    return policy_tag(getattr(section, "policy", None))


section_tag.key = "policy"      # the YAML key the tag comes from (read by scenarios.overrides)


def shown(tag: str) -> str:
    """A section tag as users write the policy ('marl' is marl:DIR)."""
    return "marl:DIR" if tag == "marl" else tag


def _section(tag: str) -> type[Model]:
    """The section model of one controller: its ``policy`` and its ``params``."""
    model = PARAMS[tag]
    policy: Any = (Annotated[str, Field(pattern=r"^marl:.+", description="marl:DIR, a policy trained "
                                        "by otmarl train into DIR")] if tag == "marl" else
                   Annotated[Literal[tag], Field(description=f"the controller: {tag}")])
    name = f"{tag.upper() if tag in ('ot', 'mpc') else tag.title()}Section"
    return create_model(
        name, __base__=Model, __module__=__name__, __doc__=f"The controller section for {shown(tag)}.",
        policy=(policy, tag if tag == "local" else ...),
        params=(Annotated[model, Field(description=" ".join((model.__doc__ or "").split()))], model()))


SECTIONS: dict[str, type[Model]] = {tag: _section(tag) for tag in PARAMS}
# module attributes under their own names, so that pickle (process pools, Dask) finds the classes
# by reference: a copy made by value would be another class, which the union's serializer rejects
globals().update({m.__name__: m for m in SECTIONS.values()})

#: The ``controller`` section: one model per controller, chosen by ``policy``.
Controller = Annotated[
    Union[tuple(Annotated[m, Tag(t)] for t, m in SECTIONS.items())],
    Discriminator(section_tag, custom_error_type="unknown_policy",
                  custom_error_message="unknown policy")]
LOCAL = SECTIONS["local"]()


def all_params() -> dict[str, Any]:
    """Every controller parameter's field, by name, in the order of ``PARAMS``."""
    return {n: f for m in PARAMS.values() for n, f in m.model_fields.items()}


def readers(name: str) -> list[str]:
    """The controllers that read the parameter ``name``."""
    return [shown(t) for t, m in PARAMS.items() if name in m.model_fields]


def param_problem(key: str, tag: str) -> tuple[str, str | None]:
    """Why ``key`` is no parameter of the controller of ``tag`` (read by others, or a misspelling,
    of its own parameters first), and its own parameter it probably meant."""
    own, name, who = list(PARAMS[tag].model_fields), shown(tag), readers(key)
    if who:
        return (f"'{key}' is not a parameter of {name}; it is read by {', '.join(who)} (otmarl "
                "policies lists every parameter)"), None
    close = closest(key, own)
    if close:
        return f"unknown key '{key}'; did you mean '{close}'?", close
    close = closest(key, list(all_params()))
    hint = f"; did you mean '{close}' (read by {', '.join(readers(close))})?" if close else ""
    known = f" ({name} reads: {', '.join(own)})" if own else f" ({name} has no parameters)"
    return f"unknown key '{key}'{hint}{known}", None


def carried(params: dict, model: type[Model]) -> dict:
    """The parameters of ``params`` for the controller whose parameter model is ``model``: those
    it reads, and any key no controller reads (so that its validation reports the misspelling);
    the parameters only other controllers read are left out."""
    return {k: v for k, v in params.items() if k in model.model_fields or not readers(k)}


def switch_policy(data: dict, policy: str) -> None:
    """In a scenario's YAML tree (in place): the controller section for ``policy``, keeping the
    parameters it reads and any key no controller reads (validation reports it)."""
    section = data.get("controller", {})
    if not isinstance(section, dict):
        return                                   # validation reports it
    params, tag = section.get("params"), policy_tag(policy)
    if isinstance(params, dict) and tag is not None:
        params = carried(params, PARAMS[tag])
    data["controller"] = {**section, "policy": policy, **({"params": params} if params is not None else {})}


def with_policy(section: Model, policy: str) -> Model:
    """The controller section for ``policy``, keeping the parameters of ``section`` it shares."""
    tag = policy_tag(policy)
    if tag is None:
        from .errors import UserError
        raise UserError(f"--policy: {policy_problem(str(policy))}")
    return SECTIONS[tag](policy=policy, params=carried(dict(section.params), PARAMS[tag]))


def params_table(tag: str | None = None) -> list[tuple[str, str, str, str, str]]:
    """(name, controllers, default, allowed values, description) of every controller parameter, in
    the order of ``PARAMS`` (``tag``: only that controller's): what ``otmarl policies [NAME]``
    prints and docs/policies.md lists."""
    import typing
    rows = []
    fields = all_params() if tag is None else PARAMS[tag].model_fields
    for name, f in fields.items():
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
        rows.append((name, ", ".join(readers(name)), default, allowed, " ".join((f.description or "").split())))
    return rows


def params_markdown() -> str:
    """The parameters as a Markdown table (docs/policies.md holds this text; a test compares)."""
    lines = ["| parameter | read by | default | allowed | meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{n}` | {c} | `{d}` | {a} | {m.replace('|', '/')} |" for n, c, d, a, m in params_table()]
    return "\n".join(lines) + "\n"
