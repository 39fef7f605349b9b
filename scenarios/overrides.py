"""``--set dotted.path=value`` overrides, and walking the Scenario model along a path.

An override is applied to the parsed YAML tree before validation. Its path is checked against
the model first, so that a typo is reported against the override with a did-you-mean instead of
turning into a confusing 'missing key' somewhere else. The value is parsed as YAML flow
(``8000``, ``ot``, ``{uniform: [5, 10]}``, ``[a, b]``).

The model walk (``resolve``) also serves the loader: pydantic error locations contain the tag of a
discriminated union (``network.topology.grid.rows``), which is not a key of the YAML file.
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Hashable, Literal, Union

import yaml
from pydantic import BaseModel, Tag

from .fields import closest, did_you_mean  # noqa: F401  (re-exported for the loaders)
from .controllers import param_problem, readers, section_tag
from .schema import Scenario
from .yamlpos import Loader, Path, Problem, Span, dotted

PREFIX = "--set "
#: The keys that pick the member of a union (``kind`` of a topology, harvest, ...; ``policy``).
TAG_KEYS = ("kind", "policy")


# -------------------------------------------------------------------------------- model walk
@dataclass(frozen=True)
class T:
    """A type met on a path through the model, with the discriminator of its field if any: the
    YAML key that picks the member, and for a union whose tag is computed from that key
    (``controller``: ``marl:DIR`` -> 'marl') the function computing it."""

    tp: Any
    discriminator: str | None = None
    tagger: Any = None

    def tag(self, node: Any) -> Any:
        """The tag of the member a YAML mapping ``node`` selects."""
        if self.tagger is not None:
            return self.tagger(node if isinstance(node, dict) else {})
        return node.get(self.discriminator) if isinstance(node, dict) else None


ANY = T(Any)


def _tagger(meta: Any):
    """The function of a ``Discriminator`` that computes the tag from a YAML key (it names the
    key as its ``key`` attribute), or None."""
    d = getattr(meta, "discriminator", None)
    return d if callable(d) and hasattr(d, "key") else None


def _field(model: type[BaseModel], name: str) -> T:
    fi = model.model_fields[name]
    for m in fi.metadata:                         # a Discriminator computing the tag
        if _tagger(m):
            return normalize(T(fi.annotation, _tagger(m).key, _tagger(m)))
    disc = fi.discriminator if isinstance(fi.discriminator, str) else None
    return normalize(T(fi.annotation, disc))


def normalize(t: T) -> T:
    """Strip ``Annotated`` (keeping a discriminator) and ``X | None``."""
    tp, disc, tagger = t.tp, t.discriminator, t.tagger
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            for m in tp.__metadata__:
                d = getattr(m, "discriminator", None)
                if _tagger(m):
                    disc, tagger = d.key, d
                disc = d if isinstance(d, str) else disc
            tp = tp.__origin__
        elif _is_union(tp) and not disc:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return T(tp, disc, tagger)
            tp = args[0]
        else:
            return T(tp, disc, tagger)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def members(t: T) -> dict[str, type[BaseModel]]:
    """The members of a discriminated union by tag ({} for any other type)."""
    if not (t.discriminator and _is_union(t.tp)):
        return {}
    out = {}
    for m in typing.get_args(t.tp):
        if typing.get_origin(m) is typing.Annotated:          # a member named by a Tag
            out.update({a.tag: m.__origin__ for a in m.__metadata__ if isinstance(a, Tag)})
            continue
        ann = m.model_fields[t.discriminator].annotation
        out.update({tag: m for tag in typing.get_args(ann)} if typing.get_origin(ann) is Literal else {})
    return out


def model_of(t: T) -> type[BaseModel] | None:
    return t.tp if isinstance(t.tp, type) and issubclass(t.tp, BaseModel) else None


def child(t: T, key: Hashable) -> T:
    """The type found under ``key`` (ANY when the model does not say)."""
    model, origin, args = model_of(t), typing.get_origin(t.tp), typing.get_args(t.tp)
    if model is not None:
        return _field(model, key) if key in model.model_fields else ANY
    if origin is dict and len(args) == 2:
        return normalize(T(args[1]))
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return normalize(T(args[0]))
        return normalize(T(args[key])) if isinstance(key, int) and 0 <= key < len(args) else ANY
    return ANY


def resolve(loc: tuple) -> tuple[Path, T]:
    """Follow a pydantic error ``loc`` from Scenario: the YAML path (union tags dropped) and the
    type reached."""
    t, path = normalize(T(Scenario)), []
    for el in loc:
        by_tag = members(t)
        if el in by_tag:
            t = T(by_tag[el])
            continue
        path.append(el)
        t = child(t, el)
    return tuple(path), t


def field_names(t: T) -> list[str]:
    model = model_of(t)
    return list(model.model_fields) if model else []


# -------------------------------------------------------------------------------- overrides
@dataclass(frozen=True)
class Override:
    text: str
    path: Path
    value: Any
    index: int
    offsets: tuple[int, ...]
    """Column of each path component in ``text``, then the column of the value."""

    def span(self, component: int | None = None) -> Span:
        col = self.offsets[-1 if component is None else component]
        return Span(PREFIX + self.text, PREFIX + self.text, len(PREFIX) + col, (1, self.index, 0))


def parse(texts: typing.Sequence[str]) -> tuple[list[Override], list[Problem]]:
    out, problems = [], []
    for i, text in enumerate(texts):
        ov = _parse_one(str(text), i, problems)
        if ov is not None:
            out.append(ov)
    return out, problems


def _parse_one(text: str, index: int, problems: list[Problem]) -> Override | None:
    span = Span(PREFIX + text, PREFIX + text, len(PREFIX), (1, index, 0))
    lhs, eq, rhs = text.partition("=")
    parts = lhs.strip().split(".")
    if not eq or not all(parts):
        problems.append(Problem(span, "", "expected dotted.path=value, e.g. horizon_h=24"))
        return None
    offsets, col = [], len(lhs) - len(lhs.lstrip())
    for p in parts:
        offsets.append(col)
        col += len(p) + 1
    offsets.append(len(lhs) + 1 + len(rhs) - len(rhs.lstrip()))
    path = tuple(int(p) if p.isdigit() else p for p in parts)
    try:
        value = yaml.load(rhs, Loader=Loader) if rhs.strip() else None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e)
        problems.append(Problem(Span(span.origin, span.source_line, len(PREFIX) + offsets[-1], span.order),
                                "", f"cannot read the value as YAML: {problem}"))
        return None
    return Override(text, path, value, index, tuple(offsets))


def apply(data: dict, overrides: list[Override]) -> list[Problem]:
    """Check each override's path against the model and set it in ``data`` (in place)."""
    problems = []
    # the keys that pick a union's member first: a later one decides which keys the others may set
    for ov in sorted(overrides, key=lambda ov: ov.path[-1] not in TAG_KEYS):
        bad = _check(data, ov.path)
        if bad is None:
            bad = _set(data, ov.path, ov.value)
        if bad is not None:
            problems.append(Problem(ov.span(bad[0]), "", bad[1]))
    return problems


