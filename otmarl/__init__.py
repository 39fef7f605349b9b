"""otmarl: an energy-aware resource allocation simulator where optimal transport and MARL work together."""
from __future__ import annotations

__version__ = "0.1.0"
