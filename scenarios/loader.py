"""Load and validate scenario YAML: every problem at once, each at its ``FILE:LINE:COL``.

The steps, each adding to one list of problems (nothing runs until the list is empty):

1. parse with positions (``yamlpos``): syntax, tabs, duplicate keys, empty file, top level;
2. apply ``--set`` overrides (``overrides``): unknown paths with a did-you-mean;
3. resolve relative file paths against the scenario's folder, check the files exist and that
   graph files have as many nodes as the classes;
4. cross-field checks on the raw tree (they would otherwise wait until every field is valid);
5. pydantic validation, each error mapped from its ``loc`` back to the YAML node.
"""
from __future__ import annotations

import csv
import math
import os
from datetime import date, datetime, timedelta, timezone
from collections.abc import Callable, Sequence
from importlib import resources
from importlib.util import find_spec
from pathlib import Path as FsPath
from typing import Any, NamedTuple

from pydantic import ValidationError

from . import controllers as C
from . import overrides as ov_mod
from . import schema as S
from .errors import ScenarioError
from .fields import LOCATED, located_problems
from .footprint import memory_problem
from .graphfile import GraphFile, GraphFileError, link_event_problem, read_graph
from .overrides import Override, closest, did_you_mean, field_names, resolve
from .yamlpos import Doc, Path, Problem, describe, dotted, dump, parse

_BUILTIN = "builtin"


# ---------------------------------------------------------------------------------- public API
def load(source: str | os.PathLike, overrides: Sequence[str] = (), policy: str | None = None) -> S.Scenario:
    """Load a scenario file, or a built-in scenario by name, applying ``--set`` overrides; with
    ``policy``, for that controller instead of the file's (``run --policy``, ``compare``): the
    parameters it reads are kept, those only other controllers read are left out
    (``controllers.with_policy``).

    Raises ScenarioError listing every problem, each ``FILE:LINE:COL: path: message`` followed by
    the source line and a caret.
    """
    path, shown = _locate(source)
    return _load_text(read_text(path, shown), shown, path.absolute().parent, overrides, policy)


def read_text(path: FsPath, shown: str) -> str:
    """A YAML file's text (a BOM is dropped); unreadable or non-UTF-8 files are ScenarioErrors."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ScenarioError([f"{shown}: not a UTF-8 text file ({e.reason} at byte {e.start})"]) from None
    except OSError as e:
        raise ScenarioError([f"{shown}: cannot read the file: {e.strerror}"]) from None


def loads(text: str, filename: str = "<string>", overrides: Sequence[str] = ()) -> S.Scenario:
    """Load a scenario from YAML text; relative file paths are relative to the working folder."""
    return _load_text(text, filename, FsPath.cwd(), overrides)


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with otmarl."""
    folder = resources.files(__package__) / _BUILTIN
    return sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml"))


def builtin_path(name: str) -> FsPath:
    """Path of a built-in scenario file; ScenarioError (with a did-you-mean) for an unknown name."""
    names = builtin_names()
    if name not in names:
        raise ScenarioError([f"{name}: no built-in scenario of that name{did_you_mean(name, names)} "
                             f"(built-ins: {', '.join(names)})"])
    return FsPath(str(resources.files(__package__) / _BUILTIN / f"{name}.yaml"))


def json_schema() -> dict:
    """JSON Schema of a scenario file, for editors (e.g. the YAML language server)."""
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    out.update(S.Scenario.model_json_schema())
    return out


def dump_yaml(scenario: S.Scenario) -> str:
    """The resolved scenario (every default filled in) as YAML that ``loads`` reads back."""
    return dump(scenario.model_dump(mode="python"))


# ---------------------------------------------------------------------------------- locating
def _locate(source: str | os.PathLike) -> tuple[FsPath, str]:
    shown = os.fspath(source)
    path = FsPath(shown)
    if path.is_file():
        return path, shown
    name = shown[:-5] if shown.endswith(".yaml") else shown
    names = builtin_names()
    if name in names and "/" not in shown and os.sep not in shown:
        return builtin_path(name), f"{name}.yaml"
    if path.is_dir():
        raise ScenarioError([f"{shown}: is a folder, not a scenario file"])
    raise ScenarioError([f"{shown}: no such scenario file or built-in scenario"
                         f"{did_you_mean(name, names)} (built-ins: {', '.join(names)})"])


