"""The subcommands, one module each. Importing them registers them in ``COMMANDS``; help lists them
in this import order."""
from fastleak.cli.commands import demo, attack, train, audit, inspect, labels, bench, sweep  # noqa: F401,I001
from fastleak.cli.commands.registry import COMMANDS

__all__ = ["COMMANDS"]
