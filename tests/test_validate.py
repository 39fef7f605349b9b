"""Validate is a promise: what run would reject, validate rejects first (exit 2, located, no
traceback). Here: the memory estimate, and local times around clock changes."""
from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from otmarl import scenarios
from otmarl.scenarios import ScenarioError
from otmarl.scenarios.footprint import expected_tasks, memory_estimate_bytes, memory_problem
from otmarl.scenarios.loader import local_time_problem


def test_expected_tasks_by_hand():
    sc = scenarios.load("sensor-field", overrides=["horizon_h=2"])
    by_class = {c: nc.count for c, nc in sc.nodes.items()}
    # sensor: bursty 12/h on for 1 h, 4/h off for 2 h -> 20/3 per h; shaded 5/h; head 4/h
    want = 2 * (by_class["sensor"] * 20 / 3 + by_class["shaded"] * 5 + by_class["head"] * 4)
    assert expected_tasks(sc) == pytest.approx(want, rel=1e-12)


def test_a_run_too_large_for_the_memory_is_refused_with_the_estimate():
    sc = scenarios.load("sensor-field")
    need = memory_estimate_bytes(sc)
    assert memory_problem(sc, available=need * 1.01) is None
    msg = memory_problem(sc, available=need / 2)
    assert msg and "1,000 nodes x 96 epochs" in msg and "shorten horizon_h" in msg


def test_validate_refuses_ten_million_nodes_before_running(cli):
    r = cli("validate", "sensor-field", "--set", "nodes.sensor.count=10000000")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert re.search(r"needs about [\d,.]+ GB of memory, and this machine has [\d,.]+ [GM]B available",
                     r.stderr), r.stderr
    with pytest.raises(ScenarioError):
        scenarios.load("sensor-field", overrides=["nodes.sensor.count=10000000"])


@pytest.mark.parametrize("when, zone, verdict", [
    ("2024-03-31T02:30", "Europe/Berlin", "does not exist"),        # spring forward
    ("2024-10-27T02:30", "Europe/Berlin", "happens twice"),         # fall back
    ("2024-03-10T02:15", "America/New_York", "does not exist"),
    ("2024-11-03T01:30", "America/New_York", "happens twice"),
    ("2024-10-06T02:10", "Australia/Lord_Howe", "does not exist"),  # a 30-minute shift
    ("2024-03-31T03:30", "Europe/Berlin", None),
    ("2024-06-21T00:00", "UTC", None),
])
def test_local_times_at_clock_changes(when, zone, verdict):
    msg = local_time_problem(datetime.fromisoformat(when), ZoneInfo(zone), zone)
    if verdict is None:
        assert msg is None
    else:
        assert verdict in msg, msg


def test_the_offsets_offered_for_a_repeated_hour_are_the_two_instants():
    msg = local_time_problem(datetime(2024, 11, 3, 1, 30), ZoneInfo("America/New_York"), "America/New_York")
    first, second = re.findall(r"(\S+[+-]\d\d:\d\d) \(the (?:first|second)\)", msg)
    a, b = datetime.fromisoformat(first), datetime.fromisoformat(second)
    assert (b - a).total_seconds() == 3600                      # one hour apart, in that order
    sc = scenarios.load("microgrid-solar", overrides=[f"start={first}", "horizon_h=1",
                                                      "location.timezone=America/New_York"])
    assert sc.start.utcoffset().total_seconds() == -4 * 3600


def test_the_skipped_hour_alternatives_are_valid_times():
    msg = local_time_problem(datetime(2024, 10, 6, 2, 10), ZoneInfo("Australia/Lord_Howe"), "Australia/Lord_Howe")
    assert "clocks skip 30 min" in msg
    for alt in re.findall(r"use (\S+) or (\S+),", msg)[0]:
        assert local_time_problem(datetime.fromisoformat(alt), ZoneInfo("Australia/Lord_Howe"),
                                  "Australia/Lord_Howe") is None