class Context:
    """The parsed file, the overrides and the problems found so far, with helpers that turn a
    data path into a located problem."""

    def __init__(self, doc: Doc, overrides: list[Override], base: FsPath):
        self.doc, self.overrides, self.base = doc, overrides, base
        self.data: dict = doc.data
        self.problems: list[Problem] = []

    def add(self, path: Path, message: str, at: str = "value") -> None:
        """Report ``message`` about the key at ``path``; ``at`` is 'value', 'key' (point at the
        key itself) or 'parent' (the key is missing: point at its parent)."""
        self.problems.append(self.problem(path, message, at))

    def problem(self, path: Path, message: str, at: str = "value") -> Problem:
        nodes = self.doc.nodes
        anchor = path[:-1] if at == "parent" else path  # a missing key belongs to its mapping
        ov = ov_mod.origin_of(anchor, self.overrides, anchor in nodes)
        if ov is not None:
            inside = ov.path[:len(path)] == path  # the override's text already names the path
            comp = len(path) - 1 if inside and len(path) < len(ov.path) and at == "key" else None
            return Problem(ov.span(comp), "" if inside else dotted(path), message)
        p = path[:-1] if at == "parent" else path
        while p not in nodes:
            p = p[:-1]
        key, value = nodes[p]
        node = value if (p == path and at == "value") or key is None else key
        return Problem(self.doc.span(node.start_mark), dotted(path), message)


def _load_text(text: str, filename: str, base: FsPath, overrides: Sequence[str],
               policy: str | None = None) -> S.Scenario:
    doc = parse(text, filename)
    ovs, problems = ov_mod.parse(list(overrides))
    problems = doc.problems + problems
    if doc.data is None:
        raise ScenarioError(_sorted(problems))
    problems += ov_mod.apply(doc.data, ovs)
    if policy is not None and isinstance(doc.data, dict):
        C.switch_policy(doc.data, policy)
    ctx = Context(doc, ovs, base)
    scenario = check(ctx)
    # a cross-field problem may be found twice, by the raw check and by the schema: report it once
    unique = {p.format(): p for p in problems + ctx.problems}
    if unique or scenario is None:
        raise ScenarioError(_sorted(list(unique.values())))
    return scenario


def _sorted(problems: list[Problem]) -> list[str]:
    return [p.format() for p in sorted(problems, key=lambda p: p.span.order)]


# ---------------------------------------------------------------------------------- validation
def check(ctx: Context) -> S.Scenario | None:
    """Every check of a scenario document (referenced files, cross-field rules, the schema):
    the Scenario, or None with the problems in ``ctx.problems``. The sweep loader checks each
    point of a design with it."""
    _check_files(ctx)
    _check_cross(ctx)
    scenario = _validate(ctx)
    if scenario is not None:
        bad = memory_problem(scenario)
        if bad:
            biggest = max(scenario.nodes, key=lambda c: scenario.nodes[c].count)
            ctx.add(("nodes", biggest, "count"), bad)
            return None
    return scenario


def _validate(ctx: Context) -> S.Scenario | None:
    try:
        return S.Scenario.model_validate(ctx.data)
    except ValidationError as e:
        found = [x for err in e.errors(include_url=False) for x in _explained(err)]
    # 'horizon: 2' gives "unknown key 'horizon'; did you mean 'horizon_h'?": saying that
    # horizon_h is missing as well would only repeat it
    meant = {e.path[:-1] + (e.meant,) for e in found if e.meant}
    for e in found:
        if e.path not in ctx.doc.unreadable and not (e.at == "parent" and e.path in meant):
            ctx.add(e.path, e.message, e.at)  # (an unreadable value was reported by the YAML step)
    return None


#: Keys a scenario no longer has, and where their job went.
RETIRED = {("output",): "; a scenario no longer chooses the files a run writes: use --tables all, "
                        "no-tasks or summary on run, compare or sweep"}


