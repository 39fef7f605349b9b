"""Scenario loading: exact error locations, overrides, built-ins, schema, distributions.

Every file in ``tests/broken/`` is a small broken scenario whose header names the problems the
loader must report, in order, one ``# expect: LINE:COL: path: message`` line per problem.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from otmarl import scenarios
from otmarl.scenarios import DistSpec, Scenario, ScenarioError, parse_dist
from otmarl.scenarios import schema as S

BROKEN = Path(__file__).parent / "broken"
CORPUS = sorted(BROKEN.glob("*.yaml"))

BASE = """\
name: tiny
horizon_h: 2
control_interval_s: 900
network:
  topology: {kind: grid, rows: 2, cols: 2}
nodes:
  a:
    count: 4
    battery:
      capacity_wh: 10
      min_soc: 0.1
      resume_soc: 0.2
    harvest: {kind: solar, panel_area_m2: 0.01}
    idle_power_w: 0.05
    workload:
      arrival: {kind: poisson, rate_per_h: 6}
      work_s: {uniform: [0.5, 2]}
      deadline_s: 600
"""


def errors(fn, *args, **kwargs) -> list[str]:
    """The messages of the ScenarioError that ``fn`` must raise."""
    with pytest.raises(ScenarioError) as info:
        fn(*args, **kwargs)
    return info.value.messages


def first_lines(messages: list[str]) -> list[str]:
    return [m.splitlines()[0] for m in messages]


# ------------------------------------------------------------------------------ the corpus
def test_corpus_is_large_and_every_file_states_its_expectation():
    assert len(CORPUS) >= 30
    for f in CORPUS:
        assert re.search(r"^# expect: \d+:\d+: ", f.read_text(), re.M), f.name


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_broken_file_reports_every_problem_at_its_place(path: Path):
    expected = [f"{path}:{e}" for e in re.findall(r"^# expect: (.*)$", path.read_text(), re.M)]
    messages = errors(scenarios.load, str(path))
    assert first_lines(messages) == expected
    lines = path.read_text().splitlines() or [""]
    for m in messages:  # the source line, then a caret under the column
        head, source, caret = m.splitlines()
        line, col = map(int, re.match(rf"{re.escape(str(path))}:(\d+):(\d+): ", head).groups())
        assert source == "    " + lines[line - 1]
        assert caret.rstrip() == "    " + "".join("\t" if c == "\t" else " " for c in
                                                 lines[line - 1][:col - 1]) + "^"


def test_several_problems_are_reported_in_file_order():
    messages = first_lines(errors(scenarios.load, str(BROKEN / "many-errors.yaml")))
    assert len(messages) == 6
    positions = [tuple(int(x) for x in re.search(r"\.yaml:(\d+):(\d+):", m).groups()) for m in messages]
    assert positions == sorted(positions)


def test_cli_validate_exits_2_with_the_location_and_no_traceback():
    path = BROKEN / "negative-capacity.yaml"
    proc = subprocess.run([sys.executable, "-m", "otmarl", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{path}:12:20: nodes.a.battery.capacity_wh: value -5 must be > 0" in proc.stderr


# ------------------------------------------------------------------------- loading basics
def test_base_loads_with_the_values_given():
    sc = scenarios.loads(BASE)
    assert isinstance(sc, Scenario)
    assert sc.n_nodes == 4 and sc.n_epochs == 8
    assert sc.nodes["a"].battery.capacity_wh == DistSpec("constant", (10.0,))
    assert sc.nodes["a"].workload.work_s == DistSpec("uniform", (0.5, 2.0))


def test_loads_names_the_given_filename():
    bad = BASE.replace("count: 4", "count: 0")
    assert first_lines(errors(scenarios.loads, bad)) == ["<string>:8:12: nodes.a.count: value 0 must be >= 1"]
    assert first_lines(errors(scenarios.loads, bad, "mine.yaml"))[0].startswith("mine.yaml:8:12: ")


def test_yaml_1_2_numbers_and_booleans():
    text = BASE.replace("capacity_wh: 10", "capacity_wh: 1e3").replace("  a:", "  no:").replace(
        "name: tiny", "name: '2e1'")
    sc = scenarios.loads(text)
    assert sc.nodes["no"].battery.capacity_wh.params == (1000.0,)  # PyYAML alone: the string '1e3'
    assert list(sc.nodes) == ["no"]  # PyYAML alone: the boolean False
    assert scenarios.loads(scenarios.dump_yaml(sc)).name == "2e1"  # dumped quoted


def test_anchor_and_merge_key_may_be_overridden_without_a_duplicate_error():
    text = BASE.replace("    battery:\n      capacity_wh: 10\n",
                        "    battery:\n      <<: &b {capacity_wh: 10, min_soc: 0.1}\n      capacity_wh: 12\n")
    assert scenarios.loads(text).nodes["a"].battery.capacity_wh.params == (12.0,)


def test_unknown_source_suggests_a_builtin():
    assert errors(scenarios.load, "microgrid-solr") == [
        "microgrid-solr: no such scenario file or built-in scenario; did you mean 'microgrid-solar'? "
        f"(built-ins: {', '.join(scenarios.builtin_names())})"]
    assert first_lines(errors(scenarios.builtin_path, "edge-ofload"))[0].startswith(
        "edge-ofload: no built-in scenario of that name; did you mean 'edge-offload'?")


def test_a_file_that_is_not_utf8_is_reported_without_a_traceback(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    assert errors(scenarios.load, path) == [
        f"{path}: not a UTF-8 text file (invalid continuation byte at byte 9)"]


def test_a_folder_is_not_a_scenario(tmp_path):
    assert errors(scenarios.load, tmp_path) == [f"{tmp_path}: is a folder, not a scenario file"]


# -------------------------------------------------------------------------------- files
def _scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sc" / "scenario.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_relative_files_resolve_against_the_scenario_folder_not_the_cwd(tmp_path, monkeypatch):
    path = _scenario(tmp_path, BASE.replace("{kind: solar, panel_area_m2: 0.01}",
                                            "{kind: trace, file: data/p.csv}"))
    (path.parent / "data").mkdir()
    (path.parent / "data" / "p.csv").write_text("hour,power_w\n0,1.5\n1,2.0\n")
    monkeypatch.chdir(tmp_path)
    sc = scenarios.load(path.relative_to(tmp_path))
    stored = Path(sc.nodes["a"].harvest.file)
    assert stored.is_absolute() and stored == path.parent / "data" / "p.csv"


def test_trace_csv_must_have_the_named_columns(tmp_path):
    path = _scenario(tmp_path, BASE.replace("{kind: solar, panel_area_m2: 0.01}",
                                            "{kind: trace, file: p.csv, power_column: pwr}"))
    (path.parent / "p.csv").write_text("hour,power_w\n0,1\n")
    assert first_lines(errors(scenarios.load, path)) == [
        f"{path}:13:55: nodes.a.harvest.power_column: column 'pwr' is not in the header of 'p.csv' "
        "(columns: hour, power_w); did you mean 'power_w'?"]


@pytest.mark.parametrize("kind,n", [("edge_list", 5), ("graphml", 3)])
def test_graph_file_node_count_must_match_the_classes(tmp_path, kind, n):
    path = _scenario(tmp_path, BASE.replace("{kind: grid, rows: 2, cols: 2}", f"{{kind: {kind}, file: g}}"))
    g = nx.path_graph(n)
    (nx.write_edgelist(g, path.parent / "g", data=False) if kind == "edge_list"
     else nx.write_graphml(g, path.parent / "g"))
    col = len("  topology: {kind: , file: ") + len(kind) + 1
    assert first_lines(errors(scenarios.load, path)) == [
        f"{path}:5:{col}: network.topology.file: the graph has {n} nodes, but the node classes have 4 (a: 4)"]


@pytest.mark.parametrize("kind", ["edge_list", "graphml"])
def test_graph_file_with_the_right_node_count_loads(tmp_path, kind):
    path = _scenario(tmp_path, BASE.replace("{kind: grid, rows: 2, cols: 2}", f"{{kind: {kind}, file: g}}"))
    (nx.write_edgelist(nx.cycle_graph(4), path.parent / "g", data=False) if kind == "edge_list"
     else nx.write_graphml(nx.cycle_graph(4), path.parent / "g"))
    assert scenarios.load(path).network.topology.file == str(path.parent / "g")


def test_unreadable_edge_list_is_reported_at_the_file_field(tmp_path):
    path = _scenario(tmp_path, BASE.replace("{kind: grid, rows: 2, cols: 2}", "{kind: edge_list, file: g}"))
    (path.parent / "g").write_text("a b\nb c\n")
    (msg,) = first_lines(errors(scenarios.load, path))
    assert msg == f"{path}:5:37: network.topology.file: g:1: node ids must be integers, got 'a' 'b'"


@pytest.mark.parametrize("topo", [
    {"kind": "grid", "rows": 3, "cols": 4}, {"kind": "grid", "rows": 1, "cols": 12},
    {"kind": "star"}, {"kind": "tree", "branching": 3}, {"kind": "tree", "branching": 1},
    {"kind": "complete"}, {"kind": "small_world", "k": 4, "p": 0.0},
    {"kind": "small_world", "k": 3, "p": 0.0}, {"kind": "small_world", "k": 30, "p": 0.0}])
def test_which_pairs_a_fixed_topology_links_is_the_generated_graph(topo):
    """The validator's rule for link events agrees with the graph a run builds, pair by pair."""
    from otmarl.scenarios.graphfile import linked
    from otmarl.simulator.network import make_graph
    sc = Scenario.model_validate({**yaml.safe_load(BASE), "nodes": {"a": {
        **yaml.safe_load(BASE)["nodes"]["a"], "count": 12}}, "network": {"topology": topo}})
    g, _ = make_graph(sc, np.random.default_rng(5))
    assert [[linked(topo, 12, a, b) for b in range(12)] for a in range(12)] == \
        [[g.has_edge(a, b) for b in range(12)] for a in range(12)]


