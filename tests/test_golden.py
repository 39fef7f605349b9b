"""Nothing changes for users: the built-ins' summaries under every controller, on a short horizon,
equal the ones recorded before the redesign (tests/golden/summaries.json, written by
``python benchmarks/golden.py record``). A change on purpose is re-recorded and listed in the note."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("golden", ROOT / "benchmarks" / "golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)


@pytest.mark.parametrize("scenario", golden.SCENARIOS)
def test_summaries_equal_the_recorded_ones(scenario):
    recorded = json.loads(golden.GOLDEN.read_text())["quick"]
    now = golden.summaries("quick", scenarios=(scenario,))
    changed = [f"{key}{line}" for key, s in now.items()
               for line in golden.diff(recorded[key]["summary"], s)]
    assert not changed, "\n".join(changed[:20])
