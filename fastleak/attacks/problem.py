"""The optimisation problem of an attack: Q = P*R dummy batches and their objective.

P observations of the same model, each with R restarts, are Q dummy batches optimised in one
vectorised computation: one simulated client computation per observed pair (``ClientSimulator``),
one fused gradient-distance call per pair, and the configuration's priors (``fastleak.attacks.priors``),
fresh instances for every problem.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fastleak.attacks.execution import Execution
from fastleak.attacks.inits import INITS
from fastleak.attacks.presets import AttackConfig
from fastleak.attacks.priors import Prior, active
from fastleak.attacks.search import candidates, discrepancy_ranks, holdout_mask
from fastleak.attacks.simulate import ClientSimulator, layer_weights
from fastleak.federated.observation import Observation
from fastleak.ops import grad_distance


class Problem:
    """The state shared by the Adam and L-BFGS runs: simulators, targets, labels, random draws, the
    priors and the rows of a search. ``labels`` None: soft labels are optimised; else one fixed
    tensor per observation.

    Each observation has R rows (``restarts`` for every candidate setting of ``config.search``,
    ``fastleak.attacks.search``); ``keep`` drops rows. ``rows`` maps the current rows to the first ones
    (Q0 = P * R0) and ``settings`` gives each current row's knob values.
    """

    def __init__(self, model: nn.Module, observations: Sequence[Observation], config: AttackConfig, restarts: int,
                 labels: list[Tensor] | None, seed: int, device: torch.device,
                 execution: Execution = Execution()) -> None:
        self.config = config
        self.execution = execution
        self.restarts = restarts
        self.candidates = candidates(config.search)
        self.P, self.R = len(observations), restarts * len(self.candidates)
        self.Q = self.Q0 = self.P * self.R
        self.rows = torch.arange(self.Q0)
        obs = observations[0]
        self.B = obs.num_samples
        self.shape = obs.input_shape_for(model)
        self.C = obs.num_classes_for(model)
        self.device = device
        self.prior_keys, self.priors = active(config.priors, config.search)
        taps = {prior.name: prior.tap() for prior in self.priors}
        taps = {name: tap for name, tap in taps.items() if tap is not None}
        self._tap_index = {name: i for i, name in enumerate(taps)}
        self.sims = [ClientSimulator(model, observations, k, self.R, fedavg_mode=config.fedavg_mode,
                                     taps=list(taps.values()), lean_conv=execution.lean_conv,
                                     vmap_batches=device.type != "cpu" or torch.get_num_threads() > 1)
                     for k in range(obs.num_pairs)]
        self.targets = [sim.target() for sim in self.sims]
        self.weights, self.holdout_weights = self._tensor_weights(len(obs.param_names))
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        if labels is None:
            self.hard_labels = None
        else:
            self.hard_labels = torch.stack(labels).to(device).repeat_interleave(self.R, dim=0)
        self.row_values = {knob: torch.tensor([self.setting(q)[knob] for q in range(self.Q0)], dtype=torch.float64,
                                              device=device) for knob in config.search}
        self.last_distance: Tensor | None = None
        self.last_holdout: Tensor | None = None
        for prior in self.priors:
            prior.setup(self)

    def _tensor_weights(self, n: int) -> tuple[Tensor | None, Tensor | None]:
        """The layer weights of the objective's distance and, with ``select="holdout"``, of the held-out
        tensors' (the objective leaves those out)."""
        weights = layer_weights(self.config.layer_weights, n)
        if self.config.select != "holdout":
            return (None if weights is None else weights.to(self.device)), None
        base = torch.ones(n) if weights is None else weights
        held = holdout_mask(n, self.config.holdout)
        return (base * ~held).to(self.device), (base * held).to(self.device)

    def setting(self, row: int) -> dict[str, float]:
        """The knob values of first row ``row`` (an index below Q0)."""
        return self.candidates[(row % (self.Q0 // self.P)) // self.restarts]

    @property
    def settings(self) -> list[dict[str, float]]:
        return [self.setting(int(q)) for q in self.rows]

    def row_value(self, knob: str, default: float) -> Tensor | float:
        """Each current row's value of ``knob`` [Q] (float64), or ``default`` when it is not searched."""
        return self.row_values[knob] if knob in self.row_values else default

    def keep(self, rows: Tensor) -> None:
        """Keep only the current rows ``rows`` (the same number of each observation, in order)."""
        self.rows = self.rows[rows.cpu()]
        self.Q = len(rows)
        self.R = self.Q // self.P
        for sim in self.sims:
            sim.keep(rows)
        self.targets = [sim.target() for sim in self.sims]
        if self.hard_labels is not None:
            self.hard_labels = self.hard_labels[rows]
        self.row_values = {knob: values[rows] for knob, values in self.row_values.items()}
        self.last_distance = None if self.last_distance is None else self.last_distance[rows]
        self.last_holdout = None if self.last_holdout is None else self.last_holdout[rows]
        for prior in self.priors:
            prior.keep(rows)

    def _random_images(self, generator: torch.Generator, size: Sequence[int] | None, rows: int | None = None) -> Tensor:
        """Images [rows, B, C, *size] (rows None: Q; size None: the input's) by the configuration's ``init``."""
        rows = self.Q if rows is None else rows
        shape = (rows, self.B, *self.shape) if size is None else (rows, self.B, self.shape[0], *size)
        return INITS.get(self.config.init)(shape, generator)

    def init_images(self, size: Sequence[int] | None = None) -> Tensor:
        """The initial images, drawn on the CPU so that a seed gives the same start on every device;
        ``size`` (H, W) draws them at another resolution. The candidates of a search share their draws:
        restart r of every candidate starts where restart r of a run with constant settings would."""
        return self._for_candidates(self._random_images(self.generator, size, rows=self.P * self.restarts))

    def _for_candidates(self, draws: Tensor) -> Tensor:
        """[P * restarts, ...] draws as [Q0, ...], each candidate's rows taking its problem's draws in turn."""
        g = len(self.candidates)
        if g == 1:
            return draws.to(self.device)
        per = draws.view(self.P, 1, self.restarts, *draws.shape[1:]).expand(-1, g, -1, *draws.shape[1:])
        return per.reshape(self.Q0, *draws.shape[1:]).clone().to(self.device)

    def fresh_images(self, step: int, size: Sequence[int] | None = None) -> Tensor:
        """Images for restarts started again at ``step``, drawn on the device (no host synchronisation)
        from a generator seeded by the attack's seed and the step, so a resumed run draws the same."""
        return self._random_images(self.step_generator(step), size)

    def step_generator(self, step: int, stream: int = 0) -> torch.Generator:
        """A generator on the device seeded by the attack's seed, ``step`` and ``stream`` (0: fresh images,
        1: gradient noise), so a resumed run draws the same."""
        return torch.Generator(device=self.device).manual_seed(
            ((self.seed & 0xFFFFFFFF) << 32) | (stream << 31) | (step + 1))

    def init_soft_labels(self) -> Tensor:
        return self._for_candidates(torch.randn((self.P * self.restarts, self.B, self.C), generator=self.generator))

    def distance(self, shared: list[Tensor], target: list[Tensor], weights: Tensor | None = None) -> Tensor:
        weights = self.weights if weights is None else weights
        if self.P == 1:
            return grad_distance(shared, [t[0] for t in target], self.config.distance, weights, batched=True)
        return grad_distance(shared, target, self.config.distance, weights, batched=True, row_targets=True)

    def objective(self, x: Tensor, soft: Tensor | None) -> Tensor:
        """The per-dummy-batch objective [Q]: gradient distance over all pairs plus the weighted priors.
        Keeps the distance alone (``last_distance``) and that of the held-out tensors (``last_holdout``)."""
        y = soft if soft is not None else self.hard_labels
        total = x.new_zeros(self.Q)
        held = None if self.holdout_weights is None else x.new_zeros(self.Q)
        for sim, target in zip(self.sims, self.targets):
            shared = sim.shared(x, y)
            total = total + self.distance(shared, target).to(x.dtype)
            if held is not None:
                with torch.no_grad():
                    detached = [t.detach() for t in shared]
                    held = held + self.distance(detached, target, self.holdout_weights).to(x.dtype)
        self.last_distance, self.last_holdout = total.detach(), held
        for key, prior in zip(self.prior_keys, self.priors):
            value = prior.term(x, self)
            if value is not None:
                weight = self.row_value(key, prior.weight)
                total = total + (weight.to(value.dtype) if isinstance(weight, Tensor) else weight) * value
        return total

    def scores(self, losses: Tensor) -> Tensor:
        """What ``config.select`` ranks the rows by (the gradient distance, that of the held-out tensors, or
        the objective), from the last objective evaluation (``losses`` its values)."""
        select = self.config.select
        scores = {"objective": losses, "holdout": self.last_holdout}.get(select, self.last_distance)
        return losses if scores is None else scores

    def ranking(self, scores: Tensor) -> Tensor:
        """Keys whose ascending order within each observation's rows is their ranking (``scores`` those of
        ``scores``): the scores themselves, or places by the discrepancy principle."""
        if self.config.select != "discrepancy":
            return scores
        strength = sum((self.row_values[k] for k in self.prior_keys if k in self.row_values),
                       torch.zeros(self.Q, dtype=torch.float64, device=scores.device))
        return discrepancy_ranks(scores, strength, self.P, self.config.discrepancy)

    def prior(self, name: str) -> Prior:
        """The active prior registered as ``name``."""
        for prior in self.priors:
            if prior.name == name:
                return prior
        raise KeyError(f"the problem has no active prior {name!r}")

    def tapped(self, name: str) -> Tensor | None:
        """The values [Q] that prior ``name``'s tap measured in the last simulation, summed over the
        observed pairs (None where no module matched)."""
        index = self._tap_index[name]
        values = [sim.tapped[index] for sim in self.sims if sim.tapped[index] is not None]
        return sum(values[1:], values[0]) if values else None

    def before_step(self, step: int, x: Tensor) -> None:
        """Every prior's schedule, before optimiser step ``step`` at images ``x``."""
        for prior in self.priors:
            prior.before_step(step, x, self)

    def capturable(self) -> bool:
        """Whether the objective keeps its structure during the run (a CUDA graph can replay it)."""
        return all(prior.capturable(self) for prior in self.priors)

    def prior_state(self) -> dict[str, dict]:
        return {key: prior.state_dict() for key, prior in zip(self.prior_keys, self.priors)}

    def load_prior_state(self, state: dict[str, dict]) -> None:
        for key, prior in zip(self.prior_keys, self.priors):
            prior.load_state_dict(state[key])
