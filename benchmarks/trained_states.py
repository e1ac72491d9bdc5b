"""Honest trained states for the benchmarks: the global model of the MNIST trainer after round N,
and the grid of states the trained-model benchmarks attack (``GRID``).

The models are trained with ``fastleak.training`` on the 4,000 train digits of the shipped MNIST
split and attacked on the 1,000 held-out digits, which they have never seen. Runs are cached
under ``runs/trained/<model>[-w<width>]-s<seed>/`` and extended when a later round is asked for;
every round is saved, so any round up to the longest run loads without training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from torch import nn

from fastleak.training import TrainConfig, load_round, read_summary, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "runs", "trained")
DATASET = "mnist"

# The recipes of RESULTS.md: LeNet with the trainer's defaults, the ConvNet with a smaller learning rate.
RECIPES = {
    "lenet": TrainConfig(model="lenet"),
    "convnet": TrainConfig(model="convnet", model_options={"width": 16}, lr=0.05, shift=0),
}
# The last round of each recipe's documented run, the first with >= 95% held-out accuracy to two
# decimals (RESULTS.md, "Trained states"; the ConvNet has 95.8% after round 4, 96.5% after round 5).
FINAL_ROUND = {"lenet": 100, "convnet": 5}
WIDTH_OPTION = {"convnet": "width", "resnet18": "width", "resnet20": "width"}


def recipe(name: str, seed: int = 0, width: int | None = None) -> TrainConfig:
    if name not in RECIPES:
        raise SystemExit(f"no training recipe for {name!r}; trained states exist for {', '.join(RECIPES)}")
    options = dict(RECIPES[name].model_options)
    if width is not None and name in WIDTH_OPTION:
        options[WIDTH_OPTION[name]] = width
    return RECIPES[name].replace(dataset=DATASET, seed=seed, save_rounds=None, model_options=options)


def rounds_of(name: str, tokens: list[str]) -> list[int]:
    """Round numbers from tokens such as ["0", "5", "final"], "final" being FINAL_ROUND[name]."""
    return sorted({FINAL_ROUND[name] if t == "final" else int(t) for t in tokens})


def run_dir(config: TrainConfig) -> str:
    width = config.model_options.get("width")
    return os.path.join(CACHE, f"{config.model}" + (f"-w{width}" if width else "") + f"-s{config.seed}")


def trained_model(name: str, round_number: int, seed: int = 0, width: int | None = None) -> tuple[nn.Module, dict]:
    """The global model after ``round_number`` rounds (eval mode) and a description of its training."""
    config = recipe(name, seed, width)
    out = run_dir(config)
    train(config.replace(rounds=max(round_number, 1)), out)
    summary = read_summary(out)
    record = next(r for r in summary["rounds"] if r["round"] == round_number)
    c = summary["config"]
    command = (f"fastleak train --model {c['model']}" + (f" --width {width}" if "width" in c["model_options"] else "")
               + f" --dataset {c['dataset']} --rounds {round_number} --clients {c['clients']} --local-steps "
               f"{c['local_steps']} --local-batch-size {c['local_batch_size']} --lr {c['lr']} --shift {c['shift']} "
               f"--seed {c['seed']}")
    info = {"round": round_number, "test_accuracy": record["test_accuracy"], "train_loss": record["train_loss"],
            "train_seconds": sum(r["seconds"] for r in summary["rounds"] if r["round"] <= round_number),
            "command": command, "train_images": summary["data"]["train_images"],
            "test_images": summary["data"]["test_images"]}
    return load_round(out, round_number), info


@dataclass(frozen=True)
class Grid:
    """The trained-model grid (``trained_grid``): the states it attacks, and what ``bench_labels --grid``
    and ``bench_quality --only g`` run on them."""

    models: tuple[str, ...] = ("lenet", "convnet")
    rounds: tuple[str, ...] = ("0", "1", "5", "20", "final")
    convnet_width: int = 16
    bn: str = "train"
    label_batches: tuple[int, ...] = (1, 8, 32, 64)
    # dirichlet:0.5: the class mix of each batch drawn from Dirichlet(0.5), as non-IID clients hold it.
    label_patterns: tuple[str, ...] = ("random", "repeat:4", "dirichlet:0.5")
    # FedAvg with one local step equals FedSGD to rounding (RESULTS.md, runs C1 and the first grid).
    protocols: tuple[str, ...] = ("fedsgd", "fedavg4", "fedavg16")
    # auto with and without the server's public data (the train split), the count posterior, the
    # guesses every method must beat, and the ceiling of reading presence alone.
    label_methods: tuple[str, ...] = ("auto", "auto+public", "posterior+public", "uniform", "frequency", "set_oracle")
    image_batches: tuple[int, ...] = (1, 4, 8)
    image_presets: tuple[str, ...] = ("inverting", "gradinversion", "geng")

    def round_numbers(self, model: str) -> list[int]:
        return rounds_of(model, list(self.rounds))

    def states(self, model: str) -> list[str]:
        return [f"round{r}" for r in self.round_numbers(model)]

    def trained(self, model: str, round_number: int) -> tuple[nn.Module, dict]:
        """The grid's ``model`` after ``round_number`` rounds (``trained_model``), eval mode."""
        return trained_model(model, round_number, width=self.convnet_width if model == "convnet" else None)

    def label_args(self) -> list[str]:
        """bench_labels options for the grid's label part (one model at a time: their rounds differ)."""
        return ["--datasets", "mnist", "--bn", self.bn, "--convnet-width", str(self.convnet_width),
                "--batches", ",".join(map(str, self.label_batches)), "--patterns", ",".join(self.label_patterns),
                "--protocols", ",".join(self.protocols), "--methods", ",".join(self.label_methods),
                "--public", "mnist:train"]


GRID = Grid()
