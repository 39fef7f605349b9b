"""YAML with positions: parse a scenario file into plain data plus the line/column of every key
and value, and format problems like a compiler (``FILE:LINE:COL: path: message``, the source line,
a caret); and dump data back to YAML that parses to the same values.

PyYAML's ``SafeLoader`` is used through ``yaml.compose`` so that every node keeps its mark. Two
deliberate departures from PyYAML's YAML 1.1 defaults, both YAML 1.2 behaviour:

* ``1e9`` is a float (PyYAML reads it as the string '1e9', which a number field would reject);
* only ``true``/``false`` are booleans, so a node class named ``no`` or ``on`` stays a string
  (pydantic still accepts 'yes'/'no'/'on'/'off' for boolean fields).

PyYAML keeps the last of two equal keys without a word; ``parse`` reports the second one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .distributions import KINDS

Path = tuple[Hashable, ...]

_BOOL = "tag:yaml.org,2002:bool"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_STD_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats and booleans (see the module docstring)."""


Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _FLOAT)]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                           |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                           |[-+]?\.(?:inf|Inf|INF)
                           |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


# ------------------------------------------------------------------------------ problems
@dataclass(frozen=True)
class Span:
    """Where a problem is: ``origin`` ('FILE:LINE:COL' or '--set TEXT'), the line to show and
    the 0-based column of the caret in it. ``order`` sorts problems (file first, by position)."""

    origin: str
    source_line: str
    col: int
    order: tuple = ()


@dataclass(frozen=True)
class Problem:
    span: Span
    path: str
    message: str

    def format(self) -> str:
        head = f"{self.span.origin}: {self.path + ': ' if self.path else ''}{self.message}"
        line = self.span.source_line.rstrip("\n")
        caret = "".join(c if c == "\t" else " " for c in line[:self.span.col]) + "^"
        return f"{head}\n    {line}\n    {caret}"


def dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