def test_a_graph_file_link_event_and_edge_attributes_reach_the_run(tmp_path):
    from otmarl.simulator.world import World
    path = _scenario(tmp_path, BASE.replace("{kind: grid, rows: 2, cols: 2}", "{kind: edge_list, file: g}")
                     + "faults:\n  events:\n    - {at_h: 0.5, action: down, link: [a_3, a_0]}\n")
    (path.parent / "g").write_text("# a ring\n0 1 {'transfer_efficiency': 0.5}\n1 2\n2 3\n3 0\n")
    world = World(scenarios.load(path), seed=0)
    assert world.links.transfer_efficiency[0] == 0.5
    (events,) = world.faults.values()
    assert events == [("link", 1, True)]        # links sorted by end pair: (0,1), (0,3), ...


# ---------------------------------------------------------------------------- overrides
def test_overrides_change_values_and_create_optional_sections():
    sc = scenarios.loads(BASE, overrides=[
        "nodes.a.battery.capacity_wh=8000", "horizon_h=24", "controller.policy=ot",
        "nodes.a.harvest.panel_area_m2={uniform: [5, 10]}", "faults.random.node_mtbf_h=100"])
    assert sc.nodes["a"].battery.capacity_wh == DistSpec("constant", (8000.0,))
    assert sc.horizon_h == 24 and sc.controller.policy == "ot"
    assert sc.nodes["a"].harvest.panel_area_m2 == DistSpec("uniform", (5.0, 10.0))
    assert sc.faults.random.node_mtbf_h == 100


