"""The exception hierarchy. Every otmarl error derives from ``OtmarlError``.

``UserError`` and its subclasses are mistakes in the user's input: the CLI prints them without a
traceback and exits with code 2. Anything else is an internal error (exit code 1).
"""
from __future__ import annotations


class OtmarlError(Exception):
    """Base of every error otmarl raises on purpose."""


class UserError(OtmarlError):
    """Bad input from the user (a file, an option, an override): exit code 2."""


class ScenarioError(UserError):
    """A scenario (or sweep) file that does not validate.

    ``messages`` holds one formatted line per problem, each ``FILE:LINE:COL: dotted.path: message``
    followed by the source line and a caret, so that all problems are reported at once.
    """

    def __init__(self, messages: list[str]):
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


class InvariantError(OtmarlError):
    """A run broke one of the model's invariants (an internal error: exit code 1)."""


class DecisionError(OtmarlError):
    """A controller returned a decision the world cannot carry out."""
