"""Differentiable simulation of what a client shares, for many dummy batches at once.

Q dummy batches (restarts, or independent attacks on the same model) are simulated in one
vectorised computation: the model's parameters are replicated along a leading dimension Q
and the forward pass runs under ``torch.func.vmap``, so each dummy batch gets its own
parameter gradient from a single ``torch.autograd.grad`` call (each replica only sees its
own batch). The gradients keep their graph, so the gradient-matching loss can be
differentiated back to the dummy images (the double backward of gradient inversion).

The vectorisation pays where one dummy batch does not fill the device: on a GPU, and on a CPU with
several threads (the demo on 2 threads: 11.5 s batched, 16.2 s one after another). On a single
CPU thread the replicated-parameter path runs the dummy batches one after another instead
(``vmap_batches`` False): the same values, without vmap's per-call bookkeeping and its batching
rules for the convolution and BatchNorm backward (ResNet-18, B=8, 4 restarts: 4.2 -> 3.7 s per
iteration; the demo 9.5 -> 8.8 s).

When every dummy batch sees the same model state (restarts of one observation, or many
observations of one round) and the model has no BatchNorm, the parameters are not
replicated: ``vmap(grad(loss))`` maps over the dummy batches only, so the forward pass is one
ordinary batched call instead of a Q-grouped one. On LeNet this takes a quarter off the
simulation; on BatchNorm ConvNets the per-sample BatchNorm and convolution backward rules
made it about 9% slower, so those keep replicated parameters.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from fastleak.attacks.lean_conv import lean_convolutions
from fastleak.attacks.priors import Tap
from fastleak.errors import InvalidValueError
from fastleak.federated.losses import client_loss
from fastleak.federated.observation import Observation
from fastleak.models import has_batchnorm

log = logging.getLogger(__name__)


class ClientSimulator:
    """Simulates pair ``pair_index`` of P observations (same model architecture) for Q = P*R
    dummy batches: dummy batch q belongs to observation q // R and uses its model state.

    ``shared(x, y)`` takes dummy images [Q, B, C, H, W] and labels [Q, B] (long) or soft
    label logits [Q, B, classes] and returns one tensor [Q, *param.shape] per shared parameter:
    the gradient (kind "gradient"), the pseudo-gradient of an update (FedAvg, mode
    "pseudo"), or the update of the unrolled local steps (mode "unroll"); updates in both modes
    are expressed in gradient units, (W_before - W_after) / (lr * steps), targets alike.
    ``taps`` (``fastleak.attacks.priors.Tap``) measure the inputs of matching modules in the forward
    pass; after a call, ``tapped`` holds each tap's values [Q], summed over its modules and the local
    steps (None for a tap that matched no module).
    ``lean_conv`` simulates the convolutions with ``fastleak.attacks.lean_conv`` where the parameters
    are replicated (not at one shared state, where it costs more than it saves). ``vmap_batches``
    False simulates replicated dummy batches one after another instead of under vmap.
    """

    def __init__(self, model: nn.Module, observations: Sequence[Observation], pair_index: int, restarts: int, *,
                 fedavg_mode: str = "unroll", taps: Sequence[Tap] = (), lean_conv: bool = False,
                 vmap_batches: bool = True) -> None:
        obs = observations[0]
        if obs.kind == "update" and fedavg_mode not in ("unroll", "pseudo"):
            raise InvalidValueError(f"fedavg_mode must be 'unroll' or 'pseudo', got {fedavg_mode!r}")
        self.protocol = obs.protocol
        self.num_samples = obs.num_samples
        self.restarts = restarts
        self.names = tuple(obs.param_names)
        states = [o.pairs[pair_index].state for o in observations]
        self.fedavg_mode = fedavg_mode
        one_step = obs.kind == "gradient" or fedavg_mode == "pseudo"
        self.shared_state = one_step and not has_batchnorm(model) and all(
            torch.equal(st[n], states[0][n]) for st in states[1:] for n in states[0])
        self.model = lean_convolutions(model) if lean_conv and not self.shared_state else model
        self.taps = [(tap, [m for m in self.model.modules() if tap.matches(m)]) for tap in taps]
        stack = (lambda ts: ts[0].detach()) if self.shared_state else self._stack
        self.params = {n: stack([st[n] for st in states]) for n in self.names}
        self.buffers = {n: stack([st[n] for st in states]) for n in states[0] if n not in self.params}
        self._targets = [self._stack([o.pairs[pair_index].shared[i] for o in observations])
                         for i in range(len(self.names))]
        self.tapped: list[Tensor | None] = [None] * len(self.taps)
        self._measured: list[list[Tensor]] = [[] for _ in self.taps]
        self.vmap_batches = vmap_batches

    def keep(self, rows: Tensor) -> None:
        """Keep only the dummy batches ``rows`` (their states and targets)."""
        if not self.shared_state:
            self.params = {n: p[rows] for n, p in self.params.items()}
            self.buffers = {n: b[rows] for n, b in self.buffers.items()}
        self._targets = [t[rows] for t in self._targets]

    def _stack(self, tensors: list[Tensor]) -> Tensor:
        return torch.stack([t.detach() for t in tensors]).repeat_interleave(self.restarts, dim=0)

    def _update_scale(self) -> float:
        """Updates are compared in gradient units, (W_0 - W_K) / (lr * K): the distance then has the
        scale of a gradient distance, which L-BFGS's absolute tolerances and the priors assume."""
        return -1.0 / (self._lr() * len(self.schedule()))

    def target(self) -> list[Tensor]:
        """The observed quantity, [Q, *param.shape] per parameter, in the form ``shared`` produces."""
        if self.protocol.kind == "update":
            scale = self._update_scale()
            return [t * scale for t in self._targets]
        return self._targets

    def schedule(self) -> tuple[tuple[int, int], ...]:
        """The client's local steps as (start, stop) sample ranges (see fastleak.federated.client)."""
        return self.protocol.schedule(self.num_samples)

    def _lr(self) -> float:
        if self.protocol.local_lr is None or self.protocol.local_lr <= 0:
            raise InvalidValueError("an update observation needs its local_lr (> 0) to be attacked")
        return float(self.protocol.local_lr)

    def _forward_loss(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor):
        """The client's loss on (x, y) and the taps' values [T] for this forward pass."""
        self._measured = [[] for _ in self.taps]
        logits = functional_call(self.model, (params, buffers), (x,))
        target = F.softmax(y, dim=-1) if y.is_floating_point() else y
        loss = client_loss(logits, target, self.protocol.loss, self.protocol.reduction)
        values = [torch.stack(m).sum() if m else loss.new_zeros(()) for m in self._measured]
        self._measured = [[] for _ in self.taps]
        return loss, torch.stack(values) if values else loss.new_zeros(0)

    @contextlib.contextmanager
    def _client_mode(self) -> Iterator[None]:
        """The model in the client's train/eval mode, with the taps' hooks on their modules."""
        handles = [m.register_forward_pre_hook(self._hook(t, tap)) for t, (tap, modules) in enumerate(self.taps)
                   for m in modules]
        was_training = self.model.training
        self.model.train(self.protocol.bn_train)
        try:
            yield
        finally:
            self.model.train(was_training)
            for h in handles:
                h.remove()

    def _hook(self, index: int, tap: Tap):
        def measure(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            self._measured[index].append(tap.measure(module, inputs[0]))

        return measure

    def _set_tapped(self, values: Tensor | None) -> None:
        """``tapped`` from the taps' values [Q, T] (None: nothing was measured)."""
        self.tapped = [None if values is None or not modules else values[:, t]
                       for t, (_, modules) in enumerate(self.taps)]

    def _replicate(self) -> dict[str, Tensor]:
        return {n: p.clone().requires_grad_(True) for n, p in self.params.items()}

    def _gradient(self, params: dict[str, Tensor], x: Tensor, y: Tensor) -> tuple[list[Tensor], Tensor]:
        """Each dummy batch's parameter gradient [Q, ...] and the taps' values [Q, T]."""
        if x.shape[0] == 1 or not self.vmap_batches:
            per_batch = [self._batch_gradient(q, params, x[q], y[q]) for q in range(x.shape[0])]
            grads = [torch.stack(gs) for gs in zip(*(g for g, _ in per_batch))]
            return grads, torch.stack([values for _, values in per_batch])
        buffers = {n: b.clone() for n, b in self.buffers.items()}
        with self._client_mode():
            losses, values = vmap(self._forward_loss, randomness="different")(params, buffers, x, y)
        grads = torch.autograd.grad(losses.sum(), list(params.values()), create_graph=True)
        return list(grads), values

    def _batch_gradient(self, q: int, params: dict[str, Tensor], x: Tensor, y: Tensor) -> tuple[list[Tensor], Tensor]:
        """Dummy batch q alone, without vmap: its parameter gradient and the taps' values [T]."""
        mine = {n: p[q] for n, p in params.items()}
        with self._client_mode():
            loss, values = self._forward_loss(mine, {n: b[q].clone() for n, b in self.buffers.items()}, x, y)
        return list(torch.autograd.grad(loss, list(mine.values()), create_graph=True)), values

    def _shared_state_gradient(self, x: Tensor, y: Tensor) -> list[Tensor]:
        """Per-dummy-batch gradients at the one model state all dummy batches share (no BatchNorm)."""
        def loss(params: dict[str, Tensor], buffers: dict[str, Tensor], xq: Tensor, yq: Tensor) -> Tensor:
            return self._forward_loss(params, buffers, xq, yq)[0]

        with self._client_mode():
            if x.shape[0] == 1:  # as in _gradient: one dummy batch goes without vmap
                grads = grad(loss)(self.params, self.buffers, x[0], y[0])
                return [grads[n].unsqueeze(0) for n in self.names]
            grads = vmap(grad(loss), in_dims=(None, None, 0, 0), randomness="different")(
                self.params, self.buffers, x, y)
        return [grads[n] for n in self.names]

    def shared(self, x: Tensor, y: Tensor) -> list[Tensor]:
        if self.shared_state:
            self._set_tapped(None)
            return self._shared_state_gradient(x, y)
        if self.protocol.kind == "gradient" or self.fedavg_mode == "pseudo":
            grads, values = self._gradient(self._replicate(), x, y)
            self._set_tapped(values)
            return grads
        return self._unrolled_update(x, y)

    def _unrolled_update(self, x: Tensor, y: Tensor) -> list[Tensor]:
        """(W_0 - W_K) / (lr * K) after the client's K local SGD steps, differentiable w.r.t. the dummy data."""
        lr = self._lr()
        start = self._replicate()
        params = dict(start)
        total = None
        for start_idx, stop_idx in self.schedule():
            grads, values = self._gradient(params, x[:, start_idx:stop_idx], y[:, start_idx:stop_idx])
            total = values if total is None else total + values
            params = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
        self._set_tapped(total)
        scale = self._update_scale()
        return [(params[n] - start[n]) * scale for n in self.names]


def layer_weights(scheme: str | Sequence[float], n: int) -> Tensor | None:
    """Per-tensor weights of the gradient distance: 'equal', 'linear' (decreasing with depth),
    'exp' (exponentially decreasing), or an explicit sequence of n weights."""
    if isinstance(scheme, str):
        try:
            make = _LAYER_WEIGHTS[scheme]
        except KeyError:
            raise InvalidValueError(f"layer_weights must be one of {sorted(_LAYER_WEIGHTS)} or {n} numbers, "
                             f"got {scheme!r}") from None
        return make(n)
    w = torch.as_tensor(list(scheme), dtype=torch.float32)
    if w.shape != (n,):
        raise InvalidValueError(f"layer_weights must have {n} values (one per shared tensor), got {w.numel()}")
    return w


_LAYER_WEIGHTS = {
    "equal": lambda n: None,
    "linear": lambda n: torch.arange(n, 0, -1, dtype=torch.float32) / n,
    "exp": lambda n: torch.exp(torch.linspace(4, 0, n)),
}