def test_later_override_wins_and_lists_can_be_indexed():
    sc = scenarios.loads(BASE + "faults:\n  events:\n    - {at_h: 1, action: down, node: a_0}\n",
                         overrides=["horizon_h=4", "horizon_h=6", "faults.events.0.node=a_3"])
    assert sc.horizon_h == 6 and sc.faults.events[0].node == "a_3"


def test_override_with_an_unknown_key_names_the_override():
    assert errors(scenarios.loads, BASE, overrides=["nodes.a.batery.capacity_wh=5"]) == [
        "--set nodes.a.batery.capacity_wh=5: unknown key 'batery'; did you mean 'battery'?\n"
        "    --set nodes.a.batery.capacity_wh=5\n"
        "                  ^"]


def test_override_suggests_the_field_a_short_key_abbreviates():
    assert first_lines(errors(scenarios.loads, BASE, overrides=["nodes.a.workload.arrival.rate=5"])) == [
        "--set nodes.a.workload.arrival.rate=5: unknown key 'rate'; did you mean 'rate_per_h'?"]


def test_key_missing_from_a_mapping_an_override_created_is_reported_against_it():
    no_workload = BASE[:BASE.index("    workload:")]
    assert first_lines(errors(scenarios.loads, no_workload, overrides=[
        "nodes.a.workload.arrival.kind=poisson"])) == [
        "--set nodes.a.workload.arrival.kind=poisson: nodes.a.workload.arrival.rate_per_h: "
        "required key is missing"]