def _check(data: Any, path: Path) -> tuple[int, str] | None:
    """(component index, message) of the first component the model does not have, or None."""
    t, node = normalize(T(Scenario)), data
    for i, key in enumerate(path):
        by_tag = members(t)
        if by_tag:
            tag = t.tag(node)
            if tag not in by_tag:
                return None  # the kind is missing or wrong: validation says so at the file
            t = T(by_tag[tag])
        model, origin = model_of(t), typing.get_origin(t.tp)
        if model is not None:
            if key not in model.model_fields and path[:i] == ("controller", "params"):
                if readers(key):
                    return None      # another controller's: validation decides, for the policy run
                return i, param_problem(key, section_tag(_get(data, "controller")))[0]
            if key not in model.model_fields:
                return i, f"unknown key '{key}'{did_you_mean(key, list(model.model_fields))}"
        elif origin is dict:
            if model_of(child(t, key)) and not _has(node, key) and i < len(path) - 1:
                have = [str(k) for k in node] if isinstance(node, dict) else []
                return i, (f"{dotted(path[:i])} has no '{key}'{did_you_mean(key, have)} "
                           f"(it has: {', '.join(have) or 'nothing'})")
        elif origin is tuple:
            if not isinstance(key, int):
                return i, f"{dotted(path[:i])} is a list: expected an item number, got '{key}'"
        elif t.tp is not Any:
            return i, f"{dotted(path[:i])} is a single value; it has no key '{key}'"
        else:
            return None
        t, node = child(t, key), _get(node, key)
    return None


def _has(node: Any, key: Hashable) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and key < len(node)


def _get(node: Any, key: Hashable) -> Any:
    return node[key] if _has(node, key) else None


def _set(data: dict, path: Path, value: Any) -> tuple[int, str] | None:
    node = data
    for i, key in enumerate(path[:-1]):
        if isinstance(node, list):
            if not _has(node, key):
                return i, f"{dotted(path[:i])} has {len(node)} item(s); there is no item {key}"
        elif node.get(key) is None:
            node[key] = [] if isinstance(path[i + 1], int) else {}
        nxt = node[key]
        if not isinstance(nxt, (dict, list)):
            return i, f"{dotted(path[:i + 1])} is {yaml_kind(nxt)} in the file, not a mapping"
        node = nxt
    last = path[-1]
    if isinstance(node, list):
        if not _has(node, last):
            return len(path) - 1, (f"{dotted(path[:-1])} has {len(node)} item(s); "
                                   f"there is no item {last}")
    node[last] = value
    return None


def yaml_kind(v: Any) -> str:
    return "a list" if isinstance(v, list) else "a mapping" if isinstance(v, dict) else "a single value"


def origin_of(path: Path, overrides: list[Override], in_file: bool) -> Override | None:
    """The override a value at ``path`` came from: the last one whose path contains it, or, for
    a key the file does not have, the last one it leads to."""
    above = [ov for ov in overrides if ov.path == path[:len(ov.path)]]
    if above:
        return above[-1]
    if not in_file:
        below = [ov for ov in overrides if path == ov.path[:len(path)]]
        return below[-1] if below else None
    return None