class _Explained(NamedTuple):
    path: Path
    message: str
    at: str = "value"
    """Where to point: see ``Context.add``."""
    meant: str | None = None
    """For an unknown key, the field it probably meant."""


def _explained(err: dict) -> list[_Explained]:
    """YAML path, message and where to point, for each problem of one pydantic error (a model
    validator's located error may carry several)."""
    if err["type"] != LOCATED:
        return [_explain(err)]
    loc = tuple(err["loc"])
    path = resolve(loc)[0]
    return [_Explained(path + tuple(p[len(loc):]), m, at) for p, m, at in located_problems(loc, err["ctx"])]


def _explain(err: dict) -> _Explained:
    """YAML path, message and where to point, for one pydantic error."""
    loc, typ, ctx, value = err["loc"], err["type"], err.get("ctx") or {}, err.get("input")
    path, t = resolve(loc)
    if typ == "unknown_policy":
        return _policy_problem(path, value)
    if typ == "extra_forbidden" and len(loc) == 4 and loc[0] == "controller" and loc[2] == "params":
        return _param_problem(path, loc[1])
    if typ == "extra_forbidden":
        close = closest(path[-1], field_names(resolve(loc[:-1])[1]))
        hint = f"; did you mean '{close}'?" if close else RETIRED.get(path, "")
        return _Explained(path, f"unknown key '{path[-1]}'{hint}", "key", close)
    if typ == "missing":
        last = path[-1]
        return _Explained(path, f"missing item {last}" if isinstance(last, int) else "required key is missing",
                          "parent")
    if typ == "union_tag_not_found":
        tags = ", ".join(sorted(ov_mod.members(t)))
        return _Explained(path + (t.discriminator,), f"required key is missing (one of: {tags})", "parent")
    if typ == "union_tag_invalid":
        tags = sorted(ov_mod.members(t))
        return _Explained(path + (t.discriminator,), f"unknown {t.discriminator} '{ctx.get('tag')}'"
                          f"{did_you_mean(ctx.get('tag'), tags)} (expected one of: {', '.join(tags)})")
    if path and path[-1] == "[key]":
        return _Explained(path[:-1], f"a key must be a name (a string), got {describe(value)}", "key")
    if typ == "invalid_key":
        return _Explained(path, f"a key must be a name (a string), got {describe(value)}", "key")
    return _Explained(path, message(typ, ctx, value, err["msg"]))


def _policy_problem(path: Path, section: Any) -> _Explained:
    """A controller section whose ``policy`` names no controller."""
    if not isinstance(section, dict):
        return _Explained(path, f"expected a mapping, got {describe(section)}")
    policy = section.get("policy")
    if not isinstance(policy, str):
        return _Explained(path + ("policy",), f"expected a policy name (a string), got {describe(policy)}")
    return _Explained(path + ("policy",), C.policy_problem(policy) or f"unknown policy '{policy}'")


def _param_problem(path: Path, tag: str) -> _Explained:
    """A key of ``controller.params`` that the controller of ``tag`` does not read."""
    msg, meant = C.param_problem(path[-1], tag)
    return _Explained(path, msg, "key", meant)


_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
           "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}
_EXPECTED = {
    "int": "a whole number", "float": "a number", "bool": "true or false", "string": "a string",
    "dict": "a mapping", "model": "a mapping", "list": "a list", "tuple": "a list",
    "datetime": "a date and time like 2024-06-21T00:00:00", "date": "a date like 2024-06-21",
}