def _unbounded_numbers(node, path=()):
    if isinstance(node, dict):
        if node.get("type") in ("number", "integer") and not any(
                k in node for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            yield ".".join(map(str, path))
        for k, v in node.items():
            yield from _unbounded_numbers(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _unbounded_numbers(v, path + (i,))


def test_every_number_of_the_json_schema_has_its_bounds():
    schema = scenarios.json_schema()
    assert list(_unbounded_numbers(schema)) == []
    assert schema["$defs"]["RandomParams"]["properties"]["p_act"]["maximum"] == 1
    params = schema["$defs"]["OTParams"]["properties"]
    assert params["reg"]["exclusiveMinimum"] == 0
    assert set(params["solver"]["enum"]) == {"exact", "network", "sinkhorn", "unbalanced", "hierarchical"}
    cap = schema["$defs"]["Battery"]["properties"]["capacity_wh"]["anyOf"]
    assert cap[0]["exclusiveMinimum"] == 0 and cap[1]["properties"]["uniform"]["items"]["exclusiveMinimum"] == 0
    soc = schema["$defs"]["Battery"]["properties"]["initial_soc"]["anyOf"][0]
    assert (soc["minimum"], soc["maximum"]) == (0, 1)


def test_the_controller_section_is_a_union_over_the_policies_each_with_its_own_params():
    from otmarl.policies import REGISTRY
    from otmarl.scenarios.controllers import CONTROLLERS, PARAMS
    schema = scenarios.json_schema()
    members = [m["$ref"].rsplit("/", 1)[1] for m in schema["properties"]["controller"]["oneOf"]]
    policies = {}
    for name in members:
        section = schema["$defs"][name]
        pol = section["properties"]["policy"]
        policies[pol.get("const", pol.get("pattern"))] = section["properties"]["params"]
        assert section["additionalProperties"] is False
        assert name == "LocalSection" or section["required"] == ["policy"]
    assert set(policies) == set(CONTROLLERS) | {"^marl:.+"} and set(CONTROLLERS) == set(REGISTRY)
    assert policies["local"]["$ref"].endswith("/LocalParams") and policies["mpc"]["$ref"].endswith("/MPCParams")
    assert schema["$defs"]["LocalParams"].get("properties", {}) == {}
    assert "solver" not in schema["$defs"]["MarketParams"]["properties"]
    assert set(PARAMS["ot"].model_fields) > set(PARAMS["greedy"].model_fields)


@pytest.mark.parametrize("overrides, message", [
    (["controller.params.solver=sinkhorn"],
     "controller.params.solver=sinkhorn: 'solver' is not a parameter of local; it is read by ot, marl:DIR"),
    (["controller.policy=greedy", "controller.params.solvr=sinkhorn"],
     "unknown key 'solvr'; did you mean 'solver' (read by ot, marl:DIR)? (greedy reads: energy,"),
    (["controller.params.solvr=sinkhorn", "controller.policy=ot"], "unknown key 'solvr'; did you mean 'solver'?"),
    (["controller.policy=oot"], "unknown policy 'oot'; did you mean 'ot'?"),
    (["controller.policy=mpc", "controller.params.mpc_horizon=0"], "mpc_horizon=0: value 0 must be >= 1"),
])
def test_controller_params_are_checked_for_the_policy_that_reads_them(cli, overrides, message):
    r = cli("validate", "microgrid-solar", *[a for o in overrides for a in ("--set", o)])
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_running_another_policy_keeps_the_parameters_it_shares(tmp_path):
    from otmarl.scenarios.controllers import with_policy
    sc = scenarios.load("microgrid-solar", ["controller.policy=ot", "controller.params.solver=sinkhorn",
                                            "controller.params.high_soc=0.7"])
    greedy = with_policy(sc.controller, "greedy")
    assert greedy.policy == "greedy" and greedy.params.high_soc == 0.7 and not hasattr(greedy.params, "solver")
    assert dict(with_policy(greedy, "local").params) == {}
    assert with_policy(greedy, "ot").params.solver == "exact"      # greedy had none: ot's default
    for_local = scenarios.load("microgrid-solar", ["controller.params.solver=sinkhorn"], policy="ot")
    assert for_local.controller.params.solver == "sinkhorn"        # --policy ot --set ... works
    assert dict(scenarios.load("microgrid-solar", ["controller.policy=ot", "controller.params.solver="
                                                   "sinkhorn"], policy="local").controller.params) == {}


def test_every_controller_section_pickles_by_reference(recwarn):
    """Process pools and Dask ship scenarios by pickle: a section class copied by value would be
    another class, and serialising the scenario would warn."""
    import pickle
    from otmarl.scenarios.controllers import CONTROLLERS, with_policy
    sc = scenarios.load("microgrid-solar", ["horizon_h=1"])
    for policy in (*CONTROLLERS, "marl:runs/x"):
        one = sc.model_copy(update={"controller": with_policy(sc.controller, policy)})
        back = pickle.loads(pickle.dumps(one))
        assert type(back.controller) is type(one.controller) and back.model_dump_json() == one.model_dump_json()
    assert not [w for w in recwarn if "serializ" in str(w.message)]
