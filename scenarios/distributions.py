"""Numeric fields that may be distributions.

Any numeric scenario field typed ``Dist`` accepts a plain number or a one-key mapping::

    5                                        # constant
    {uniform: [5, 10]}                       # uniform on [low, high]
    {normal: {mean: 5, std: 1, low: 0, high: 10}}   # normal, truncated to [low, high]
    {lognormal: {median: 5, sigma: 0.3}}     # exp(N(log median, sigma))
    {exponential: {mean: 2}}                 # exponential with that mean
    {choice: [1, 2, 4]}                      # equally likely values
    {choice: {values: [1, 2], weights: [3, 1]}}

Draws come from a ``numpy.random.Generator`` handed down from the run's seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

from .fields import did_you_mean

KINDS = ("uniform", "normal", "lognormal", "exponential", "choice")


@dataclass(frozen=True)
class DistSpec:
    """A parsed distribution: ``kind`` is 'constant' or one of KINDS."""

    kind: str
    params: tuple[float, ...]
    weights: tuple[float, ...] = ()

    # -- support, for range checks -------------------------------------------------------
    def support(self) -> tuple[float, float]:
        """Smallest and largest value a draw can take."""
        p = self.params
        if self.kind == "constant":
            return p[0], p[0]
        if self.kind == "uniform":
            return p[0], p[1]
        if self.kind == "normal":
            return p[2], p[3]
        if self.kind in ("lognormal", "exponential"):
            return 0.0, math.inf
        return min(p), max(p)

    def mean(self) -> float:
        """Mean of the distribution (used for forecasts and documentation)."""
        p = self.params
        if self.kind == "constant":
            return p[0]
        if self.kind == "uniform":
            return 0.5 * (p[0] + p[1])
        if self.kind == "normal":
            return _truncnorm_mean(*p)
        if self.kind == "lognormal":
            return p[0] * math.exp(0.5 * p[1] ** 2)
        if self.kind == "exponential":
            return p[0]
        w = np.asarray(self.weights) if self.weights else np.ones(len(p))
        return float(np.dot(w / w.sum(), p))

    @property
    def is_constant(self) -> bool:
        return self.kind == "constant"

    # -- sampling -------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws as float64."""
        p = self.params
        if self.kind == "constant":
            return np.full(size, p[0], dtype=float)
        if self.kind == "uniform":
            return rng.uniform(p[0], p[1], size)
        if self.kind == "normal":
            return _truncnorm(rng, *p, size)
        if self.kind == "lognormal":
            return p[0] * np.exp(p[1] * rng.standard_normal(size))
        if self.kind == "exponential":
            return rng.exponential(p[0], size)
        w = np.asarray(self.weights, float) if self.weights else None
        return rng.choice(np.asarray(p, float), size=size, p=None if w is None else w / w.sum())

    def to_yaml(self) -> Any:
        p = self.params
        if self.kind == "constant":
            return p[0]
        if self.kind == "uniform":
            return {"uniform": [p[0], p[1]]}
        if self.kind == "normal":  # infinite bounds are left out: YAML readers take only numbers
            bounds = {k: b for k, b in (("low", p[2]), ("high", p[3])) if math.isfinite(b)}
            return {"normal": {"mean": p[0], "std": p[1], **bounds}}
        if self.kind == "lognormal":
            return {"lognormal": {"median": p[0], "sigma": p[1]}}
        if self.kind == "exponential":
            return {"exponential": {"mean": p[0]}}
        if self.weights:
            return {"choice": {"values": list(p), "weights": list(self.weights)}}
        return {"choice": list(p)}


def _truncnorm(rng: np.random.Generator, mean: float, std: float, low: float, high: float,
               size: int) -> np.ndarray:
    """Inverse-CDF sampling of a normal truncated to [low, high] (one uniform per draw)."""
    from scipy.special import ndtr, ndtri

    if std == 0:
        return np.full(size, min(max(mean, low), high), dtype=float)
    a, b = ndtr((low - mean) / std), ndtr((high - mean) / std)
    u = rng.uniform(a, b, size)
    return np.clip(mean + std * ndtri(u), low, high)