def message(typ: str, ctx: dict, value: Any, default: str) -> str:
    """The message of one pydantic error of a scenario value (bounds spelled out)."""
    if typ == "value_error":
        return str(ctx.get("error", default))
    if typ in _BOUNDS:
        key, op = _BOUNDS[typ]
        return f"value {_num(value)} must be {op} {_num(ctx[key])}"
    if typ == "literal_error":
        allowed = [a.strip().strip("'") for a in ctx["expected"].replace(" or ", ", ").split(",")]
        return f"expected {ctx['expected']}, got {describe(value)}{did_you_mean(value, allowed)}"
    if typ in ("too_short", "too_long"):
        n = ctx.get("min_length" if typ == "too_short" else "max_length")
        bound = "at least" if typ == "too_short" else "at most"
        return f"expected {bound} {n} entr{'y' if n == 1 else 'ies'}, got {ctx.get('actual_length')}"
    head = typ.split("_", 1)[0]
    if head in _EXPECTED and (typ.endswith(("_type", "_parsing")) or typ == "int_from_float"
                              or typ.startswith(("model_", "datetime_"))):
        return f"expected {_EXPECTED[head]}, got {describe(value)}"
    return default


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# ------------------------------------------------------------------------------ cross checks
def _get(d: Any, *keys: Any) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _class_counts(data: dict) -> dict[str, int] | None:
    """Node counts by class if every class has a valid count (else the check that needs the
    total is skipped: the bad count is reported by itself)."""
    nodes = data.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        return None
    counts = {k: _get(c, "count") for k, c in nodes.items()}
    ok = all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in counts.values())
    return counts if ok else None


def _default(model: type, name: str) -> Any:
    return model.model_fields[name].default


def _check_cross(ctx: Context) -> None:
    data = ctx.data
    nodes = data.get("nodes")
    for cls, nc in nodes.items() if isinstance(nodes, dict) else ():
        b = _get(nc, "battery")
        if not isinstance(b, dict):
            continue
        lo = b.get("min_soc", _default(S.Battery, "min_soc"))
        hi = b.get("resume_soc", _default(S.Battery, "resume_soc"))
        bad = _is_num(lo) and _is_num(hi) and S.soc_order_problem(lo, hi, "min_soc" in b)
        if bad:
            ctx.add(("nodes", cls, "battery", bad[0]), bad[1])
    h, ci = data.get("horizon_h"), data.get("control_interval_s", _default(S.Scenario, "control_interval_s"))
    if _is_num(h) and _is_num(ci) and h > 0 and ci >= 1:
        bad = S.epochs_problem(h, ci)
        if bad:
            ctx.add(("horizon_h",), bad)
    counts = _class_counts(data)
    topo = _get(data, "network", "topology")
    if counts and isinstance(topo, dict) and topo.get("kind") == "grid":
        r, c = topo.get("rows"), topo.get("cols")
        if all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in (r, c)):
            bad = S.grid_problem(r, c, sum(counts.values()))
            if bad:
                ctx.add(("network", "topology", "rows"), bad)
    _check_time(ctx)
    events = _get(data, "faults", "events")
    if counts and isinstance(events, list):
        for i, ev in enumerate(events):
            for where, name in _fault_names(ev):
                bad = S.node_name_problem(name, counts)
                if bad:
                    ctx.add(("faults", "events", i) + where, bad)


# ---------------------------------------------------------------------------- time and place
def _check_time(ctx: Context) -> None:
    """The time zone is a known IANA name, and a local start time exists there exactly once."""
    tz = _get(ctx.data, "location", "timezone")
    tz = _default(S.Location, "timezone") if tz is None else tz
    if not isinstance(tz, str):
        return                                   # the schema reports the type
    zone = time_zone(tz)
    if zone is None:
        names = sorted(_zone_names())
        ctx.add(("location", "timezone"), f"unknown time zone '{tz}'{did_you_mean(tz, names)} "
                                          "(an IANA name such as 'Europe/Berlin' or 'UTC')")
        return
    start = _as_datetime(ctx.data.get("start"))
    if start is not None and start.tzinfo is None:
        bad = local_time_problem(start, zone, tz)
        if bad:
            ctx.add(("start",), bad)


def _zone_names() -> set[str]:
    from zoneinfo import available_timezones
    # 'localtime' is this machine's own zone: a scenario must mean the same everywhere
    return available_timezones() - {"localtime", "Factory"}


def time_zone(name: str):
    """The ZoneInfo of an IANA name, or None if there is no such zone here."""
    from zoneinfo import ZoneInfo
    if name not in _zone_names():
        return None
    return ZoneInfo(name)


