"""fastleak audit --threat malicious: what a server that modifies the model recovers, per defense."""
from __future__ import annotations

import argparse
from pathlib import Path

from fastleak.cli.commands.options import defense_names, spec_from_args
from fastleak.cli.errors import CliError

BASE = {"threat": "malicious", "preset": "imprint", "dataset": "mnist", "batch": 64, "client_bn": "eval"}
EXAMPLE = "gaussian:sigma=1e-5"
COLUMNS = ("protection", "images", "recovered exactly", "alone in their bin", "recognisable (>= 18 dB)",
           "false images", "labels LnAcc", "seconds")


def malicious_audit_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("malicious threat: the simulated round, BatchNorm in eval mode as DP-SGD's per-example "
                             "gradients need (ignored under the honest threat)")
    g.add_argument("--dataset", default=None, help=f"the clients' data, any 'fastleak attack' dataset with a train "
                                                   f"split for the server's public data (default: {BASE['dataset']})")
    g.add_argument("--data-root", default=None, metavar="DIR", help="a dataset on disk (default: the shipped samples)")
    g.add_argument("--batch", type=int, default=None, help=f"each client's batch size (default: {BASE['batch']})")
    g.add_argument("--labels", default=None, help="label pattern: unique, random, repeat:K (default: random)")
    g.add_argument("--mode", default=None, choices=("fedsgd", "fedavg"), help="the clients' update (default: fedsgd)")
    g.add_argument("--local-steps", type=int, default=None, help="FedAvg local SGD steps (default: 4)")
    g.add_argument("--local-lr", type=float, default=None, help="FedAvg local learning rate (default: 0.01)")
    g.add_argument("--local-batch-size", type=int, default=None, help="FedAvg mini-batch size (default: the batch)")
    g.add_argument("--protection", action="append", metavar="NAME[:KEY=VALUE,...]", help=_protection_help())


def _protection_help() -> str:
    return (f"a row of the table, repeatable: none or a defense ({defense_names()}) with its parameters, e.g. "
            f"{EXAMPLE}, dp_sgd:clip=1,sigma=0.1 or secure_aggregation:clients=8 (default: the table of "
            "fastleak.experiments.malicious.DEFAULT_PROTECTIONS, less the rows that do not apply to --mode)")


def _protections(args: argparse.Namespace, spec) -> tuple:
    """The rows of --protection, or the default rows that apply to the spec's mode."""
    from fastleak._keyvalue import named_key_values
    from fastleak.experiments.malicious import DEFAULT_PROTECTIONS, Protection

    if not args.protection:
        return tuple(p for p in DEFAULT_PROTECTIONS if p.applies_to(spec))
    chosen = tuple(Protection(*named_key_values(text, "--protection", EXAMPLE)) for text in args.protection)
    for protection in chosen:
        protection.applied_to(spec)  # a row asked for that does not apply to --mode is an error, with the reason
    return chosen


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_lines(rows) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for row in rows:
        m = row.metrics
        lines.append(f"| {row.protection.label} | {m['samples']} | {m['recovered_fraction']:.1%} | "
                     f"{m['singleton_fraction']:.1%} | {m['recognisable_fraction']:.1%} | {m['false_images']} | "
                     f"{_cell(m['ln_acc'], '.2f')} | {row.seconds:.2f} |")
    return lines


def audit_malicious(args: argparse.Namespace) -> int:
    from fastleak.experiments.malicious import protection_table
    from fastleak.reports import new_run_dir
    from fastleak.reports.rundir import removed_if_it_fails_empty, write_config, write_json

    if args.observation is not None:
        raise CliError("under --threat malicious the audit simulates the round with your model and data; it reads no "
                       "observation file", "drop the file argument, or use --threat honest to attack it")
    base = dict(BASE)
    base["preset"] = args.preset or base["preset"]
    spec = spec_from_args(args, base)
    protections = _protections(args, spec)
    run_dir = new_run_dir(args.out)
    print(f"malicious server, {spec.preset} preset: {spec.model} on {spec.dataset}, batch {spec.batch}, {spec.mode}; "
          f"{len(protections)} protections")
    lines = table_lines([])
    for line in lines:
        print(line, flush=True)

    def show(row) -> None:
        line = table_lines([row])[-1]
        lines.append(line)
        print(line, flush=True)

    with removed_if_it_fails_empty(run_dir, created=True):
        write_config(run_dir, spec.as_dict())
        rows = protection_table(spec, protections, callback=show)
    write_json(run_dir / "table.json", {"rows": [{"protection": r.protection.defense,
                                                  "params": dict(r.protection.params), "seconds": r.seconds,
                                                  **r.metrics} for r in rows]})
    Path(run_dir / "table.md").write_text("\n".join(lines) + "\n")
    print(f"recovered exactly: PSNR >= 60 dB among the inputs the server judged single; recognisable: among every "
          f"occupied bin's input.\noutputs: {run_dir}")
    return 0
