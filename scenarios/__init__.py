"""Scenarios: the typed schema, loading YAML with ``FILE:LINE:COL`` errors, ``--set`` overrides and
the built-in scenario library.

>>> from otmarl import scenarios
>>> sc = scenarios.load("microgrid-solar", overrides=["horizon_h=24"])
>>> sc.n_nodes
10
"""
from __future__ import annotations

from .distributions import DistSpec, parse_dist
from .errors import ScenarioError
from .loader import builtin_names, builtin_path, dump_yaml, json_schema, load, loads
from .schema import Scenario

__all__ = ["DistSpec", "Scenario", "ScenarioError", "builtin_names", "builtin_path", "dump_yaml",
           "json_schema", "load", "loads", "parse_dist"]
