"""The README's claims about the code, checked against the code: every ``fastleak ...`` command line
parses with the real parser, every flag it names exists, its lists of ops, presets, label methods
and datasets are what the registries hold, and the demo's time is the demo command's own figure."""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
# Flags the README names for other programs than fastleak: flag -> the program.
OTHER_PROGRAMS_FLAGS = {"--no-build-isolation": "pip", "--ablate": "python -m benchmarks.bench_attack"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")  # COMMAND, OUT, ... stand for a value the reader picks


def readme() -> str:
    return README.read_text(encoding="utf-8")


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def inline_spans(text: str) -> list[str]:
    """The README's inline code spans (outside the fenced blocks)."""
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.findall(r"`([^`\n]+)`", prose)


def command_lines(text: str) -> list[tuple[str, bool]]:
    """Every ``fastleak ...`` (or ``python -m fastleak ...``) command line, with whether it is a whole
    command (a code-block line) or may leave out required options (an inline mention such as
    `fastleak audit --threat malicious`). Program output (``fastleak 0.1.0``) is not a command."""
    candidates = [(line.strip(), True) for block in code_blocks(text) for line in block.splitlines()]
    candidates += [(span.strip(), False) for span in inline_spans(text)]
    lines = []
    for line, whole in candidates:
        line = re.sub(r"\s+#.*$", "", re.sub(r"^python -m fastleak\b", "fastleak", line))
        if re.match(r"fastleak(\s|$)", line) and not re.match(r"fastleak \d+\.\d+", line):
            lines.append((line, whole))
    return lines


def parser() -> argparse.ArgumentParser:
    """The CLI's parser, taking whole option names only (the README must not rely on abbreviations)."""
    from fastleak.cli.main import build_parser

    top = build_parser()
    for p in (top, *subparsers(top).values()):
        p.allow_abbrev = False
    return top


def subparsers(top: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def expand(tokens: list[str], commands: list[str]) -> list[list[str]]:
    """A placeholder in the command's place (``fastleak COMMAND --help``) stands for every command."""
    first = next((i for i, t in enumerate(tokens) if not t.startswith("-")), None)
    if first is not None and PLACEHOLDER.match(tokens[first]):
        return [tokens[:first] + [c] + tokens[first + 1:] for c in commands]
    return [tokens]


def parse_error(top: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """argparse's error for ``fastleak ARGV``, or None when it parses (``--help``/``--version``
    parse as well: they exit with 0)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            top.parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return err.getvalue().strip().splitlines()[-1]
    return None


def test_the_readme_names_fastleak_command_lines():
    lines = command_lines(readme())
    assert sum(whole for _, whole in lines) >= 20 and sum(not whole for _, whole in lines) >= 5
    assert ("fastleak demo", True) in lines and ("fastleak --version", False) in lines


def test_every_readme_command_line_parses_with_the_real_parser():
    top = parser()
    commands = list(subparsers(top))
    failures = []
    for line, whole in command_lines(readme()):
        for argv in expand(shlex.split(line)[1:], commands):
            error = parse_error(top, argv)
            if error is not None and (whole or "the following arguments are required" not in error):
                failures.append(f"{line!r}: {error}")
    assert not failures, "README command lines the CLI rejects:\n" + "\n".join(failures)


def test_every_command_is_in_the_readme():
    top = parser()
    named = {line.split()[1] for line, _ in command_lines(readme()) if len(line.split()) > 1}
    missing = sorted(set(subparsers(top)) - named)
    assert not missing, f"commands with no 'fastleak NAME' line in the README: {missing}"


def flag_spans(text: str) -> list[list[str]]:
    """Inline spans that are a command's options without the command (``--threat malicious``)."""
    return [shlex.split(span) for span in inline_spans(text) if span.startswith("--")]


def test_every_flag_the_readme_names_exists_with_the_values_it_shows():
    top = parser()
    scopes = {"fastleak": top, **{f"fastleak {name}": p for name, p in subparsers(top).items()}}
    failures = []
    for tokens in flag_spans(readme()):
        flags = [t.split("=")[0] for t in tokens if t.startswith("--")]
        if all(f in OTHER_PROGRAMS_FLAGS for f in flags):
            continue
        owners = [name for name, p in scopes.items() if all(f in p._option_string_actions for f in flags)]
        if not owners:
            failures.append(f"`{' '.join(tokens)}`: no fastleak command has {' and '.join(flags)}")
            continue
        # A value shown after a flag with fixed choices must be one of them (``a|b`` shows two values).
        for i, token in enumerate(tokens[:-1]):
            value = tokens[i + 1]
            if not token.startswith("--") or value.startswith("--"):
                continue
            for name in owners:
                choices = scopes[name]._option_string_actions[token].choices
                wrong = [v for v in value.split("|") if choices is not None and v not in choices]
                if wrong:
                    failures.append(f"`{' '.join(tokens)}`: {name} {token} takes {sorted(choices)}, not {wrong}")
    assert not failures, "README flags the CLI does not have:\n" + "\n".join(failures)


def test_the_check_catches_a_flag_or_command_the_parser_lacks():
    top = parser()
    assert parse_error(top, ["attack", "--no-such-flag", "1"]) is not None
    assert parse_error(top, ["no-such-command"]) is not None
    assert parse_error(top, ["attack", "--threat", "no-such-threat"]) is not None
    assert parse_error(top, ["attack", "--help"]) is None
    assert parse_error(top, ["attack", "--iter", "3"]) is not None  # an abbreviation of --iterations
    fake = "Run `fastleak attack --no-such-flag 1` or pass `--no-such-flag` with `--threat evil`.\n"
    assert command_lines(fake) == [("fastleak attack --no-such-flag 1", False)]
    assert flag_spans(fake) == [["--no-such-flag"], ["--threat", "evil"]]


def section(text: str, title: str) -> str:
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", text, flags=re.DOTALL | re.MULTILINE)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def table_names(text: str) -> list[str]:
    """The backticked names in the first column of the section's first table (rows after the header)."""
    rows = [line for line in text.splitlines() if line.startswith("|")][2:]
    return [name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])]


def test_the_compiled_ops_the_readme_lists_are_those_the_extension_registers():
    import fastleak.ops
    from fastleak import _ext

    public = {n for n in fastleak.ops.__all__ if f"{n}_reference" in fastleak.ops.__all__}
    match = re.search(r"fused kernels for the (\w+)\s+hot spots of these attacks(.*?)\s+—\s+plus", readme(), re.DOTALL)
    assert match, "README no longer introduces the fused kernels with 'fused kernels for the N hot spots'"
    count, listed = match.group(1), set(re.findall(r"`(\w+)`", match.group(2)))
    assert listed == public, (f"the README's sentence on the fused kernels names {sorted(listed)}, fastleak.ops has "
                              f"{sorted(public)}: name each op there in backticks")
    assert count == NUMBER_WORDS[len(public)], f"'{count} hot spots' for {len(public)} ops"
    if _ext.LOADED:
        registered = {n.split("::")[1].split(".")[0] for n in _ext._op_names()}
        assert {next((p for p in public if op.startswith(p)), op) for op in registered} == public


def test_the_attack_preset_table_lists_the_registered_presets():
    from fastleak.attacks.presets import PRESETS

    assert sorted(table_names(section(readme(), "Attacks"))) == sorted(PRESETS.names())


def test_the_malicious_presets_are_in_the_readme():
    from fastleak.malicious.presets import PRESETS

    text = section(readme(), "A malicious server")
    assert sorted(set(re.findall(r"`--preset (\w+)`", text))) == sorted(PRESETS.names())


def test_the_label_method_table_lists_the_registered_methods():
    from fastleak.labels.registry import LABEL_METHODS

    assert sorted(table_names(section(readme(), "Label recovery"))) == sorted(LABEL_METHODS.names() + ("auto",))


def test_the_dataset_table_lists_the_registered_datasets():
    from fastleak.data import registry

    assert sorted(table_names(section(readme(), "Datasets on disk"))) == sorted(registry.names())


def test_the_demo_times_are_the_demo_commands_figures():
    from fastleak.cli.commands import demo

    text = readme()
    quickstart = " ".join(section(text, "Quickstart").split())
    assert re.findall(r"It takes about (\d+) s on two CPU cores", quickstart) == [str(demo.DEMO_SECONDS)]
    assert re.findall(r"`fastleak demo --fast` [^(]*\(about (\d+) s", quickstart) == [str(demo.DEMO_FAST_SECONDS)]
    timings = {line.split("#")[0].strip(): line.split("#")[1] for block in code_blocks(text)
               for line in block.splitlines() if line.startswith("fastleak demo") and "#" in line}
    assert re.match(rf"\s*{demo.DEMO_SECONDS} s /", timings["fastleak demo"])
    assert re.match(rf"\s*{demo.DEMO_FAST_SECONDS} s /", timings["fastleak demo --fast"])
    help_text = {name: p.format_help() for name, p in subparsers(parser()).items()}["demo"]
    assert f"about {demo.DEMO_SECONDS} s" in " ".join(help_text.split())
    assert f"about {demo.DEMO_FAST_SECONDS} s" in " ".join(help_text.split())

