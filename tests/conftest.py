"""Shared test helpers. CLI tests call ``otmarl.cli.main`` in the test process (seconds saved per
call: no interpreter start, no re-import); a few end-to-end tests still start ``python -m otmarl``
to check the real exit code and that no traceback reaches the user."""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    """``otmarl ARGS`` in this process; argparse's own exits (usage errors) become exit codes."""
    from otmarl.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:       # argparse: usage errors exit 2, --help and --version 0
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return CliResult(code, out.getvalue(), err.getvalue())


def run_cli_process(*args: str) -> CliResult:
    """``python -m otmarl ARGS`` in a new process (end-to-end tests only)."""
    p = subprocess.run([sys.executable, "-m", "otmarl", *args], capture_output=True, text=True)
    return CliResult(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def cli():
    """Call as ``cli("run", "microgrid-solar", ...)``; returns a ``CliResult``."""
    return run_cli


@pytest.fixture
def cli_process():
    """Like ``cli``, in a new process (end-to-end tests only)."""
    return run_cli_process