def local_time_problem(t: datetime, zone, name: str) -> str | None:
    """Why a naive local time ``t`` is not one instant at ``zone``: it falls in the hour skipped
    when clocks go forward, or in the hour repeated when they go back. The rule is to refuse both
    and name valid alternatives; a UTC offset in ``start`` says which instant is meant."""
    first, second = t.replace(tzinfo=zone, fold=0), t.replace(tzinfo=zone, fold=1)
    off0, off1 = first.utcoffset(), second.utcoffset()
    if off0 == off1:
        return None
    iso = t.isoformat()
    back = first.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None)
    if back != t:                                 # skipped: no instant shows this wall time
        gap = off1 - off0 if off1 > off0 else off0 - off1
        before, after = (t - gap).isoformat(), (t + gap).isoformat()
        return (f"{iso} does not exist at {name}: clocks skip {_duration(gap)} that day; use {before} or "
                f"{after}, or give a UTC offset")
    return (f"{iso} happens twice at {name} (clocks go back that day); say which with a UTC "
            f"offset: {iso}{_offset(off0)} (the first) or {iso}{_offset(off1)} (the second)")


def _duration(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def _offset(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _as_datetime(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v)
        except ValueError:
            return None                           # the schema reports it
    return None


def _fault_names(ev: Any) -> list[tuple[tuple, str]]:
    if not isinstance(ev, dict):
        return []
    out = [(("node",), ev["node"])] if isinstance(ev.get("node"), str) else []
    link = ev.get("link")
    if isinstance(link, list):
        out += [(("link", j), nm) for j, nm in enumerate(link) if isinstance(nm, str)]
    return out


# ------------------------------------------------------------------------------------- files
def _file_fields(data: dict) -> list[tuple[Path, str]]:
    """(path, what) of every file named in the tree: 'graph', 'harvest', 'arrivals', 'tmy'."""
    out: list[tuple[Path, str]] = []
    if _get(data, "network", "topology", "kind") in ("edge_list", "graphml"):
        out.append((("network", "topology", "file"), "graph"))
    nodes = data.get("nodes")
    for cls, nc in nodes.items() if isinstance(nodes, dict) else ():
        kind = _get(nc, "harvest", "kind")
        if kind == "trace":
            out.append((("nodes", cls, "harvest", "file"), "harvest"))
        if kind == "solar" and isinstance(_get(nc, "harvest"), dict) and "tmy_file" in nc["harvest"]:
            out.append((("nodes", cls, "harvest", "tmy_file"), "tmy"))
        if _get(nc, "workload", "arrival", "kind") == "trace":
            out.append((("nodes", cls, "workload", "arrival", "file"), "arrivals"))
    return out


def _check_files(ctx: Context) -> None:
    for path, what in _file_fields(ctx.data):
        parent = _get(ctx.data, *path[:-1])
        value = parent.get(path[-1])
        if not isinstance(value, str) or not value:
            continue  # missing or not a string: validation reports it
        if what == "tmy" and value.startswith("pvlib:"):
            _check_pvlib_file(ctx, path, value)
            continue
        full = FsPath(os.path.expanduser(value))
        full = full if full.is_absolute() else ctx.base / full
        if not full.is_file():
            where = "" if FsPath(value).is_absolute() else " (relative to the scenario file's folder)"
            state = "is a folder, not a file" if full.is_dir() else "does not exist"
            ctx.add(path, f"file '{value}' {state}{where}")
            continue
        parent[path[-1]] = os.path.normpath(full.absolute())
        _CONTENT_CHECKS.get(what, lambda *a: None)(ctx, path, full, value)


def _check_pvlib_file(ctx: Context, path: Path, value: str) -> None:
    spec = find_spec("pvlib")
    folder = FsPath(list(spec.submodule_search_locations)[0]) / "data" if spec else None
    name = value.split(":", 1)[1]
    if folder is None or not (folder / name).is_file():
        have = sorted(p.name for p in folder.iterdir()) if folder and folder.is_dir() else []
        ctx.add(path, f"pvlib ships no file '{name}'{did_you_mean(name, have)}")


def _check_graph(ctx: Context, path: Path, full: FsPath, shown: str) -> None:
    """A graph file: readable, as many nodes as the classes, link attributes within the bounds of
    the ``link`` fields, and every link fault event naming one of its edges."""
    kind = _get(ctx.data, *path[:-1], "kind")
    try:
        gf = read_graph(kind, full)
    except GraphFileError as e:
        what = "an edge list (lines 'i j' of integer node ids)" if kind == "edge_list" else "GraphML"
        ctx.add(path, f"{shown}:{e.line}: {e}" if e.line else f"cannot read the file as {what}: {e}")
        return
    except (OSError, UnicodeDecodeError) as e:
        ctx.add(path, f"cannot read '{shown}' as text: {e}")
        return
    counts = _class_counts(ctx.data)
    if counts and gf.graph.number_of_nodes() != sum(counts.values()):
        per = ", ".join(f"{k}: {n}" for k, n in counts.items())
        ctx.add(path, f"the graph has {gf.graph.number_of_nodes()} nodes, but the node classes have "
                      f"{sum(counts.values())} ({per})")
        return
    bad = _edge_attribute_problem(gf, shown)
    if bad:
        ctx.add(path, bad)
    if counts:
        _check_link_events(ctx, gf, counts)


def _edge_attribute_problem(gf: GraphFile, shown: str) -> str | None:
    """The first edge attribute named like a ``link`` field whose value the field refuses, as
    '<file>:<line>: ...'."""
    fields = set(S.Link.model_fields)
    for a, b, data in sorted(gf.graph.edges(data=True)):
        for name in sorted(fields & set(data)):
            at = f"{shown}:{gf.line.get((min(a, b), max(a, b)), '?')}: edge {gf.label[a]}-{gf.label[b]}: {name}"
            if not _is_num(data[name]):
                return f"{at}: expected a number, got {describe(data[name])}"
            try:
                S.Link.model_validate({name: data[name]})
            except ValidationError as e:
                err = e.errors(include_url=False)[0]
                why = message(err["type"], err.get("ctx") or {}, err.get("input"), err["msg"])
                return f"{at}: {why}"
    return None


def _check_link_events(ctx: Context, gf: GraphFile, counts: dict[str, int]) -> None:
    names = [f"{cls}_{i}" for cls, n in counts.items() for i in range(n)]
    events = _get(ctx.data, "faults", "events")
    for i, ev in enumerate(events if isinstance(events, list) else ()):
        pair = [nm for where, nm in _fault_names(ev) if where[0] == "link"]
        if len(pair) == 2 and not any(S.node_name_problem(nm, counts) for nm in pair):
            bad = link_event_problem({"kind": "graph file"}, names, pair, gf.graph)
            if bad:
                ctx.add(("faults", "events", i, "link"), bad)


def _read_csv(ctx: Context, path: Path, full: FsPath) -> tuple[list[str], list[tuple[int, list[str]]]] | None:
    """(header, [(line number, cells)]) of a CSV file, or None with the problem reported."""
    try:
        with open(full, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        ctx.add(path, f"cannot read the file as CSV: {e}")
        return None
    return header, rows


def _csv_columns(ctx: Context, path: Path, header: list[str], shown: str,
                 columns: dict[str, str]) -> dict[str, str] | None:
    """The CSV columns the scenario names (key -> column), or None with the missing reported."""
    section = _get(ctx.data, *path[:-1])
    found = {}
    for key, default in columns.items():
        col = section.get(key, default)
        if not isinstance(col, str):
            return None                            # the schema reports the type
        if col not in header:
            at = path[:-1] + (key,) if key in section else path
            ctx.add(at, f"column '{col}' is not in the header of '{shown}' "
                        f"(columns: {', '.join(header) or 'none'}){did_you_mean(col, header)}")
            return None
        found[key] = col
    return found


def _column_problem(rows: list[tuple[int, list[str]]], header: list[str], col: str, shown: str,
                    whole: bool = False) -> str | None:
    """The first cell of ``col`` that is not a finite number >= 0 (a whole one if ``whole``),
    as '<file>:<line>: ...'."""
    j = header.index(col)
    for line, row in rows:
        cell = row[j].strip() if j < len(row) else ""
        try:
            x = float(cell)
        except ValueError:
            what = "is empty" if not cell else f"'{cell}' is not a number"
            return f"{shown}:{line}: column '{col}' {what}"
        if not math.isfinite(x) or x < 0:
            return f"{shown}:{line}: column '{col}': {cell} must be a finite number >= 0"
        if whole and x != int(x):
            return f"{shown}:{line}: column '{col}': {cell} must be a whole number (a node index)"
    return None


def _check_trace(ctx: Context, path: Path, full: FsPath, shown: str, columns: dict[str, str],
                 whole: tuple[str, ...] = ()) -> dict[str, list[tuple[int, float]]] | None:
    """A trace CSV: the named columns exist, every row has a number >= 0 in each of them, and
    there is at least one row. Returns each key's column as (line, value) pairs, or None with the
    problem reported."""
    read = _read_csv(ctx, path, full)
    if read is None:
        return None
    header, rows = read
    cols = _csv_columns(ctx, path, header, shown, columns)
    if cols is None:
        return None
    if not rows:
        ctx.add(path, f"'{shown}' has a header but no rows")
        return None
    for key, col in cols.items():
        bad = _column_problem(rows, header, col, shown, whole=key in whole)
        if bad:
            ctx.add(path, bad)
            return None
    return {key: [(line, float(row[header.index(col)])) for line, row in rows]
            for key, col in cols.items()}


def _check_harvest_trace(ctx: Context, path: Path, full: FsPath, shown: str) -> None:
    """A harvest trace also starts at hour 0 and lists its rows in increasing time (each row's
    power holds until the next row; the trace repeats past its end)."""
    columns = {k: _column_name(ctx, path, S.TraceHarvest, k) for k in ("time_column", "power_column")}
    got = _check_trace(ctx, path, full, shown, columns)
    if got is None:
        return
    times, col = got["time_column"], columns["time_column"]
    line, t0 = times[0]
    if t0 != 0:
        ctx.add(path, f"{shown}:{line}: column '{col}': the first time is {_num(t0)} h; it must be 0 "
                      "(the trace gives the power from the scenario's start)")
        return
    for (_, before), (line, t) in zip(times, times[1:]):
        if t <= before:
            ctx.add(path, f"{shown}:{line}: column '{col}': {_num(t)} must be greater than the "
                          f"previous row's {_num(before)} (rows in increasing time)")
            return


def _check_arrival_trace(ctx: Context, path: Path, full: FsPath, shown: str) -> None:
    """An arrival trace also holds at least one task of the run: a time within the horizon for a
    node index of the class (rows outside either are ignored)."""
    columns = {k: _column_name(ctx, path, S.TraceArrivals, k) for k in ("time_column", "node_column")}
    got = _check_trace(ctx, path, full, shown, columns, whole=("node_column",))
    horizon, count = ctx.data.get("horizon_h"), _get(ctx.data, *path[:2], "count")
    if got is None or not (_is_num(horizon) and isinstance(count, int)):
        return                                     # the schema reports a bad horizon or count
    times = [t for _, t in got["time_column"]]
    nodes = [int(i) for _, i in got["node_column"]]
    if not any(t < horizon and i < count for t, i in zip(times, nodes)):
        ctx.add(path, f"'{shown}' holds no task of the run: no row has a time below the horizon "
                      f"{_num(horizon)} h and a node index below the class's count {count} (its "
                      f"times run from {_num(min(times))} to {_num(max(times))} h, its node "
                      f"indices from {min(nodes)} to {max(nodes)})")


def _column_name(ctx: Context, path: Path, model: type, key: str) -> str:
    """The column the scenario names for ``key`` in the section holding ``path`` (or the
    default; a value that is not a string is left for the schema to report)."""
    return _get(ctx.data, *path[:-1]).get(key, _default(model, key))


_CONTENT_CHECKS: dict[str, Callable[[Context, Path, FsPath, str], None]] = {
    "graph": _check_graph, "harvest": _check_harvest_trace, "arrivals": _check_arrival_trace}
