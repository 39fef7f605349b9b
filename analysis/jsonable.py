"""Results made ready for JSON, defined once for metrics.json, the report payloads and the
sweep charts: numpy scalars as Python numbers, tuples and arrays as lists, keys as strings,
NaN and inf as null, floats optionally rounded to a number of significant digits, and JSON that
is safe inside an HTML ``<script>`` element.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["jsonable", "q", "dumps_for_html"]


def jsonable(x: Any, sig: int | None = None) -> Any:
    """``x`` with every container and number JSON can hold (recursively through dicts, lists,
    tuples and arrays); with ``sig``, every float rounded to ``sig`` significant digits.

    NaN and inf become None; bools, ints and strings pass through.
    """
    if isinstance(x, dict):
        return {str(k): jsonable(v, sig) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, sig) for v in x]
    if isinstance(x, np.ndarray):
        return q(x, sig) if sig and x.dtype.kind == "f" else jsonable(x.tolist(), sig)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if not math.isfinite(v):
            return None
        return float(f"{v:.{sig}g}") if sig else v
    return x


def q(a: Any, sig: int = 4) -> list:
    """An array as a list of floats rounded to ``sig`` significant digits (NaN/inf as None).

    Vectorised: the value is scaled by an exact power of ten, rounded, and scaled back by the
    same exact power, so each float is the double nearest its short decimal and JSON prints it
    short (0.3, not 0.30000000000000004).
    """
    a = np.asarray(a, dtype=float)
    finite = np.isfinite(a)
    safe = np.where(finite & (a != 0), np.abs(a), 1.0)
    shift = sig - 1 - np.floor(np.log10(safe)).astype(int)          # digits after the point
    out = np.empty_like(a)
    up = shift >= 0
    if up.any():
        f = 10.0 ** np.minimum(shift[up], 22)
        out[up] = np.round(a[up] * f) / f
    if (~up).any():
        f = 10.0 ** (-shift[~up])
        out[~up] = np.round(a[~up] / f) * f
    out[a == 0] = 0.0
    if finite.all():
        return out.tolist()
    return [v if ok else None for v, ok in zip(out.tolist(), finite.tolist())]


def dumps_for_html(data: Any) -> str:
    """Compact JSON that is safe inside a ``<script>`` element."""
    s = dumps_by_items(data)
    return s.replace("</", "<\\/").replace("<!--", "<\\!--")


def dumps_by_items(data: Any, depth: int = 4) -> str:
    """``json.dumps(data, separators=(",", ":"), allow_nan=False)``, the same text, with the
    dicts (of string keys) and lists of the top ``depth`` levels that hold containers written item
    by item: json's encoder keeps a string per number until it joins the whole text (~60 bytes a
    number, for a few characters of JSON), so a chart payload of many numbers is encoded a list of
    numbers at a time."""
    nested = lambda items: any(isinstance(v, (dict, list, tuple)) for v in items)  # noqa: E731
    if depth > 0 and isinstance(data, dict) and all(isinstance(k, str) for k in data) and nested(data.values()):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps_by_items(v, depth - 1)}" for k, v in data.items()) + "}"
    if depth > 0 and isinstance(data, (list, tuple)) and nested(data):
        return "[" + ",".join(dumps_by_items(v, depth - 1) for v in data) + "]"
    return json.dumps(data, separators=(",", ":"), allow_nan=False)