def _truncnorm_mean(mean: float, std: float, low: float, high: float) -> float:
    from scipy.stats import truncnorm

    if std == 0:
        return min(max(mean, low), high)
    return float(truncnorm.mean((low - mean) / std, (high - mean) / std, loc=mean, scale=std))


# -- parsing ------------------------------------------------------------------------------

def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {v!r}")
    return float(v)


def parse_dist(v: Any) -> DistSpec:
    """Turn a YAML value into a DistSpec, with a message naming what is wrong."""
    if isinstance(v, DistSpec):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return DistSpec("constant", (_num(v, "value"),))
    if not isinstance(v, dict) or len(v) != 1:
        raise ValueError(
            "expected a number or a one-key distribution mapping "
            f"({', '.join(KINDS)}), got {v!r}")
    (kind, arg), = v.items()
    if kind not in KINDS:
        hint = did_you_mean(kind, list(KINDS)) or f"; expected one of {', '.join(KINDS)}"
        raise ValueError(f"unknown distribution '{kind}'{hint}")
    return _PARSERS[kind](arg)


def _fields(arg: Any, kind: str, required: tuple[str, ...], optional: dict[str, float]) -> list:
    if not isinstance(arg, dict):
        raise ValueError(f"{kind} takes a mapping with keys {', '.join(required)}, got {arg!r}")
    unknown = set(arg) - set(required) - set(optional)
    if unknown:
        raise ValueError(f"{kind} has unknown key(s) {sorted(unknown)}; "
                         f"allowed: {', '.join(required + tuple(optional))}")
    missing = [k for k in required if k not in arg]
    if missing:
        raise ValueError(f"{kind} is missing {', '.join(missing)}")
    out = [_num(arg[k], f"{kind}.{k}") for k in required]
    out += [_num(arg.get(k, d), f"{kind}.{k}") if k in arg else d for k, d in optional.items()]
    return out


def _p_uniform(arg: Any) -> DistSpec:
    if not isinstance(arg, (list, tuple)) or len(arg) != 2:
        raise ValueError(f"uniform takes [low, high], got {arg!r}")
    lo, hi = _num(arg[0], "uniform low"), _num(arg[1], "uniform high")
    if lo > hi:
        raise ValueError(f"uniform low={lo:g} must be <= high={hi:g}")
    return DistSpec("uniform", (lo, hi))


def _p_normal(arg: Any) -> DistSpec:
    mean, std, lo, hi = _fields(arg, "normal", ("mean", "std"), {"low": -math.inf, "high": math.inf})
    if std < 0:
        raise ValueError(f"normal std={std:g} must be >= 0")
    if lo > hi:
        raise ValueError(f"normal low={lo:g} must be <= high={hi:g}")
    return DistSpec("normal", (mean, std, lo, hi))


def _p_lognormal(arg: Any) -> DistSpec:
    median, sigma = _fields(arg, "lognormal", ("median", "sigma"), {})
    if median <= 0 or sigma < 0:
        raise ValueError(f"lognormal needs median > 0 and sigma >= 0, got {median:g}, {sigma:g}")
    return DistSpec("lognormal", (median, sigma))


def _p_exponential(arg: Any) -> DistSpec:
    (mean,) = _fields(arg, "exponential", ("mean",), {})
    if mean <= 0:
        raise ValueError(f"exponential mean={mean:g} must be > 0")
    return DistSpec("exponential", (mean,))


def _p_choice(arg: Any) -> DistSpec:
    weights: list[float] = []
    if isinstance(arg, dict):
        if set(arg) - {"values", "weights"} or "values" not in arg:
            raise ValueError("choice takes a list, or a mapping with 'values' and optional 'weights'")
        values, weights = arg["values"], list(arg.get("weights") or [])
    else:
        values = arg
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"choice takes a non-empty list of numbers, got {values!r}")
    vals = tuple(_num(x, "choice value") for x in values)
    w = tuple(_num(x, "choice weight") for x in weights)
    if w and (len(w) != len(vals) or min(w) < 0 or sum(w) <= 0):
        raise ValueError("choice weights must be as many as values, >= 0, and not all 0")
    return DistSpec("choice", vals, w)


