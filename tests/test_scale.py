"""What keeps large runs fast and small must not change a run: a narrow recorder (float32
series, float64 sums) against an exact one, tables made one at a time, the radix sort of the
fast engine, sampled encoding choices, and the topology built without networkx."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from otmarl.policies import make_controller
from otmarl.run import DISTINCT_SAMPLE, _few_distinct
from otmarl.scenarios import load
from otmarl.scenarios.schema import RUN_TABLES
from otmarl.simulator.engine_fast import stable_order
from otmarl.simulator.network import make_graph, make_links, make_topology
from otmarl.simulator.simulate import Simulation, run_meta, run_to_end


def _finished(narrow: bool) -> tuple[Simulation, object]:
    sc = load("edge-offload", overrides=["horizon_h=3"])
    c = make_controller("greedy")
    return run_to_end(Simulation(sc, 4, narrow=narrow), c), c


def test_a_narrow_recorder_gives_the_summary_and_narrow_tables_of_an_exact_one():
    exact, c = _finished(False)
    narrow, _ = _finished(True)
    assert narrow.recorder.checked_summary(run_meta(narrow, c)) == exact.recorder.checked_summary(run_meta(exact, c))
    for name in RUN_TABLES:
        pd.testing.assert_frame_equal(narrow.recorder.table(name, True), exact.recorder.table(name, True),
                                      check_exact=True, obj=name)
    assert narrow.recorder.series["consumed_idle_wh"].dtype == np.float32
    with pytest.raises(ValueError, match="exact tables are gone"):
        narrow.recorder.table("timeseries", False)


def test_releasing_the_series_after_the_timeseries_keeps_the_other_tables():
    sim, _ = _finished(True)
    whole = {t: sim.recorder.table(t, True) for t in RUN_TABLES}
    sim2, _ = _finished(True)
    for t in RUN_TABLES:
        pd.testing.assert_frame_equal(sim2.recorder.table(t, True, release=True), whole[t], obj=t)
    assert not sim2.recorder.series


@pytest.mark.parametrize("high", [1, 300, 65_536, 70_000, 2**32 - 1, 2**40])
def test_stable_order_is_numpys_stable_argsort(high):
    key = np.random.default_rng(high).integers(0, high, 5000, dtype=np.int64)
    assert np.array_equal(stable_order(key), np.argsort(key, kind="stable"))


def test_distinct_values_are_judged_on_a_sample_of_long_columns_only():
    many = pa.array(np.tile(np.arange(200.0), 10))         # 2000 rows, 200 distinct: > 1/16
    assert not _few_distinct(many) and _few_distinct(pa.array(np.tile(np.arange(100.0), 20)))
    n = 4 * DISTINCT_SAMPLE
    # every distinct value sits off the sampled rows (multiples of 4): the sample sees one value
    x = np.zeros(n)
    x[1::4] = np.arange(n // 4)
    assert _few_distinct(pa.array(x))


def test_a_random_geometric_topology_is_networkxs_graph():
    sc = load("sensor-field", overrides=["nodes.sensor.count=300", "nodes.shaded.count=60",
                                         "nodes.head.count=20", "network.topology.radius=0.09"])
    for seed in range(3):
        topo = make_topology(sc, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        rng.integers(2**31 - 1)
        pos = rng.uniform(0.0, 1.0, (sc.n_nodes, 2))
        g = nx.random_geometric_graph(sc.n_nodes, 0.09, pos={i: tuple(p) for i, p in enumerate(pos)})
        missing = {(min(a, b), max(a, b)) for a, b in g.edges} - {tuple(e) for e in topo.edges.tolist()}
        assert not missing and np.array_equal(topo.positions(), pos)
        added = len(topo.edges) - g.number_of_edges()      # links joining the components
        assert added == nx.number_connected_components(g) - 1
        assert nx.is_connected(make_graph(sc, np.random.default_rng(seed))[0])
        links = make_links(topo, sc.network.link, np.random.default_rng(seed))
        assert np.all(links.u < links.v) and len(links) == len(topo.edges)
