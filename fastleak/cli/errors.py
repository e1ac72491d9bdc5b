import sys


class CliError(Exception):
    """A user-facing failure: what went wrong and how to fix it."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


INTERRUPTED = 130
"""What a command returns after Ctrl-C; the process then ends by SIGINT (``fastleak.cli.main.run``)."""


def interrupted(saved: str, resume: str) -> int:
    """Say what an interrupted command kept and how to go on (on stderr); returns ``INTERRUPTED``."""
    print(f"\ninterrupted; {saved}\n  {resume}", file=sys.stderr)
    return INTERRUPTED