_PARSERS = {"uniform": _p_uniform, "normal": _p_normal, "lognormal": _p_lognormal,
            "exponential": _p_exponential, "choice": _p_choice}


def _bounds(gt: float | None = None, ge: float | None = None, le: float | None = None,
            lt: float | None = None):
    def check(d: DistSpec) -> DistSpec:
        lo, hi = d.support()
        # lognormal and exponential draws are > 0 almost surely: their support is open at 0
        lo_open = d.kind in ("lognormal", "exponential")
        what = (f"value {lo:g}" if d.is_constant
                else f"{d.kind} distribution (support [{lo:g}, {hi:g}])")
        verb = "must be" if d.is_constant else "must stay"
        for ok, op, b in ((gt is None or lo > gt or (lo_open and lo == gt), ">", gt),
                          (ge is None or lo >= ge, ">=", ge),
                          (le is None or hi <= le, "<=", le), (lt is None or hi < lt, "<", lt)):
            if not ok:
                hint = ("; truncate it with low/high" if d.kind == "normal" and math.isinf(lo if op[0] == ">" else hi)
                        else "")
                raise ValueError(f"{what} {verb} {op} {b:g}{hint}")
        return d
    return check


def _json_schema(gt: float | None, ge: float | None, le: float | None, lt: float | None) -> dict:
    """JSON Schema of a distribution-valued field: every number a value of the field can take
    (a constant, uniform bounds, choice values, normal truncation bounds and mean, a lognormal
    median, an exponential mean) carries the field's bounds; spreads and weights are >= 0."""
    value: dict = {"type": "number"}
    for key, b in (("exclusiveMinimum", gt), ("minimum", ge), ("maximum", le), ("exclusiveMaximum", lt)):
        if b is not None:
            value[key] = b
    if len(value) == 1:                      # an unbounded field: finite numbers
        value.update({"minimum": -1.7976931348623157e308, "maximum": 1.7976931348623157e308})
    positive = {**value, "exclusiveMinimum": max(0.0, value.get("exclusiveMinimum", 0.0))}
    positive.pop("minimum", None)
    spread = {"type": "number", "minimum": 0}

    def one(key: str, body: dict) -> dict:
        return {"type": "object", "properties": {key: body}, "required": [key], "additionalProperties": False}

    def obj(props: dict, required: list[str]) -> dict:
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}

    return {"anyOf": [
        value,
        one("uniform", {"type": "array", "items": value, "minItems": 2, "maxItems": 2}),
        one("normal", obj({"mean": value, "std": spread, "low": value, "high": value}, ["mean", "std"])),
        one("lognormal", obj({"median": positive, "sigma": spread}, ["median", "sigma"])),
        one("exponential", obj({"mean": positive}, ["mean"])),
        one("choice", {"anyOf": [{"type": "array", "items": value, "minItems": 1},
                                 obj({"values": {"type": "array", "items": value, "minItems": 1},
                                      "weights": {"type": "array", "items": spread}}, ["values"])]}),
    ]}


def dist(gt: float | None = None, ge: float | None = None, le: float | None = None,
         lt: float | None = None) -> Any:
    """An annotated ``DistSpec`` type whose whole support must lie within the bounds."""
    return Annotated[DistSpec, BeforeValidator(parse_dist), AfterValidator(_bounds(gt, ge, le, lt)),
                     PlainSerializer(lambda d: d.to_yaml(), return_type=Any),
                     WithJsonSchema(_json_schema(gt, ge, le, lt))]


Dist = dist()
PositiveDist = dist(gt=0)
NonNegDist = dist(ge=0)
FractionDist = dist(ge=0, le=1)
