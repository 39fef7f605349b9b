"""Every subpackage folder is listed in setup.cfg (an unlisted one imports in an editable install
but is missing from the wheel), and the layering arrows point one way."""
from __future__ import annotations

import ast
import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {"otmarl": "otmarl", "scenarios": "otmarl.scenarios", "simulator": "otmarl.simulator",
         "policies": "otmarl.policies", "analysis": "otmarl.analysis"}
# what each room may import from otmarl (scenarios <- simulator <- policies; analysis reads outputs).
# policies may import analysis: the MARL reward (Jain) and evaluation (mean and CI) use the one
# definition of each statistic in analysis.stats. No cycle: analysis imports only scenarios.
ALLOWED = {"scenarios": {"scenarios"}, "simulator": {"scenarios", "simulator"},
           "policies": {"scenarios", "simulator", "analysis", "policies"},
           "analysis": {"scenarios", "analysis"},
           "otmarl": {"scenarios", "simulator", "policies", "analysis", "otmarl"}}


def _cfg():
    c = configparser.ConfigParser()
    c.read(ROOT / "setup.cfg")
    return c


def test_every_package_folder_is_listed():
    listed = set(_cfg()["options"]["packages"].split())
    found = set()
    for folder, name in ROOMS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == listed, f"in folders not setup.cfg: {found - listed}; listed but absent: {listed - found}"


def test_package_dir_maps_the_fixed_folders():
    pd = dict(line.split("=") for line in _cfg()["options"]["package_dir"].split("\n") if "=" in line)
    assert {k.strip(): v.strip() for k, v in pd.items()} == {v: k for k, v in ROOMS.items()}


def _otmarl_imports(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        mods = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods = [node.module]
        elif isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        for m in mods:
            parts = m.split(".")
            if parts[0] == "otmarl":
                rooms.add(parts[1] if len(parts) > 1 and parts[1] in ROOMS else "otmarl")
    return rooms


def test_imports_point_one_way():
    bad = []
    for folder in ROOMS:
        for py in (ROOT / folder).rglob("*.py"):
            extra = _otmarl_imports(py) - ALLOWED[folder]
            if extra:
                bad.append(f"{py.relative_to(ROOT)} imports {sorted(extra)}")
    assert not bad, bad


def test_the_arrows_have_no_cycle():
    """Whatever the table allows, no room may reach itself through another one."""
    def reach(room: str, seen: set[str]) -> set[str]:
        for nxt in ALLOWED[room] - {room} - seen:
            seen.add(nxt)
            reach(nxt, seen)
        return seen
    assert all(room not in reach(room, set()) for room in ALLOWED)
