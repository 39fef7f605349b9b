"""Loading a sweep file with ``FILE:LINE:COL`` errors (the model is ``sweep_schema``).

Loading reports every problem at once, each at its place in the sweep file: a parameter path the
scenario does not have (at the path component, with a did-you-mean, through the ``--set``
machinery of ``overrides``) and a value the scenario rejects (at the list item that gave it).
Problems of the base scenario itself are reported at the base file. Each point of the design is
checked by the scenario loader's own ``check``.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path as FsPath
from typing import Any, NamedTuple

from pydantic import ValidationError

from . import loader as L
from . import overrides as ov_mod
from .errors import ScenarioError
from .fields import LOCATED, did_you_mean, located_problems, split_path
from .schema import Scenario
from .sweep_schema import BLOCKS, Sweep, SweepFile, SweepPoint, design_points
from .yamlpos import Doc, Path, Problem, Span, describe, dotted, parse

__all__ = ["load_sweep"]


def load_sweep(source: str | os.PathLike, policies: Collection[str] | None = None) -> Sweep:
    """Load and validate a sweep file; expand and validate its design.

    ``policies``: the known controller names (policy names are not checked when None). Raises
    ScenarioError with every problem, each ``FILE:LINE:COL: path: message`` with the source line
    and a caret; problems of the sweep file come first, then those of the base scenario.
    """
    shown = os.fspath(source)
    path = FsPath(shown)
    if path.is_dir():
        raise ScenarioError([f"{shown}: is a folder, not a sweep file"])
    return _Loader(L.read_text(path, shown), shown, path.absolute().parent, policies).load()


class _Mark(NamedTuple):
    line: int
    column: int


class _Context(L.Context):
    """The loader's context, naming the scenario path of a problem located in the sweep file
    (the loader leaves it out for ``--set`` overrides, whose text shows it)."""

    def problem(self, path: Path, message: str, at: str = "value") -> Problem:
        p = super().problem(path, message, at)
        return p if p.path else replace(p, path=dotted(path))


@dataclass(frozen=True)
class _Located(ov_mod.Override):
    """An override whose value (and path) are in the sweep file, not on the command line."""

    value_span: Span | None = None
    key_span: Span | None = None

    def span(self, component: int | None = None) -> Span:
        if component is None:
            return self.value_span
        s = self.key_span
        col = s.col + self.offsets[component]
        return replace(s, origin=s.origin.rsplit(":", 1)[0] + f":{col + 1}", col=col,
                       order=(s.order[0], s.order[1], col))


class _Loader:
    def __init__(self, text: str, shown: str, folder: FsPath, policies: Collection[str] | None):
        self.text, self.shown, self.folder, self.known = text, shown, folder, policies
        self.problems: list[Problem] = []
        self.doc = parse(text, shown)
        self.base_doc: Doc | None = None
        self.base_folder = folder
        self.base_shown = ""
        self.bad_paths: set[str] = set()

    def load(self) -> Sweep:
        doc = self.doc
        self.problems += [_sweep_wording(p) for p in doc.problems]
        if doc.data is None:
            self._raise()
        ctx = _Context(doc, [], self.folder)
        spec = self._validate(ctx)
        self.problems += ctx.problems
        self._load_base(doc.data.get("base"))
        self._check_policies(doc.data.get("policies"))
        if self.base_doc is None:
            self._raise()
        if not self._check_paths(doc.data) or spec is None:
            self._raise()
        points = [SweepPoint(params, sc) for params, sc in self._expand(spec)]
        if self.problems:
            self._raise()
        base_policy = points[0].scenario.controller.policy
        return Sweep(self.shown, self.text, spec, self.base_shown, tuple(points),
                     spec.policies or (base_policy,))

    def _raise(self) -> None:
        # one problem per place and path: random samples repeat a problem with other values
        groups: dict[tuple[str, str], dict[str, Problem]] = {}
        for p in self.problems:
            groups.setdefault((p.span.origin, p.path), {}).setdefault(p.message, p)
        unique = []
        for by_message in groups.values():
            ps = list(by_message.values())
            more = f" (and {len(ps) - 1} more like it)" if len(ps) > 1 else ""
            unique.append(replace(ps[0], message=ps[0].message + more))
        ordered = sorted(unique, key=lambda p: (not p.span.origin.startswith(self.shown + ":"),
                                                p.span.order))
        raise ScenarioError([p.format() for p in ordered])

    # ------------------------------------------------------------------------- structure
    def _validate(self, ctx: _Context) -> SweepFile | None:
        try:
            return SweepFile.model_validate(ctx.data)
        except ValidationError as e:
            self._report(ctx, e)
        # the design checks run once every field is valid: run them on each valid design block
        # alone and on all of them together, so that they are reported with the other problems
        # (repeats are dropped in _raise)
        good = {}
        for block in BLOCKS:
            if block in ctx.data:
                try:
                    SweepFile.model_validate({"base": "-", block: ctx.data[block]})
                except ValidationError as e:
                    self._report(ctx, e)
                    if not all(err["type"] == LOCATED and not err["loc"] for err in e.errors()):
                        continue  # not only design problems: its structure is wrong
                good[block] = ctx.data[block]
        try:
            SweepFile.model_validate({"base": "-", **good})
        except ValidationError as e:
            self._report(ctx, e)
        return None

    @staticmethod
    def _report(ctx: _Context, e: ValidationError) -> None:
        for err in e.errors(include_url=False):
            for path, message, at in _explain(err):
                if path not in ctx.doc.unreadable:
                    ctx.add(path, message, at)

    def _check_policies(self, names: Any) -> None:
        if not isinstance(names, list):
            return  # missing or not a list: the model says so
        known = sorted(self.known or ())
        for i, name in enumerate(names):
            if not isinstance(name, str):
                continue
            if self.known is not None and name not in self.known and not name.startswith("marl:"):
                self._add(("policies", i), f"unknown policy '{name}'{did_you_mean(name, known)} "
                                           f"(known: {', '.join(known)})")
            elif name in names[:i]:
                self._add(("policies", i), f"policy '{name}' is listed twice")

    def _add(self, path: Path, message: str) -> None:
        self.problems.append(L.Context(self.doc, [], self.folder).problem(path, message))

    # ------------------------------------------------------------------------------ base
    def _load_base(self, base: Any) -> None:
        if not isinstance(base, str) or not base:
            return  # missing or not a string: the model says so
        names = L.builtin_names()
        file = self.folder / os.path.expanduser(base)
        if file.is_file():
            shown = os.path.join(os.path.dirname(self.shown), base)
        elif base.removesuffix(".yaml") in names and "/" not in base:
            file, shown = L.builtin_path(base.removesuffix(".yaml")), f"{base.removesuffix('.yaml')}.yaml"
        else:
            state = "is a folder" if file.is_dir() else "no such file"
            self._add(("base",), f"'{base}': {state} (relative to the sweep file's folder) and no "
                                 f"built-in scenario{did_you_mean(base, names)} "
                                 f"(built-ins: {', '.join(names)})")
            return
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            self._add(("base",), f"cannot read the scenario file '{base}': {e}")
            return
        doc = parse(text, shown)
        self.problems += doc.problems
        if doc.data is not None:
            self.base_doc, self.base_folder, self.base_shown = doc, file.absolute().parent, shown

    # ------------------------------------------------------------------------------ paths
    def _located(self, block: Path, key: str, value: Any, where: Path) -> _Located | None:
        path = split_path(key) if isinstance(key, str) else None
        if path is None:
            return None
        knode, vnode = self.doc.nodes[block + (key,)]
        kspan = self.doc.span(knode.start_mark)
        if getattr(knode, "style", None) in ("'", '"'):
            kspan = self.doc.span(_Mark(knode.start_mark.line, knode.start_mark.column + 1))
        offsets, col = [], 0
        for part in key.split("."):
            offsets.append(col)
            col += len(part) + 1
        vnode = self.doc.nodes.get(where, (None, vnode))[1]
        return _Located(key, path, copy.deepcopy(value), 0, tuple(offsets) + (0,),
                        self.doc.span(vnode.start_mark), kspan)

    def _fixed(self, raw: dict) -> list[_Located]:
        ovs = raw.get("overrides")
        items = ovs.items() if isinstance(ovs, dict) else ()
        out = [self._located(("overrides",), k, v, ("overrides", k)) for k, v in items]
        return [o for o in out if o is not None]

    def _check_paths(self, raw: dict) -> bool:
        """Apply the fixed overrides to the base, and check every parameter's path there; True
        if the base with the fixed overrides is a valid scenario (bad paths go to bad_paths)."""
        data0 = copy.deepcopy(self.base_doc.data)
        found = ov_mod.apply(data0, self._fixed(raw))
        fine = not found and self._scenario(copy.deepcopy(data0), self._fixed(raw)) is not None
        for block, key, first in _raw_params(raw):
            ov = self._located(block, key, first, block + (key,))
            bad = ov_mod.apply(copy.deepcopy(data0), [ov]) if ov is not None else []
            if bad:
                self.bad_paths.add(key)
            found += bad
        self.problems += found
        return fine

    def _scenario(self, data: dict, ovs: list[_Located]) -> Scenario | None:
        ctx = _Context(replace(self.base_doc, data=data), ovs, self.base_folder)
        sc = L.check(ctx)
        self.problems += ctx.problems
        return sc if not ctx.problems else None

    # ----------------------------------------------------------------------------- design
    def _expand(self, spec: SweepFile) -> Iterator[tuple[dict[str, Any], Scenario]]:
        fixed = self._fixed(self.doc.data)
        for point in design_points(spec):
            ovs = fixed + [self._located(w[:2] if w[0] == "random" else w[:1], k, v, w)
                           for k, (v, w) in point.items() if k not in self.bad_paths]
            data = copy.deepcopy(self.base_doc.data)
            found = ov_mod.apply(data, ovs)
            self.problems += found
            sc = None if found else self._scenario(data, ovs)
            if sc is not None:
                yield {k: v for k, (v, _) in point.items()}, sc




def _raw_params(raw: dict) -> list[tuple[Path, str, Any]]:
    """(block, key, first value) of every parameter in the raw file whose block is a mapping."""
    out = []
    for name in ("grid", "zip"):
        block = raw.get(name)
        for k, v in block.items() if isinstance(block, dict) else ():
            out.append(((name,), k, v[0] if isinstance(v, list) and v else None))
    params = raw.get("random", {}).get("params") if isinstance(raw.get("random"), dict) else None
    for k in params if isinstance(params, dict) else ():
        out.append((("random", "params"), k, None))
    return out


# ------------------------------------------------------------------------------ messages
def _explain(err: dict) -> list[tuple[Path, str, str]]:
    """(YAML path, message, where to point) for one pydantic error of the sweep model."""
    loc, typ, ctx, value = tuple(err["loc"]), err["type"], err.get("ctx") or {}, err.get("input")
    if typ == LOCATED:
        return located_problems(loc, ctx)
    if loc and loc[-1] == "[key]":
        return [(loc[:-1], f"a key must be a name (a string), got {describe(value)}", "key")]
    if typ == "extra_forbidden":
        return [(loc, _unknown_key(loc), "key")]
    if typ == "missing":
        return [(loc, "required key is missing", "parent")]
    if typ == "tuple_type" and loc and loc[0] in ("grid", "zip") and len(loc) == 2:
        return [(loc, f"expected a list of values, e.g. [5000, 10000], got {describe(value)}", "value")]
    return [(loc, L.message(typ, ctx, value, err["msg"]), "value")]


def _unknown_key(loc: Path) -> str:
    t = ov_mod.normalize(ov_mod.T(SweepFile))
    for k in loc[:-1]:
        t = ov_mod.child(t, k)
    key = str(loc[-1])
    hint = did_you_mean(key, ov_mod.field_names(t))
    if len(loc) == 1 and "." in key and not hint:
        hint = "; a parameter path goes under grid: (cartesian product), zip: (walked together) or overrides:"
    return f"unknown key '{key}'{hint}"


def _sweep_wording(p: Problem) -> Problem:
    """yamlpos speaks of scenarios for an empty file or a top level that is not a mapping."""
    if p.message.startswith("the file is empty"):
        return replace(p, message="the file is empty; a sweep needs at least 'base' (see 'otmarl sweep example')")
    if p.message.startswith("expected a mapping of scenario keys"):
        return replace(p, message=p.message.replace("scenario keys", "sweep keys"))
    return p
