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
from fastleak.attacks.presets import AttackConfig
from fastleak.attacks.priors import Prior, active
from fastleak.attacks.simulate import ClientSimulator, layer_weights
from fastleak.federated.observation import Observation
from fastleak.ops import grad_distance


class Problem:
    """The state shared by the Adam and L-BFGS runs: simulators, targets, labels, random draws and
    the priors. ``labels`` None: soft labels are optimised; else one fixed tensor per observation."""

    def __init__(self, model: nn.Module, observations: Sequence[Observation], config: AttackConfig, restarts: int,
                 labels: list[Tensor] | None, seed: int, device: torch.device,
                 execution: Execution = Execution()) -> None:
        self.config = config
        self.execution = execution
        self.P, self.R = len(observations), restarts
        self.Q = self.P * self.R
        obs = observations[0]
        self.B = obs.num_samples
        self.shape = obs.input_shape_for(model)
        self.C = obs.num_classes_for(model)
        self.priors: list[Prior] = active(config.priors)
        taps = {prior.name: prior.tap() for prior in self.priors}
        taps = {name: tap for name, tap in taps.items() if tap is not None}
        self._tap_index = {name: i for i, name in enumerate(taps)}
        self.sims = [ClientSimulator(model, observations, k, restarts, fedavg_mode=config.fedavg_mode,
                                     taps=list(taps.values()), lean_conv=execution.lean_conv,
                                     vmap_batches=device.type != "cpu" or torch.get_num_threads() > 1)
                     for k in range(obs.num_pairs)]
        self.targets = [sim.target() for sim in self.sims]
        self.weights = layer_weights(config.layer_weights, len(obs.param_names))
        if self.weights is not None:
            self.weights = self.weights.to(device)
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.device = device
        if labels is None:
            self.hard_labels = None
        else:
            self.hard_labels = torch.stack(labels).to(device).repeat_interleave(self.R, dim=0)
        for prior in self.priors:
            prior.setup(self)

    def _random_images(self, generator: torch.Generator) -> Tensor:
        shape = (self.Q, self.B, *self.shape)
        device = generator.device
        if self.config.init == "uniform":
            return torch.rand(shape, generator=generator, device=device)
        return 0.5 + 0.25 * torch.randn(shape, generator=generator, device=device)

    def init_images(self) -> Tensor:
        """The initial images, drawn on the CPU so that a seed gives the same start on every device."""
        return self._random_images(self.generator).to(self.device)

    def fresh_images(self, step: int) -> Tensor:
        """Images for restarts started again at ``step``, drawn on the device (no host synchronisation)
        from a generator seeded by the attack's seed and the step, so a resumed run draws the same."""
        generator = torch.Generator(device=self.device).manual_seed(((self.seed & 0xFFFFFFFF) << 32) | (step + 1))
        return self._random_images(generator)

    def init_soft_labels(self) -> Tensor:
        return torch.randn((self.Q, self.B, self.C), generator=self.generator).to(self.device)

    def distance(self, shared: list[Tensor], target: list[Tensor]) -> Tensor:
        if self.P == 1:
            return grad_distance(shared, [t[0] for t in target], self.config.distance, self.weights, batched=True)
        return grad_distance(shared, target, self.config.distance, self.weights, batched=True, row_targets=True)

    def objective(self, x: Tensor, soft: Tensor | None) -> Tensor:
        """The per-dummy-batch objective [Q]: gradient distance over all pairs plus the weighted priors."""
        y = soft if soft is not None else self.hard_labels
        total = x.new_zeros(self.Q)
        for sim, target in zip(self.sims, self.targets):
            total = total + self.distance(sim.shared(x, y), target).to(x.dtype)
        for prior in self.priors:
            value = prior.term(x, self)
            if value is not None:
                total = total + prior.weight * value
        return total

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
        return {prior.name: prior.state_dict() for prior in self.priors}

    def load_prior_state(self, state: dict[str, dict]) -> None:
        for prior in self.priors:
            prior.load_state_dict(state[prior.name])
