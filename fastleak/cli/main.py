from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable

from fastleak.cli import threads
from fastleak.cli.errors import INTERRUPTED, CliError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and shows every option's default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or any(action.default is v for v in (None, False,
                                                                                                 argparse.SUPPRESS)):
            return text
        return text + " (default: %(default)s)"


DEBUG_HELP = "show the full traceback of any error (default: one line for a mistake in the input)"


class _Version(argparse.Action):
    """Like argparse's version action, but the report (which loads torch) is made only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from fastleak import info

        print(info())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from fastleak.cli import commands

    parser = argparse.ArgumentParser(
        prog="fastleak", formatter_class=HelpFormatter,
        description="Fast gradient-inversion attacks on federated learning.",
        epilog="examples:\n  fastleak demo\n  fastleak attack --model lenet --preset dlg --batch 1\n"
               "  fastleak labels --batch 32 --labels repeat:4\n"
               "  fastleak audit captured.obs --model mypkg.nets:Net --state-dict net.pt\n"
               "run 'fastleak COMMAND --help' for a command's options and examples")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("--version", action=_Version, help="show the version, the torch the extension was built "
                        "against, its kernels and the threading policy, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in commands.COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help, epilog=command.examples,
                           formatter_class=HelpFormatter)
        command.configure(p)
        p.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch CPU threads (default: one per core that is free when the command starts; "
                            "idle threads sleep, so other work on the machine does not stall the run)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        p.set_defaults(handler=command.run)
    return parser


def _check_device(device: str | None) -> None:
    """A CUDA device asked for where torch cannot give one is a one-line error, not a traceback."""
    if not device or not str(device).startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        why = "is a CPU-only build" if torch.version.cuda is None else "sees no CUDA device"
        raise CliError(f"--device {device}: this torch ({torch.__version__}) {why}",
                       "leave out --device to run on the CPU, or install a CUDA build of torch and rebuild "
                       "fastleak (README, 'GPU build')")


def _fix_for_input_error(exc: Exception, command: str) -> str | None:
    """How to fix ``exc`` when it is a mistake in the input; None when it is an internal error."""
    from fastleak.data.errors import DatasetError
    from fastleak.errors import InvalidInputError

    if isinstance(exc, CliError):
        return exc.fix
    if isinstance(exc, DatasetError):
        return ("put the files in the layout named above (README, 'Datasets on disk'), or leave out "
                "--data-root and FASTLEAK_DATA to use the shipped samples")
    if isinstance(exc, (InvalidInputError, FileNotFoundError)):
        return f"check the option values; see 'fastleak {command} --help'"
    return None


def main(argv: list[str] | None = None) -> int:
    wait = threads.set_wait_policy()  # before anything imports torch
    if os.getcwd() not in sys.path:  # as `python -m` does: MODULE:CLASS models resolve from here
        sys.path.insert(0, os.getcwd())
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        args.thread_policy = str(threads.apply(args.threads, wait))
        _check_device(getattr(args, "device", None))
        return handler(args)
    except Exception as exc:
        if args.debug:
            raise
        fix = _fix_for_input_error(exc, args.command)
        if fix is None:
            print(f"fastleak: unexpected error: {type(exc).__name__}: {exc}\n  rerun with --debug for the "
                  "traceback; unless it points into your own code (a --model class), please report it as a "
                  "fastleak bug", file=sys.stderr)
            return 1
        print(f"fastleak: error: {exc}\n  fix: {fix}", file=sys.stderr)
        return 2


def run() -> None:
    """The process of ``fastleak`` and ``python -m fastleak``: exits with ``main``'s code, except that after
    Ctrl-C, once the command has said what it kept, the process ends by SIGINT as a shell expects of it
    (a script that loops over runs stops too, and the shell's ``$?`` is 130)."""
    try:
        code = main()
    except KeyboardInterrupt:  # before a command took over: nothing to keep or say
        code = INTERRUPTED
    if code == INTERRUPTED:
        _end_by_sigint()
    sys.exit(code)


def _end_by_sigint() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    run()
