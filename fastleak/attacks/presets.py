"""Attack presets: frozen configurations registered by name; every field can be overridden."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from fastleak._checks import known_fields, typed_fields
from fastleak._registry import Registry
from fastleak.attacks.priors import PRIORS
from fastleak.errors import InvalidValueError

CHOICES: dict[str, tuple[str | None, ...]] = {
    "labels": ("recover", "optimize"),
    "distance": ("l2", "l2_relative", "cosine"),
    "layer_weights": ("equal", "linear", "exp"),
    "optimizer": ("adam", "lbfgs"),
    "init": ("uniform", "gaussian"),
    "registration": ("affine", "translation"),
    "fedavg_mode": ("unroll", "pseudo"),
    "line_search": (None, "backtracking"),
}
COUNTS = ("iterations", "lbfgs_inner", "record_every", "checkpoint_every", "group_every", "history_size")


@dataclass(frozen=True)
class AttackConfig:
    """Everything that defines an attack run.

    labels: "recover" (analytic recovery with ``label_method``) or "optimize" (soft labels
    optimised jointly with the images, as DLG does).
    lbfgs_inner: L-BFGS iterations per step, like ``torch.optim.LBFGS(max_iter=...)``: the DLG
    presets take 300 steps of 20 iterations, as the original DLG code does.
    distance: gradient distance "l2", "l2_relative" (L2 over the target's squared norm, so that prior
    weights mean the same on every model) or "cosine"; layer_weights: "equal", "linear", "exp".
    optimizer: "adam" (optionally on signed gradients, with step decay at 3/8, 5/8, 7/8 of the
    run) or "lbfgs" (batched, per-problem; ``line_search`` None or "backtracking").
    Prior weights (0 disables; see ``fastleak.attacks.priors``): tv (anisotropic total variation,
    p=1), l2 (mean squared pixel), bn (BatchNorm-statistics matching), group (group consistency
    across restarts, with the consensus re-registered every ``group_every`` steps after
    ``group_start`` of the run).
    fedavg_mode: for update observations, "unroll" (differentiable replay of the local
    steps) or "pseudo" (match the pseudo-gradient (W0 - Wt) / (lr * steps)).
    boxed: clamp images to [0, 1] after every step.
    cuda_graph: on a GPU, replay each Adam step's objective and gradients as one CUDA graph
    (``fastleak.attacks.graphs``); steps run eagerly where the capture fails or disagrees.
    lean_conv: simulate the model's ``nn.Conv2d`` layers with ``fastleak.attacks.lean_conv``,
    whose double backward skips a weight term the attack never uses (same values), where the
    simulation replicates the parameters (BatchNorm models, several model states).

    Every field is checked on construction (and so by ``replace``); ``label_method`` only for its type,
    since label methods can be registered after a configuration is made.
    """

    name: str = "custom"
    labels: str = "recover"
    label_method: str = "auto"
    distance: str = "cosine"
    layer_weights: str = "equal"
    optimizer: str = "adam"
    iterations: int = 2000
    lr: float = 0.1
    signed: bool = True
    lr_decay: bool = True
    boxed: bool = True
    init: str = "uniform"
    tv: float = 0.0
    l2: float = 0.0
    bn: float = 0.0
    group: float = 0.0
    group_every: int = 100
    group_start: float = 0.25
    registration: str = "affine"
    fedavg_mode: str = "unroll"
    history_size: int = 100
    lbfgs_inner: int = 1
    line_search: str | None = None
    record_every: int = 10
    checkpoint_every: int = 100
    cuda_graph: bool = True
    lean_conv: bool = True

    def __post_init__(self) -> None:
        typed_fields(self.as_dict(), AttackConfig, "attack")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InvalidValueError(f"attack option {name} must be one of {', '.join(map(repr, allowed))}, "
                                        f"got {getattr(self, name)!r}")
        for name in COUNTS:
            if getattr(self, name) < 1:
                raise InvalidValueError(f"attack option {name} must be a positive int, got {getattr(self, name)!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InvalidValueError(f"attack option lr must be a positive finite number, got {self.lr!r}")
        for name in PRIORS:
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise InvalidValueError(f"attack option {name} must be a finite weight >= 0 (0 disables the prior), "
                                        f"got {getattr(self, name)!r}")
        if not 0 <= self.group_start <= 1:
            raise InvalidValueError(f"attack option group_start must be a fraction of the run in [0, 1], "
                                    f"got {self.group_start!r}")
        for name in ("name", "label_method"):
            if not getattr(self, name):
                raise InvalidValueError(f"attack option {name} must be a non-empty string")

    def replace(self, **overrides: Any) -> "AttackConfig":
        known_fields(overrides, AttackConfig, "attack")
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: Registry[AttackConfig] = Registry("attack preset")


def preset(name: str):
    """Register the decorated zero-argument factory's AttackConfig under ``name``."""

    def register(factory):
        config = factory()
        if config.name != name:
            config = config.replace(name=name)
        PRESETS.register(name)(config)
        return factory

    return register


@preset("dlg")
def dlg() -> AttackConfig:
    """Zhu et al. 2019: L2 gradient matching, soft labels optimised jointly, L-BFGS."""
    return AttackConfig(labels="optimize", distance="l2", optimizer="lbfgs", iterations=300, lbfgs_inner=20,
                        lr=1.0, signed=False, lr_decay=False, boxed=False)


@preset("idlg")
def idlg() -> AttackConfig:
    """Zhao et al. 2020: the label read off the last layer's gradient, then DLG."""
    return AttackConfig(labels="recover", label_method="idlg", distance="l2", optimizer="lbfgs", iterations=300,
                        lbfgs_inner=20, lr=1.0, signed=False, lr_decay=False, boxed=False)


@preset("inverting")
def inverting() -> AttackConfig:
    """Geiping et al. 2020: cosine distance, TV, signed Adam with step decay, boxed images.

    tv 0.05 suits runs of a few hundred iterations; a full-length single-image attack does
    better with tv=1e-5 (benchmarks/RESULTS.md, case b)."""
    return AttackConfig(distance="cosine", optimizer="adam", iterations=2000, lr=0.1, signed=True,
                        lr_decay=True, boxed=True, tv=0.05)


@preset("gradinversion")
def gradinversion() -> AttackConfig:
    """Yin et al. 2021: L2 matching with TV, l2 and BatchNorm priors, and group consistency."""
    return AttackConfig(distance="l2", optimizer="adam", iterations=2000, lr=0.05, signed=False, lr_decay=True,
                        boxed=True, tv=0.02, l2=1e-4, bn=1e-3, group=0.01)


@preset("geng")
def geng() -> AttackConfig:
    """Geng et al. 2021: label counts with duplicates, several pairs matched jointly, FedAvg updates
    attacked through an unrolled replay of the local steps."""
    return AttackConfig(distance="cosine", optimizer="adam", iterations=2000, lr=0.1, signed=True,
                        lr_decay=True, boxed=True, tv=0.05, fedavg_mode="unroll")


def get(name: str, **overrides: Any) -> AttackConfig:
    return PRESETS.get(name).replace(**overrides)


def resolve(preset: str | AttackConfig, iterations: int | None = None, **overrides: Any) -> AttackConfig:
    """The preset (a name or a configuration) with ``overrides``; ``iterations`` None keeps the preset's."""
    config = preset if isinstance(preset, AttackConfig) else PRESETS.get(preset)
    if iterations is not None:
        overrides = {**overrides, "iterations": iterations}
    return config.replace(**overrides)