@pytest.mark.parametrize("override,expected", [
    ("nodes.b.count=3", "--set nodes.b.count=3: nodes has no 'b' (it has: a)"),
    ("nodes.a.count.x=3", "--set nodes.a.count.x=3: nodes.a.count is a single value; it has no key 'x'"),
    ("faults.events.0.at_h=1", "--set faults.events.0.at_h=1: faults.events has 0 item(s); there is no item 0"),
    ("horizon_h", "--set horizon_h: expected dotted.path=value, e.g. horizon_h=24"),
    ("name={a: b", "--set name={a: b: cannot read the value as YAML: expected ',' or '}', but got '<stream end>'"),
])
def test_malformed_overrides(override, expected):
    assert first_lines(errors(scenarios.loads, BASE, overrides=[override])) == [expected]


def test_invalid_override_value_is_reported_against_the_override():
    assert first_lines(errors(scenarios.loads, BASE, overrides=[
        "nodes.a.battery.capacity_wh=-5", "horizon_h=2.1",
        "nodes.a.queue={capacity: 0}"])) == [
        "--set nodes.a.battery.capacity_wh=-5: value -5 must be > 0",
        "--set horizon_h=2.1: value 2.1 h is not a whole number of control epochs of "
        "control_interval_s=900 s (8.4 epochs)",
        "--set nodes.a.queue={capacity: 0}: nodes.a.queue.capacity: value 0 must be >= 1"]


def test_file_problems_come_before_override_problems():
    bad = BASE.replace("count: 4", "count: 0")
    assert first_lines(errors(scenarios.loads, bad, overrides=["horizon_h=x"])) == [
        "<string>:8:12: nodes.a.count: value 0 must be >= 1",
        "--set horizon_h=x: expected a number, got the string 'x'"]


# ----------------------------------------------------------------------------- built-ins
EXPECTED_BUILTINS = {"microgrid-solar": 10, "edge-offload": 100, "sensor-field": 1000}


def test_builtin_names():
    assert set(EXPECTED_BUILTINS) <= set(scenarios.builtin_names())
    for name in scenarios.builtin_names():
        assert scenarios.builtin_path(name).is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED_BUILTINS))
def test_builtin_loads_and_round_trips_through_yaml(name):
    sc = scenarios.load(name)
    assert sc.name == name and sc.n_nodes == EXPECTED_BUILTINS[name]
    assert scenarios.loads(scenarios.dump_yaml(sc)) == sc


def _tasks_per_day(sc: Scenario) -> float:
    total = 0.0
    for c in sc.nodes.values():
        a = c.workload.arrival
        rate = (a.rate_per_h if a.kind == "poisson" else
                (a.on_rate_per_h * a.mean_on_h + a.off_rate_per_h * a.mean_off_h) / (a.mean_on_h + a.mean_off_h))
        total += rate * c.count * 24
    return total


@pytest.mark.parametrize("name,interval,lo,hi", [("edge-offload", 300, 1e5, 3e5),
                                                 ("sensor-field", 900, 1e5, 2e5)])
def test_new_builtins_are_sized_as_specified(name, interval, lo, hi):
    sc = scenarios.load(name)
    assert sc.horizon_h == 24 and sc.control_interval_s == interval
    assert lo <= _tasks_per_day(sc) <= hi
    assert sc.network.topology.kind in ("random_geometric", "small_world")


def test_builtin_errors_name_the_builtin_file_not_a_machine_path():
    # the override makes the file's tree topology a grid: the file's mapping lacks rows and cols
    # and has a key a grid does not know
    assert first_lines(errors(scenarios.load, "microgrid-solar", ["network.topology.kind=grid"])) == [
        "microgrid-solar.yaml:17:3: network.topology.rows: required key is missing",
        "microgrid-solar.yaml:17:3: network.topology.cols: required key is missing",
        "microgrid-solar.yaml:17:26: network.topology.branching: unknown key 'branching'"]


