"""``python -m otmarl``: the same command line as ``otmarl`` (see otmarl/cli.py)."""
import sys

from otmarl.cli import main

sys.exit(main())