# ---------------------------------------------------------------------------------- parsing
@dataclass
class Doc:
    """A parsed file: ``data`` (None if unusable), the node of every path, and the problems."""

    filename: str
    lines: list[str]
    data: Any = None
    nodes: dict[Path, tuple[Node | None, Node]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    unreadable: set[Path] = field(default_factory=set)
    """Paths of scalars that could not be read (already reported; their data is None)."""

    def span(self, mark: yaml.Mark | None) -> Span:
        line, col = (mark.line, mark.column) if mark is not None else (0, 0)
        if line >= len(self.lines) and self.lines:  # marks at the end of the stream
            line, col = len(self.lines) - 1, len(self.lines[-1])
        text = self.lines[line] if line < len(self.lines) else ""
        return Span(f"{self.filename}:{line + 1}:{col + 1}", text, col, (0, line, col))

    def add(self, mark: yaml.Mark | None, path: Path | str, message: str) -> None:
        p = path if isinstance(path, str) else dotted(path)
        self.problems.append(Problem(self.span(mark), p, message))


def parse(text: str, filename: str) -> Doc:
    """Parse ``text``; on a fatal problem (syntax, empty file) ``doc.data`` stays None."""
    doc = Doc(filename, text.splitlines())
    try:
        loader = Loader(text)
    except yaml.reader.ReaderError as e:     # a control character: not a text file
        line = text.count("\n", 0, e.position)
        col = e.position - (text.rfind("\n", 0, e.position) + 1)
        doc.add(yaml.Mark(filename, e.position, line, col, None, None), "",
                f"not a text file: control character U+{e.character:04X} (a scenario is YAML "
                "text: tabs, newlines and printable characters only)")
        return doc
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        _syntax_problems(doc, e)
        return doc
    finally:
        loader.dispose()
    if root is None:
        doc.add(None, "", "the file is empty; a scenario needs at least horizon_h, network and nodes")
        return doc
    data = _Builder(doc, loader).build(root, ())
    if not isinstance(data, dict):
        doc.add(root.start_mark, "", f"expected a mapping of scenario keys (key: value lines) at the "
                                     f"top level, got {describe(data)}")
        return doc
    doc.data = data
    return doc


def _syntax_problems(doc: Doc, e: yaml.MarkedYAMLError) -> None:
    mark = e.problem_mark or e.context_mark
    tabs = [(i, ln.index("\t")) for i, ln in enumerate(doc.lines)
            if "\t" in ln[:len(ln) - len(ln.lstrip(" \t"))]]
    for i, col in tabs:  # every line indented with tabs, not only the first one the parser hit
        doc.problems.append(Problem(doc.span(_Mark(i, col)), "",
                                    "tab character in indentation; YAML indents with spaces only"))
    if mark is not None and (mark.line, mark.column) in tabs:
        return
    problem = e.problem or "invalid YAML"
    if "'\\t'" in problem:
        problem = "tab character here; YAML separates and indents with spaces only"
    elif e.context and e.context_mark is not None and e.context_mark is not mark:
        problem += f" ({e.context} at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
    if problem.startswith("mapping values are not allowed"):
        problem += "; check the indentation, or quote a value that contains ': '"
    doc.add(mark, "", f"YAML syntax error: {problem}")


@dataclass(frozen=True)
class _Mark:
    line: int
    column: int


def describe(v: Any) -> str:
    """A short description of a YAML value for messages: 'a list', 'the number 5', ..."""
    if v is None:
        return "nothing (null)"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"the number {v!r}"
    if isinstance(v, str):
        return f"the string {v!r}"
    return repr(v)


class _Builder:
    """Turns composed nodes into plain Python data, recording the nodes of every path."""

    def __init__(self, doc: Doc, loader: Loader):
        self.doc, self.loader = doc, loader
        self.active: set[int] = set()

    def build(self, node: Node, path: Path, key: Node | None = None) -> Any:
        self.doc.nodes[path] = (key, node)
        if id(node) in self.active:
            self.doc.add(node.start_mark, path, "an alias refers to itself (recursive anchor)")
            return None
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if node.tag not in _STD_TAGS:
            self.doc.add(node.start_mark, path, f"unsupported YAML tag '{node.tag}'")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(n, path + (i,)) for i, n in enumerate(node.value)]
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        self.doc.unreadable.add(path)
        try:
            value = self.loader.construct_object(node, deep=True)
            self.doc.unreadable.discard(path)
            return value
        except yaml.MarkedYAMLError as e:
            self.doc.add(e.problem_mark or node.start_mark, path, e.problem or "invalid value")
        except ValueError as e:  # e.g. a timestamp with month 13, or '!!int abc'
            self.doc.add(node.start_mark, path, f"invalid {node.tag.rsplit(':', 1)[-1]} {node.value!r}: {e}")
        return None

    def _mapping(self, node: MappingNode, path: Path) -> dict:
        first: dict[Hashable, Node] = {}
        for k, _ in node.value:
            key = self._key(k, path)
            if key is _BAD or k.tag == _MERGE:
                continue
            if key in first:
                self.doc.add(k.start_mark, path + (key,),
                             f"duplicate key '{key}' (first defined at line {first[key].start_mark.line + 1})")
            first.setdefault(key, k)
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as e:
            self.doc.add(e.problem_mark or node.start_mark, path, e.problem or "bad merge key")
        out: dict = {}
        for k, v in node.value:
            key = self._key(k, path, report=False)
            if key is not _BAD:
                out[key] = self.build(v, path + (key,), k)
        return out

    def _key(self, k: Node, path: Path, report: bool = True) -> Any:
        if isinstance(k, ScalarNode):
            if k.tag == _MERGE:
                return "<<"
            value = self._scalar(k, path + (str(k.value),))
            if isinstance(value, Hashable):
                return value
        if report:
            self.doc.add(k.start_mark, path, "a key must be a plain name, not a list or mapping")
        return _BAD


_BAD = object()


# ---------------------------------------------------------------------------------- dumping
def dump(data: Any) -> str:
    """Plain data (dicts, lists, tuples, scalars) as block YAML that ``Loader`` reads back equal."""
    return yaml.dump(_plain(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class _Dumper(yaml.SafeDumper):
    """Quotes any string that Loader (or PyYAML's YAML 1.1 rules) would read as something else."""


for _ch, _resolvers in Loader.yaml_implicit_resolvers.items():
    for _tag, _rx in _resolvers:
        _Dumper.add_implicit_resolver(_tag, _rx, [_ch])


def _flow_if_short(dumper: yaml.SafeDumper, tag: str, data: Any, represent: Callable) -> Node:
    """Lists of numbers and distribution mappings ({uniform: [5, 10]}) on one line."""
    items = data.values() if isinstance(data, dict) else data
    flat = all(not isinstance(x, (dict, list)) or (isinstance(x, list) and len(x) <= 8) for x in items)
    short = isinstance(data, list) or (len(data) == 1 and next(iter(data)) in KINDS)
    return represent(tag, data, flow_style=bool(flat and short))


_Dumper.add_representer(str, lambda d, x: d.represent_scalar(
    "tag:yaml.org,2002:str", x, style="|" if "\n" in x.rstrip("\n") else None))
_Dumper.add_representer(list, lambda d, x: _flow_if_short(d, "tag:yaml.org,2002:seq", x, d.represent_sequence))
_Dumper.add_representer(dict, lambda d, x: _flow_if_short(d, "tag:yaml.org,2002:map", x, d.represent_mapping))