def test_json_schema_is_plain_json_without_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schema = scenarios.json_schema()
    assert caught == []
    assert {"horizon_h", "network", "nodes"} <= set(schema["properties"])
    assert set(schema["required"]) == {"horizon_h", "network", "nodes"}
    assert schema["$defs"]["Battery"]["properties"]["capacity_wh"]["description"] == "Usable capacity, Wh."
    json.dumps(schema)


def test_dump_yaml_round_trips_every_distribution_kind_and_tuples(tmp_path):
    text = BASE.replace("capacity_wh: 10", "capacity_wh: {lognormal: {median: 10, sigma: 0.2}}").replace(
        "deadline_s: 600", "deadline_s: {exponential: {mean: 600}}\n"
        "      priority: {normal: {mean: 0, std: 1}}\n"
        "      data_kb: {choice: {values: [1, 2], weights: [3, 1]}}") + (
        "faults:\n  events:\n    - {at_h: 1, action: down, link: [a_0, a_1]}\n")
    sc = scenarios.loads(text)
    assert sc.nodes["a"].workload.priority.support() == (-np.inf, np.inf)
    assert scenarios.loads(scenarios.dump_yaml(sc)) == sc


# ------------------------------------------------------------ the Python API is protected
def test_schema_validators_protect_direct_construction():
    with pytest.raises(ValidationError, match=r"min_soc: value 0.5 must be <= resume_soc=0.2"):
        S.Battery(capacity_wh=5, min_soc=0.5, resume_soc=0.2)
    data = scenarios.loads(BASE).model_dump()
    data["faults"] = {"events": [{"at_h": 1, "action": "down", "node": "a_9"}]}
    with pytest.raises(ValidationError, match=r"faults.events.0.node: unknown node 'a_9'"):
        Scenario.model_validate(data)


# -------------------------------------------------------------------------- distributions
SPECS = [
    ({"uniform": [2, 5]}, 3.5),
    ({"normal": {"mean": 3, "std": 2}}, 3.0),
    ({"normal": {"mean": 3, "std": 2, "low": 0, "high": 10}}, None),
    ({"lognormal": {"median": 2, "sigma": 0.5}}, 2 * np.exp(0.125)),
    ({"exponential": {"mean": 3}}, 3.0),
    ({"choice": [1, 2, 4]}, 7 / 3),
    ({"choice": {"values": [1, 2], "weights": [3, 1]}}, 1.25),
    (5, 5.0),
]


@pytest.mark.parametrize("raw,hand_mean", SPECS, ids=[str(r) for r, _ in SPECS])
def test_sample_mean_matches_mean(raw, hand_mean):
    d = parse_dist(raw)
    if hand_mean is not None:
        np.testing.assert_allclose(d.mean(), hand_mean, rtol=1e-12)
    x = d.sample(np.random.default_rng(12345), 200_000)
    assert x.dtype == np.float64 and x.shape == (200_000,)
    lo, hi = d.support()
    assert lo <= x.min() and x.max() <= hi
    stderr = x.std() / np.sqrt(len(x))
    assert abs(x.mean() - d.mean()) <= 5 * stderr + 1e-12
    assert parse_dist(d.to_yaml()) == d


def test_truncated_normal_stays_in_bounds_and_reaches_them():
    from scipy.stats import norm

    d = parse_dist({"normal": {"mean": 0, "std": 5, "low": -1, "high": 2}})
    x = d.sample(np.random.default_rng(7), 100_000)
    assert x.min() >= -1 and x.max() <= 2
    assert x.min() < -0.99 and x.max() > 1.99
    a, b = -1 / 5, 2 / 5  # textbook mean of a truncated normal: mu + sigma (phi(a) - phi(b)) / (Phi(b) - Phi(a))
    mean = 5 * (norm.pdf(a) - norm.pdf(b)) / (norm.cdf(b) - norm.cdf(a))
    np.testing.assert_allclose(d.mean(), mean, rtol=1e-9)
    assert abs(x.mean() - mean) <= 5 * x.std() / np.sqrt(len(x))


def test_open_support_distributions_satisfy_a_strict_positive_bound():
    for raw in ({"lognormal": {"median": 5, "sigma": 1}}, {"exponential": {"mean": 2}}):
        text = BASE.replace("capacity_wh: 10", f"capacity_wh: {json.dumps(raw)}")
        assert scenarios.loads(text).nodes["a"].battery.capacity_wh == parse_dist(raw)
