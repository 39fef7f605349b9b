"""otmarl: an energy-aware resource allocation simulator where optimal transport and MARL work together.

The verbs of the command line, as functions::

    from otmarl import load, simulate, make_controller, report, metrics
    from otmarl.run import run            # write a run folder
    from otmarl.compare import compare    # policies across seeds
    from otmarl.sweep import sweep        # parameter grids, locally or on Dask
"""
from __future__ import annotations

import os

# otmarl hands POT numpy arrays only. POT imports every array library it finds (torch, JAX,
# TensorFlow, CuPy) to offer them as backends, which costs seconds at every process start (each
# sweep worker, each CLI call) once the `marl` extra is installed. A user's own setting wins.
for _lib in ("PYTORCH", "JAX", "TENSORFLOW", "CUPY"):
    os.environ.setdefault(f"POT_BACKEND_DISABLE_{_lib}", "1")

__version__ = "0.1.0"

_API = {
    "load": ("otmarl.scenarios", "load"),
    "Scenario": ("otmarl.scenarios", "Scenario"),
    "simulate": ("otmarl.simulator", "simulate"),
    "Simulation": ("otmarl.simulator", "Simulation"),
    "make_controller": ("otmarl.policies", "make_controller"),
    "report": ("otmarl.analysis", "report"),
    "metrics": ("otmarl.analysis", "metrics"),
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    """Import the public API lazily, so that ``import otmarl`` stays cheap."""
    if name in _API:
        import importlib
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'otmarl' has no attribute {name!r}")
