"""The ``fastleak`` command line: demo, attack, train, labels, audit, bench and sweep.

Errors are reported as one line plus the fix, with a non-zero exit code; only this package prints.
"""
from fastleak.cli.main import main, run

__all__ = ["main", "run"]
