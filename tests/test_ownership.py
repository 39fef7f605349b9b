"""State has one owner: nothing outside the simulator package writes the world, and controllers get
a read-only Observation.

The AST check walks every module outside ``simulator/`` and flags any assignment (plain, augmented,
annotated, or by ``del``) whose target reaches into a World: ``world.x = ...``, ``w.x[i] += ...``,
``sim.world.p.capacity_wh[0] = ...``. An expression refers to a World when it is

- the name ``world``, or any attribute ``.world`` (``sim.world``, ``core.sim.world``);
- a call ``World(...)``;
- a name bound in the same function (or module) to one of the above (``w = sim.world``,
  ``w, p = core.sim.world, x``), or a parameter named ``world``/``w`` or annotated ``World``.

Writes through methods (``world.stored.fill(0)``, ``np.copyto(world.stored, ...)``) are not seen;
the read-only Observation covers what controllers hold, and the World itself only hands out
read-only views.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from otmarl.scenarios import load
from otmarl.simulator import Simulation

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = ("otmarl", "policies", "analysis", "scenarios", "benchmarks")
WORLD_PARAMS = {"world", "w"}


def _is_world(node: ast.AST, aliases: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "world" or node.id in aliases
    if isinstance(node, ast.Attribute):
        return node.attr == "world"
    if isinstance(node, ast.Call):
        f = node.func
        return (isinstance(f, ast.Name) and f.id == "World") or (isinstance(f, ast.Attribute) and f.attr == "World")
    return False


def _targets(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.Assign):
        out = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        out = [node.target]
    elif isinstance(node, ast.Delete):
        out = list(node.targets)
    else:
        return []
    flat = []
    while out:
        t = out.pop()
        if isinstance(t, (ast.Tuple, ast.List)):
            out.extend(t.elts)
        elif isinstance(t, ast.Starred):
            out.append(t.value)
        else:
            flat.append(t)
    return flat


def _writes_world(target: ast.AST, aliases: set[str]) -> bool:
    """``target`` is ``<world>.attr...`` possibly with subscripts: a write into the world."""
    through_attr = False
    while isinstance(target, (ast.Attribute, ast.Subscript)):
        if isinstance(target, ast.Attribute):
            through_attr = True
        target = target.value
        if through_attr and _is_world(target, aliases):
            return True
    return False


def _aliases(scope: ast.AST) -> set[str]:
    """Names bound to a World in one function or module body (not looking into nested defs)."""
    names: set[str] = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = scope.args
        for arg in a.posonlyargs + a.args + a.kwonlyargs:
            ann = ast.unparse(arg.annotation) if arg.annotation is not None else ""
            if arg.arg in WORLD_PARAMS or ann.split(".")[-1].strip("'\"") == "World":
                names.add(arg.arg)
    for _ in range(2):       # an alias of an alias
        for node in _walk_scope(scope):
            if isinstance(node, ast.Assign):
                pairs = []
                for t in node.targets:
                    if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs += zip(t.elts, node.value.elts)
                    else:
                        pairs.append((t, node.value))
                for t, v in pairs:
                    if isinstance(t, ast.Name) and _is_world(v, names):
                        names.add(t.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if "World" in ast.unparse(node.annotation):
                    names.add(node.target.id)
    return names


def _walk_scope(scope: ast.AST):
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))


def world_writes(source: str, filename: str = "<snippet>") -> list[str]:
    """``file:line: code`` for every assignment into a World in ``source``."""
    tree = ast.parse(source, filename)
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    found = {}
    for scope in scopes:
        aliases = _aliases(scope)
        for node in _walk_scope(scope):
            for t in _targets(node):
                if _writes_world(t, aliases):
                    found[node.lineno] = f"{filename}:{node.lineno}: {ast.unparse(node).splitlines()[0]}"
    return [found[k] for k in sorted(found)]


def test_the_detector_flags_writes_into_a_world():
    snippet = '''
def a(sim):
    sim.world.stored = None
def b(core):
    w = core.sim.world
    w.status[3] = 0
def c(world):
    world.p.capacity_wh[0] += 1.0
def d(x: "World"):
    x.open_lo, y = 5, 1
def e(sc):
    wd = World(sc, 0)
    alias = wd
    del alias.transit[0]
def f(weights):
    weights.x = 1            # not a world
    w2 = weights
    w2.y[0] = 2              # not a world
    return sim.world.stored[0]   # a read
'''
    hits = world_writes(snippet)
    assert [h.split(":")[1] for h in hits] == ["3", "6", "8", "10", "14"], hits


def test_no_module_outside_the_simulator_writes_the_world():
    found = []
    for folder in OUTSIDE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += world_writes(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []


# ---------------------------------------------------------------------- read-only Observation
@pytest.fixture(scope="module")
def obs():
    sim = Simulation(load("microgrid-solar", ["horizon_h=2"]), 0)
    return sim.observe()


def test_observation_arrays_refuse_writes(obs):
    arrays = {k: v for k, v in vars(obs).items() if isinstance(v, np.ndarray)}
    assert {"stored_wh", "capacity_wh", "up", "waiting_ids", "task_deadline_s"} <= arrays.keys()
    for name, a in arrays.items():
        with pytest.raises(ValueError, match="read-only"):
            a[...] = a          # a write of the same values is still a write
    with pytest.raises(ValueError, match="read-only"):
        obs.network.links.power_limit_w[0] = 1e9
    with pytest.raises(ValueError, match="read-only"):
        obs.network.link_up[0] = False


def test_observation_holds_no_handle_on_the_world(obs):
    """Every public attribute of the observation and of its network view is an array, a number or
    a path query; none is a World, a NetworkState or Paths object."""
    from otmarl.simulator.network import NetworkState, Paths
    from otmarl.simulator.world import World

    live = (World, NetworkState, Paths)
    net = obs.network
    seen = list(vars(obs).values()) + [getattr(net, k) for k in dir(net) if not k.startswith("_")]
    seen += [getattr(net.energy, k) for k in dir(net.energy) if not k.startswith("_")]
    for v in seen:
        owner = getattr(v, "__self__", v)      # a bound method's object
        assert not isinstance(owner, live), v
    assert not any(hasattr(net, k) for k in ("set_state", "invalidate", "ensure"))
