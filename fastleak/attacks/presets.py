"""Attack presets: frozen configurations registered by name; every field can be overridden."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastleak._checks import positive_int, typed_fields
from fastleak._registry import Registry
from fastleak.attacks.execution import FIELDS as EXECUTION_FIELDS
from fastleak.attacks.execution import Execution, split_execution
from fastleak.attacks.inits import INITS
from fastleak.attacks.priors import PRIORS, merge_priors, normalise_priors
from fastleak.attacks.search import PRESET_HALVING, SELECT, TV_GRID, check_halving, normalise_search
from fastleak.errors import InvalidValueError

CHOICES: dict[str, tuple[str | None, ...]] = {
    "labels": ("recover", "optimize"),
    "distance": ("l2", "l2_relative", "cosine"),
    "layer_weights": ("equal", "linear", "exp"),
    "optimizer": ("adam", "lbfgs"),
    "fedavg_mode": ("unroll", "pseudo"),
    "line_search": (None, "backtracking"),
}
COUNTS = ("iterations", "lbfgs_inner", "history_size")
# Options of earlier versions that set a prior's parameter: NAME sets prior NAME's weight, these the rest.
PRIOR_OPTIONS = {"group_every": ("group", "every"), "group_start": ("group", "start"),
                 "registration": ("group", "registration")}


@dataclass(frozen=True)
class AttackConfig:
    """The algorithm of an attack run (how it runs and what it records: ``Execution``).

    labels: "recover" (analytic recovery with ``label_method``) or "optimize" (soft labels
    optimised jointly with the images, as DLG does).
    lbfgs_inner: L-BFGS iterations per step, like ``torch.optim.LBFGS(max_iter=...)``: the DLG
    presets take 300 steps of 20 iterations, as the original DLG code does.
    distance: gradient distance "l2", "l2_relative" (L2 over the target's squared norm, so that prior
    weights mean the same on every model) or "cosine"; layer_weights: "equal", "linear", "exp".
    optimizer: "adam" or "lbfgs" (batched, per-problem; ``line_search`` None or "backtracking").
    signed: Adam's gradient: True its sign, False as it is, "soft" tanh(g s) / s with s = 1 - t/T
    falling linearly over the run (breaching's soft sign: near the sign early, the gradient late).
    lr_decay: Adam's rate schedule: True steps of 0.1 at 3/8, 5/8 and 7/8 of the run, "cosine"
    cosine annealing to 0, False constant; after a linear warm-up over the first ``warmup`` steps.
    langevin: Gaussian noise of standard deviation ``langevin`` x the current rate added to Adam's
    gradient (before any sign; Yin et al. 2021). adam_betas, adam_eps: Adam's own settings
    (breaching's "adam-safe": (0.5, 0.99), 1e-4).
    stages: Adam on images of rising resolution (coarse to fine): the run is split into ``stages``
    equal parts; part k optimises images of k/stages of the input's height and width, upsampled
    (bilinear) to the input's size for the model, and the next part starts from their upsampling.
    priors: prior name -> its parameters (``fastleak.attacks.priors``; e.g. {"tv": {"weight": 0.05}}),
    completed with each prior's defaults on construction; a weight of 0 disables a prior.
    search, halving, select, holdout: restarts over a grid of settings (``fastleak.attacks.search``):
    knob (a prior of ``priors`` for its weight, or "lr") -> its values, each combination with
    ``restarts`` rows; the fractions of the run at which the worse half of the rows is dropped; how
    rows are ranked, there and for the result ("objective", "distance", "holdout" or "discrepancy"); the
    stride of the held-out parameter tensors for "holdout"; the factor of the best distance within
    which "discrepancy" prefers the most regularised row. Setting a searched knob (``tv=1e-4``, ``lr=0.05``)
    pins it: it leaves the search; once every knob is pinned the rows are plain restarts again (no
    halving, ranked by the objective, unless those are set too).
    fedavg_mode: for update observations, "unroll" (differentiable replay of the local
    steps) or "pseudo" (match the pseudo-gradient (W0 - Wt) / (lr * steps)).
    boxed: clamp images to [0, 1] after every step (L-BFGS: after every ``lbfgs_inner`` iterations).
    init: the initial images, a name of ``fastleak.attacks.inits.INITS``.

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
    signed: bool | str = True
    lr_decay: bool | str = True
    warmup: int = 0
    langevin: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    stages: int = 1
    boxed: bool = True
    init: str = "uniform"
    priors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    search: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    halving: tuple[float, ...] = ()
    select: str = "objective"
    holdout: int = 4
    discrepancy: float = 2.0
    fedavg_mode: str = "unroll"
    history_size: int = 100
    lbfgs_inner: int = 1
    line_search: str | None = None

    def __post_init__(self) -> None:
        typed_fields({k: v for k, v in self.as_dict().items()
                      if k not in ("priors", "search", "halving", "adam_betas")}, AttackConfig, "attack")
        self._check_adam()
        if self.init not in INITS:
            raise InvalidValueError(f"attack option init must be one of {', '.join(map(repr, INITS.names()))}, "
                                    f"got {self.init!r}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InvalidValueError(f"attack option {name} must be one of {', '.join(map(repr, allowed))}, "
                                        f"got {getattr(self, name)!r}")
        for name in COUNTS:
            positive_int(getattr(self, name), f"attack option {name}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InvalidValueError(f"attack option lr must be a positive finite number, got {self.lr!r}")
        for name in ("name", "label_method"):
            if not getattr(self, name):
                raise InvalidValueError(f"attack option {name} must be a non-empty string")
        object.__setattr__(self, "priors", normalise_priors(self.priors))
        object.__setattr__(self, "search", normalise_search(self.search, self.priors))
        object.__setattr__(self, "halving", check_halving(self.halving))
        if self.select not in SELECT:
            raise InvalidValueError(f"attack option select must be one of {', '.join(map(repr, SELECT))}, "
                                    f"got {self.select!r}")
        positive_int(self.holdout, "attack option holdout")
        if not (math.isfinite(self.discrepancy) and self.discrepancy >= 1):
            raise InvalidValueError(f"attack option discrepancy must be a finite factor >= 1, got {self.discrepancy!r}")
        if self.select == "holdout" and self.holdout < 2:
            raise InvalidValueError(f"attack option holdout must be >= 2 with select='holdout' (every holdout-th "
                                    f"parameter tensor is held out), got {self.holdout}")

    def _check_adam(self) -> None:
        """The Adam settings beyond their types."""
        if self.signed not in (True, False, "soft"):
            raise InvalidValueError(f"attack option signed must be True, False or 'soft', got {self.signed!r}")
        if self.lr_decay not in (True, False, "cosine"):
            raise InvalidValueError(f"attack option lr_decay must be True (steps), False or 'cosine', "
                                    f"got {self.lr_decay!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise InvalidValueError(f"attack option warmup must be an int >= 0 (steps), got {self.warmup!r}")
        if not (math.isfinite(self.langevin) and self.langevin >= 0):
            raise InvalidValueError(f"attack option langevin must be a finite number >= 0, got {self.langevin!r}")
        betas = self.adam_betas
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and
                all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
            raise InvalidValueError(f"attack option adam_betas must be two numbers in [0, 1), got {betas!r}")
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in betas))
        if not (math.isfinite(self.adam_eps) and self.adam_eps > 0):
            raise InvalidValueError(f"attack option adam_eps must be a positive finite number, got {self.adam_eps!r}")
        positive_int(self.stages, "attack option stages")
        if self.stages > 1 and self.optimizer != "adam":
            raise InvalidValueError(f"attack option stages > 1 needs optimizer 'adam', got {self.optimizer!r}")

    def replace(self, **overrides: Any) -> "AttackConfig":
        """This configuration with fields replaced; a prior's name (``tv=0.1``) or an entry of
        ``PRIOR_OPTIONS`` (``group_every=50``) changes that prior's parameter."""
        fields_, prior_changes = _split_prior_options(overrides)
        _known_options(fields_)
        if "search" not in fields_:  # what is set explicitly leaves the search
            pinned = set(fields_) | _weights_set(prior_changes)
            if "priors" in fields_:  # priors given whole: every prior's weight is the one given
                pinned |= set(self.priors) | set(fields_["priors"])
            fields_["search"] = {k: v for k, v in self.search.items() if k not in pinned}
        config = dataclasses.replace(self, **self._search_ended(fields_))
        return config.with_priors(prior_changes) if prior_changes else config

    def with_priors(self, changes: Mapping[str, Mapping[str, Any]]) -> "AttackConfig":
        """This configuration with its priors changed parameter by parameter (``merge_priors``); a
        prior whose weight is set leaves the search."""
        pinned = _weights_set(changes)
        return dataclasses.replace(self, **self._search_ended({
            "priors": merge_priors(self.priors, changes),
            "search": {k: v for k, v in self.search.items() if k not in pinned}}))

    def _search_ended(self, fields_: dict[str, Any]) -> dict[str, Any]:
        """``fields_`` and, where they end this configuration's search (every knob pinned), its rows
        as plain restarts again: no halving, ranked by the objective, unless those are given too."""
        if self.search and not fields_["search"]:
            fields_ = {"halving": (), "select": "objective", **fields_}
        return fields_

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def prior_weight(self, name: str) -> float:
        """The weight of prior ``name`` (0 when the configuration does not use it)."""
        return float(self.priors.get(name, {}).get("weight", 0.0))


def _weights_set(changes: Mapping[str, Any]) -> set[str]:
    """The priors of ``changes`` (prior name -> parameter changes) whose weight is set."""
    return {name for name, change in changes.items() if isinstance(change, Mapping) and "weight" in change}


def _known_options(options: Mapping[str, Any]) -> None:
    """Reject what is neither a field nor a prior option, pointing execution settings to ``Execution``."""
    valid = {f.name for f in dataclasses.fields(AttackConfig)}
    run_settings = sorted(set(options) & set(EXECUTION_FIELDS))
    if run_settings:
        raise InvalidValueError(f"{', '.join(run_settings)}: execution setting(s) of fastleak.attacks.Execution, "
                                "not of the attack's configuration; pass them to fastleak.attack() or Execution")
    unknown = sorted(set(options) - valid)
    if unknown:
        names = sorted(valid | set(PRIORS.names()) | set(PRIOR_OPTIONS) | set(EXECUTION_FIELDS))
        raise InvalidValueError(f"unknown attack option(s) {unknown}; valid options: {', '.join(names)}")


def _split_prior_options(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(field overrides, prior name -> parameter changes) of ``replace``'s keywords."""
    fields_, changes = {}, {}
    for key, value in overrides.items():
        if key in PRIORS:
            changes.setdefault(key, {})["weight"] = value
        elif key in PRIOR_OPTIONS:
            name, param = PRIOR_OPTIONS[key]
            changes.setdefault(name, {})[param] = value
        else:
            fields_[key] = value
    return fields_, changes


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
    """Geiping et al. 2020: cosine distance, TV, signed Adam with step decay, boxed images. The TV
    weight is searched: one restart per weight of ``TV_GRID``, the worse half dropped at half the
    run, the rest ranked by the discrepancy principle (``fastleak.attacks.search``); ``tv=...`` pins
    it (benchmarks/RESULTS.md, "Presets that tune themselves")."""
    return AttackConfig(distance="cosine", optimizer="adam", iterations=2000, lr=0.1, signed=True,
                        lr_decay=True, boxed=True, priors={"tv": {"weight": 0.05}}, search={"tv": TV_GRID},
                        halving=PRESET_HALVING, select="discrepancy")


@preset("gradinversion")
def gradinversion() -> AttackConfig:
    """Yin et al. 2021: the dummy batch's BatchNorm statistics pulled to the model's running ones, and
    group consistency between restarts, on ``modern``'s optimisation (cosine distance, colour TV,
    soft-signed Adam with warm-up and cosine decay, patterned start, boxed images).

    The BatchNorm prior weighs 0.1 against the cosine distance (the earlier L2 distance outweighed
    its 1e-3 by five orders of magnitude, so it did nothing); it needs running statistics some batch
    has updated, a trained model's (benchmarks/RESULTS.md, "gradinversion at its paper's strength")."""
    return AttackConfig(distance="cosine", optimizer="adam", iterations=2000, lr=0.1, signed="soft",
                        lr_decay="cosine", warmup=50, boxed=True, init="patterned-4",
                        priors={"bn": {"weight": 0.1},
                                "tv_power": {"weight": 0.2, "inner": 2.0, "outer": 0.5, "opponents": True},
                                "group": {"weight": 0.3}})


@preset("geng")
def geng() -> AttackConfig:
    """Geng et al. 2021: label counts with duplicates, several pairs matched jointly, FedAvg updates
    attacked through an unrolled replay of the local steps."""
    return AttackConfig(distance="cosine", optimizer="adam", iterations=2000, lr=0.1, signed=True,
                        lr_decay=True, boxed=True, priors={"tv": {"weight": 0.05}}, search={"tv": TV_GRID},
                        halving=PRESET_HALVING, select="discrepancy", fedavg_mode="unroll")


# The optimisation attacks breaching 0.1.2 configures (breaching/config/attack/*.yaml), in fastleak's
# units: breaching's Euclidean objective is 0.5 * scale * ||r - t||^2 where ours ("l2") is ||r - t||^2, so
# its regulariser scales (and Langevin noise) are multiplied here by 2 / scale; its "randn" is our
# "gaussian" (N(0, 1) inside a normalisation by mean 0.5 and deviation 0.25).


@preset("modern")
def modern() -> AttackConfig:
    """breaching's "modern" Inverting Gradients: cosine distance, colour TV (isotropic, double
    opponents) and the classifier-features prior, patterned initialisation, soft-signed Adam with a
    warm-up and cosine decay, boxed images."""
    return AttackConfig(distance="cosine", optimizer="adam", iterations=2000, lr=0.1, signed="soft",
                        lr_decay="cosine", warmup=50, boxed=True, init="patterned-4",
                        priors={"tv_power": {"weight": 0.1, "inner": 2.0, "outer": 0.5, "opponents": True},
                                "features": {"weight": 0.1}})


@preset("clsattack")
def clsattack() -> AttackConfig:
    """breaching's "clsattack": ``modern`` with twice its colour TV and no features prior (the
    optimisation breaching runs after its class-fishing server; the malicious server is not part of it)."""
    return modern().replace(priors={"tv_power": {"weight": 0.2, "inner": 2.0, "outer": 0.5, "opponents": True}})


@preset("wei")
def wei() -> AttackConfig:
    """Wei et al. 2020 ("A Framework for Evaluating Gradient Leakage Attacks in FL"): L2 matching plus
    the task loss, patterned initialisation, boxed L-BFGS.

    The task loss weighs 0.02, 1% of breaching's scale (``task=2.0`` here): at breaching's, the
    cross-entropy of an untrained model outweighs the gradient distance by two orders of magnitude
    and pulls the images away from the batch (benchmarks/RESULTS.md, "Every optimisation attack")."""
    return AttackConfig(distance="l2", optimizer="lbfgs", iterations=300, lbfgs_inner=20, lr=1.0, signed=False,
                        lr_decay=False, boxed=True, init="patterned-16", priors={"task": {"weight": 0.02}})


@preset("beyondinfering")
def beyondinfering() -> AttackConfig:
    """Wang et al. 2019 ("Beyond Inferring Class Representatives"), as breaching runs it without the GAN:
    L2 matching with TV (inner exponent 2, outer 1.25), boxed L-BFGS."""
    return AttackConfig(distance="l2", optimizer="lbfgs", iterations=400, lbfgs_inner=20, lr=1.0, signed=False,
                        lr_decay=False, boxed=True, init="gaussian",
                        priors={"tv_power": {"weight": 0.4704, "inner": 2.0, "outer": 1.25}})


@preset("multiscale_ghiasi")
def multiscale_ghiasi() -> AttackConfig:
    """Inverting Gradients coarse to fine (Ghiasi et al. 2022's multi-resolution schedule): seven
    stages of rising resolution, Adam with betas (0.5, 0.99) and eps 1e-4 ("adam-safe"), signed, with
    step decay in every stage."""
    return AttackConfig(distance="cosine", optimizer="adam", iterations=2000, lr=0.1, signed=True, lr_decay=True,
                        boxed=True, stages=7, adam_betas=(0.5, 0.99), adam_eps=1e-4, priors={"tv": {"weight": 0.05}})


@preset("seethroughgradients")
def seethroughgradients() -> AttackConfig:
    """breaching's configuration of Yin et al. 2021: L2 matching (breaching's scale 1e-4), TV, a pixel
    norm and BatchNorm statistics against the model's running ones, unsigned Adam with warm-up, cosine
    decay and Langevin noise, the labels by Yin et al.'s rule; no group consistency."""
    return AttackConfig(distance="l2", label_method="yin", optimizer="adam", iterations=2000, lr=0.1, signed=False,
                        lr_decay="cosine", warmup=50, langevin=200.0, boxed=True, init="gaussian",
                        priors={"tv_power": {"weight": 2.0}, "norm": {"weight": 0.02}, "bn": {"weight": 2000.0}})


def resolve(preset: str | AttackConfig, iterations: int | None = None, *,
            priors: Mapping[str, Mapping[str, Any]] | None = None, **overrides: Any) -> AttackConfig:
    """The preset (a name or a configuration) with ``overrides`` (``AttackConfig.replace``'s keywords) and
    ``priors`` merged into its own, prior by prior; ``iterations`` None keeps the preset's."""
    config = preset if isinstance(preset, AttackConfig) else PRESETS.get(preset)
    if iterations is not None:
        overrides = {**overrides, "iterations": iterations}
    config = config.replace(**overrides)
    return config.with_priors(priors) if priors else config


def configure(preset: str | AttackConfig, iterations: int | None = None, *,
              priors: Mapping[str, Mapping[str, Any]] | None = None, execution: Execution | None = None,
              **options: Any) -> tuple[AttackConfig, Execution]:
    """The attack's configuration (``resolve``) and its ``Execution`` from ``options`` that mix both kinds
    of setting, as ``fastleak.attack`` and ``--option`` take them."""
    algorithm, run = split_execution(options)
    return (resolve(preset, iterations, priors=priors, **algorithm),
            (execution or Execution()).replace(**run))
