"""fastleak audit: attack an observation captured from a real FL system."""
from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import torch

from fastleak._keyvalue import key_values
from fastleak.cli.commands.loading import load_observation
from fastleak.cli.commands.malicious_audit import audit_malicious, malicious_audit_options
from fastleak.cli.commands.options import constructor_options, model_options, run_folder_options
from fastleak.cli.commands.registry import command
from fastleak.cli.commands.running import Progress
from fastleak.cli.errors import CliError, interrupted


def _configure_audit(p: argparse.ArgumentParser) -> None:
    from fastleak.attacks.presets import PRESETS
    from fastleak.experiments.spec import THREATS

    p.add_argument("observation", nargs="?", default=None,
                   help="observation file (fastleak.federated.save format); none under --threat malicious")
    model_options(p, {"device": "cpu", "model_options": "the constructor's"}, required=True, simulated=False)
    p.add_argument("--num-classes", type=int, default=None, help="classes (default: the observation's)")
    g = p.add_argument_group("attack")
    g.add_argument("--threat", default="honest", choices=THREATS,
                   help="honest: attack the captured observation; malicious: what a server that modifies your model "
                        "would recover from your data, under each protection (default: honest)")
    g.add_argument("--preset", default=None,
                   help="honest: dlg, idlg, inverting, gradinversion, geng (default: inverting); malicious: imprint, "
                        "trap (default: imprint)")
    g.add_argument("--restarts", type=int, default=None, help="random initialisations per candidate setting, "
                   "optimised together (default: the preset's: one per candidate of its search, 4 without one)")
    g.add_argument("--iterations", type=int, default=None,
                   help=f"optimisation steps (default: the preset's, {PRESETS.get('inverting').iterations} for "
                        f"inverting)")
    g.add_argument("--attack-labels", default="recover", help="recover or optimize")
    g.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="override a preset field, e.g. tv=0.1, repeatable (default: the preset's)")
    g.add_argument("--seed", type=int, default=0, help="seed of the random initialisations (malicious: of the data)")
    malicious_audit_options(p)
    run_folder_options(p)


def _without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` less ``name VALUE`` and ``name=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip or arg.startswith(name + "="):
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        out.append(arg)
    return out


@command("audit", "Attack an observation captured from a real FL system (saved with fastleak.federated.save), "
                  "or, with --threat malicious, measure what a malicious server recovers from your model and data "
                  "under each defense.",
         "  fastleak audit client7.obs --model convnet --model-option width=32\n"
         "  fastleak audit client7.obs --model mypkg.nets:Net --state-dict global.pt --iterations 500\n"
         "  fastleak audit --threat malicious --model lenet --dataset mnist --batch 64\n"
         "  fastleak audit --threat malicious --model mypkg.nets:Net --data-root ~/data/cifar10 --dataset cifar10 "
         "--mode fedavg --protection none --protection secure_aggregation:clients=8",
         _configure_audit)
def audit(args: argparse.Namespace) -> int:
    if args.threat == "malicious":
        return audit_malicious(args)
    if args.observation is None:
        raise CliError("audit needs an observation file under the honest threat",
                       "pass a file written by fastleak.federated.save, or use --threat malicious")
    args.preset = args.preset or "inverting"
    from fastleak.attacks import attack
    from fastleak.attacks.presets import configure
    from fastleak.reports import image_rows, loss_plot, new_run_dir
    from fastleak.reports.rundir import removed_if_it_fails_empty, write_json

    obs, net = load_observation(args)
    options = key_values(args.option, "--option", "tv=0.1")
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "checkpoint.pt").exists():
            raise CliError(f"{run_dir} holds no checkpoint.pt", "pass the run directory an interrupted audit printed")
    else:
        run_dir = new_run_dir(args.out)
    progress = Progress(0, f"audit {Path(args.observation).name}")
    try:
        with removed_if_it_fails_empty(run_dir, created=not args.resume):
            progress.total = configure(args.preset, args.iterations, **options)[0].iterations
            res = attack(obs, net, args.preset, labels=args.attack_labels, restarts=args.restarts,
                         iterations=args.iterations, seed=args.seed, device=args.device, callback=progress,
                         checkpoint=run_dir / "checkpoint.pt", **options)
    except KeyboardInterrupt:
        progress.close()
        return interrupted(f"checkpoint saved in {run_dir}", "resume with: fastleak "
                           f"{shlex.join(_without_option(args.argv, '--resume'))} --resume {run_dir}")
    finally:
        progress.close()
    write_json(run_dir / "config.json", {"observation": os.path.abspath(args.observation), "model": args.model,
                                         "model_options": constructor_options(args), "state_dict": args.state_dict,
                                         "attack_config": res.config.as_dict(), "restarts": args.restarts,
                                         "seed": args.seed})
    write_json(run_dir / "labels.json", {"method": res.label_method, "recovered": sorted(res.labels.tolist())})
    write_json(run_dir / "metrics.json", {"restart_losses": res.restart_losses.tolist(), "wall_time_s": res.wall_time,
                                          "iterations": res.iterations, "best_restart": res.best_restart})
    torch.save(res.images, run_dir / "reconstruction.pt")
    image_rows([res.images.cpu()], [[f"label {c}" for c in res.labels.tolist()]], run_dir / "grid.png")
    loss_plot(res.history_steps, res.history, run_dir / "loss.png", title="audit: objective per restart")
    print(f"recovered labels {sorted(res.labels.tolist())} [{res.label_method}]; best restart loss "
          f"{float(res.restart_losses.min()):.4g}\nspeed: {res.iterations / max(res.wall_time, 1e-9):.1f} it/s, "
          f"{res.wall_time:.1f} s, {args.thread_policy}\noutputs: {run_dir}")
    return 0
