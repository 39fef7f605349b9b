"""Graph files (edge lists and GraphML) and which node pairs a topology links.

One reader serves the simulator and the validator: ``read_graph`` returns the graph on nodes
0..n-1 (the file's node ids in sorted order) and the line of the file each edge came from, so a
problem with an edge is reported at ``file:line``. ``linked`` answers, for topologies whose links
do not depend on the seed, whether two node indices are joined; seed-dependent generators answer
None (``seed_dependent``).
"""
from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx


def seed_dependent(topology: Mapping[str, Any]) -> bool:
    """Whether a topology's links are drawn from the seed: random_geometric, scale_free, and
    small_world with p > 0 (graph files and the other generators are the same in every seed)."""
    kind = topology["kind"]
    return kind in ("random_geometric", "scale_free") or (kind == "small_world" and topology["p"] > 0)


@dataclass(frozen=True)
class GraphFile:
    """A graph file read: ``graph`` on nodes 0..n-1; ``line[(a, b)]`` (a < b) the 1-based line of
    the file that gave the edge; ``label[i]`` the file's own id of node ``i``."""
    graph: nx.Graph
    line: dict[tuple[int, int], int]
    label: list[str]


class GraphFileError(ValueError):
    """A graph file that cannot be read; ``line`` is 1-based, or None when unknown."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def read_graph(kind: str, path: str | Path) -> GraphFile:
    """Read an edge list ('i j' or 'i j {attr: value}' per line; '#' starts a comment) or GraphML.
    Raises ``GraphFileError`` (with the line for edge lists) or OSError/UnicodeDecodeError."""
    text = Path(path).read_text(encoding="utf-8")
    raw, lines = _edge_list(text) if kind == "edge_list" else _graphml(text)
    order = sorted(raw.nodes)
    index = {v: i for i, v in enumerate(order)}
    g = nx.Graph()
    g.add_nodes_from(range(len(order)))
    line = {}
    for a, b, data in raw.edges(data=True):
        i, j = sorted((index[a], index[b]))
        if i != j:
            g.add_edge(i, j, **data)
            line.setdefault((i, j), lines.get((a, b), lines.get((b, a), 0)))
    return GraphFile(g, line, [str(v) for v in order])


def _edge_list(text: str) -> tuple[nx.Graph, dict]:
    g, lines = nx.Graph(), {}
    for no, full in enumerate(text.splitlines(), 1):
        body = full.split("#", 1)[0].strip()
        if not body:
            continue
        parts = body.split(maxsplit=2)
        if len(parts) < 2:
            raise GraphFileError(f"expected 'i j' (two integer node ids), got {body!r}", no)
        try:
            a, b = int(parts[0]), int(parts[1])
        except ValueError:
            raise GraphFileError(f"node ids must be integers, got {parts[0]!r} {parts[1]!r}", no) from None
        data = _attributes(parts[2], no) if len(parts) > 2 else {}
        g.add_edge(a, b, **data)
        lines.setdefault((a, b), no)
    return g, lines


def _attributes(text: str, no: int) -> dict:
    try:
        data = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        data = None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise GraphFileError(f"edge attributes must be a mapping like {{'latency_s': 0.01}}, "
                             f"got {text!r}", no)
    return data


def _graphml(text: str) -> tuple[nx.Graph, dict]:
    from io import BytesIO
    from xml.etree.ElementTree import ParseError
    try:
        g = nx.Graph(nx.read_graphml(BytesIO(text.encode("utf-8"))))
    except (ValueError, TypeError, KeyError, ParseError, nx.NetworkXError) as e:
        raise GraphFileError(f"cannot read the file as GraphML: {e}") from None
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    lines = {}
    for m in re.finditer(r"<edge\b[^>]*>", text):
        src = re.search(r'\bsource="([^"]*)"', m.group(0))
        dst = re.search(r'\btarget="([^"]*)"', m.group(0))
        if src and dst:
            no = _line_of(starts, m.start())
            lines.setdefault((src.group(1), dst.group(1)), no)
    return g, lines


def _line_of(starts: list[int], offset: int) -> int:
    from bisect import bisect_right
    return bisect_right(starts, offset)


def linked(topology: Mapping[str, Any], n: int, a: int, b: int) -> bool | None:
    """Whether nodes ``a`` and ``b`` (indices < n) are joined by a generated topology (its
    fields as a mapping) whose links do not depend on the seed; None for seed-dependent
    generators and graph files."""
    kind = topology["kind"]
    if a == b:
        return False
    if kind == "grid":
        (ra, ca), (rb, cb) = divmod(a, topology["cols"]), divmod(b, topology["cols"])
        return abs(ra - rb) + abs(ca - cb) == 1
    if kind == "star":
        return min(a, b) == 0
    if kind == "tree":
        lo, hi = sorted((a, b))
        return (hi - 1) // topology.get("branching", 2) == lo
    if kind == "complete":
        return True
    if kind == "small_world" and topology["p"] == 0:
        if n <= 2:
            return True
        d = abs(a - b)
        return min(d, n - d) <= min(topology["k"], n - 1) // 2
    return None


def link_event_problem(topology: Mapping[str, Any], names: Sequence[str], pair: Sequence[str],
                       graph: nx.Graph | None = None) -> str | None:
    """Why a link fault event naming ``pair`` cannot apply to this topology (``graph``: the graph
    of a graph file), or None. ``names``: every node name in index order."""
    index = {nm: i for i, nm in enumerate(names)}
    a, b = (index[x] for x in pair)
    kind = topology.get("kind")
    if graph is not None:
        if graph.has_edge(a, b):
            return None
        near = sorted(graph.neighbors(a))
    else:
        ok = None if seed_dependent(topology) else linked(topology, len(names), a, b)
        if ok is None:
            return (f"a link event needs links that do not depend on the seed, but a {kind} "
                    f"topology draws them from the seed ('{pair[0]}'-'{pair[1]}' may be a link in "
                    "one seed and not in another); use a node event, random link faults "
                    "(faults.random.link_mtbf_h), or a fixed topology (grid, star, tree, "
                    "complete, small_world with p: 0, or a graph file)")
        if ok:
            return None
        near = [j for j in range(len(names)) if linked(topology, len(names), a, j)]
    shown = ", ".join(names[j] for j in near[:8]) + (", ..." if len(near) > 8 else "")
    where = "the graph file" if graph is not None else f"this {kind} topology"
    return (f"'{pair[0]}' and '{pair[1]}' are not linked in {where}, so the event "
            f"would change nothing ({pair[0]}'s links go to: {shown or 'no node'})")
