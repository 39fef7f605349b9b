"""Optional dependencies of the MARL subpackage, imported lazily with an error that says how to
install them (the simulator and the baselines never need them)."""
from __future__ import annotations

import importlib
from types import ModuleType

from otmarl.scenarios.errors import UserError

INSTALL_HINT = "install the marl extra: pip install -c constraints.txt -e '.[marl]'"


def require(module: str, what: str = "MARL") -> ModuleType:
    """Import ``module`` or raise a UserError naming it and the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise UserError(f"{what} needs the '{top}' package ({e}); {INSTALL_HINT}") from None


def torch() -> ModuleType:
    return require("torch", "MARL training and trained policies")
