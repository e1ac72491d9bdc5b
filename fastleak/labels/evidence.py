"""The final-layer evidence of a stack of observations, in one common convention.

Every (model state, shared quantity) pair of every observation becomes one row: the
final FC layer's full-batch MEAN-reduction gradient (for updates the pseudo-gradient
−update/(lr·steps), rescaled for sum reduction), the FC parameters of the start state and,
for updates, their change over local training. Rows are stacked into [P, ...] tensors so
that methods run as batched tensor math over thousands of observations.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from fastleak._checks import all_finite
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated import Observation, local_schedule
from fastleak.models import final_linear, final_linear_param_names

log = logging.getLogger("fastleak.labels")


@dataclass(frozen=True)
class Evidence:
    """Final-layer view of observations, one row per pair (P rows in all).

    ``grad_w`` [P, C, D] / ``grad_b`` [P, C]: mean-reduction (pseudo-)gradients of the FC
    weight / bias. ``weight``/``bias``: FC parameters of each row's start state, stored once
    per distinct state (``state_index`` [P] points into them). ``delta_w``/``delta_b``: the
    FC change over local training (zero rows for gradients; None when no row is an update). ``num_samples`` [P], ``obs_index`` [P].
    ``pairs``/``observations`` keep what the dummy statistics need to run the model.
    """

    grad_w: torch.Tensor
    grad_b: torch.Tensor | None
    weight: torch.Tensor
    bias: torch.Tensor | None
    state_index: torch.Tensor
    delta_w: torch.Tensor | None
    delta_b: torch.Tensor | None
    num_samples: torch.Tensor
    obs_index: torch.Tensor
    is_update: torch.Tensor
    observations: tuple[Observation, ...]
    pair_ids: tuple[tuple[int, int], ...]
    states: tuple[Mapping[str, torch.Tensor], ...]
    model: nn.Module
    weight_name: str
    bias_name: str | None

    @property
    def num_rows(self) -> int:
        return self.grad_w.shape[0]

    @property
    def num_classes(self) -> int:
        return self.grad_w.shape[1]

    @property
    def has_bias(self) -> bool:
        return self.grad_b is not None

    def subset(self, rows: torch.Tensor) -> "Evidence":
        """The rows ``rows`` (a sorted LongTensor), renumbering nothing."""
        take = lambda t: None if t is None else t.index_select(0, rows)  # noqa: E731
        idx = rows.tolist()
        return Evidence(take(self.grad_w), take(self.grad_b), self.weight, self.bias,
                        take(self.state_index), take(self.delta_w), take(self.delta_b),
                        take(self.num_samples), take(self.obs_index), take(self.is_update),
                        self.observations, tuple(self.pair_ids[i] for i in idx), self.states,
                        self.model, self.weight_name, self.bias_name)


def final_layer(model: nn.Module) -> tuple[nn.Linear, str, str | None]:
    """The model's final nn.Linear and the parameter names of its weight and bias."""
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        weight, bias = final_linear_param_names(model)
    except ValueError as exc:
        raise InvalidValueError(f"model: {exc}") from None
    return final_linear(model), weight, bias


def total_steps(obs: Observation) -> int:
    """Local SGD steps behind an update (1 for a gradient)."""
    return obs.local_steps * obs.local_epochs if obs.kind == "update" else 1


def mean_gradient_scale(obs: Observation, num_samples: int) -> float:
    """Factor turning ``obs``'s shared tensors into a full-batch mean-reduction gradient.

    Updates are W_after − W_before = −lr·Σ_steps g_step; each step's gradient estimates the
    full-batch mean gradient (times its mini-batch size for sum reduction), so
    g ≈ −update / (lr · steps) or −update / (lr · Σ_steps mini-batch size).
    """
    if obs.reduction not in ("mean", "sum"):
        raise InvalidValueError(f"observation.reduction must be 'mean' or 'sum', got {obs.reduction!r}")
    if obs.kind == "gradient":
        return 1.0 if obs.reduction == "mean" else 1.0 / num_samples
    if obs.kind != "update":
        raise InvalidValueError(f"observation.kind must be 'gradient' or 'update', got {obs.kind!r}")
    if obs.local_lr is None or not obs.local_lr > 0:
        raise InvalidValueError(f"an update observation needs local_lr > 0, got {obs.local_lr!r}")
    schedule = local_schedule(num_samples, obs.local_steps, obs.local_batch_size, obs.local_epochs)
    if obs.reduction == "mean":
        return -1.0 / (obs.local_lr * len(schedule))
    return -1.0 / (obs.local_lr * sum(stop - start for start, stop in schedule))


def _check_finite(t: torch.Tensor, what: str) -> None:
    if not all_finite(t):
        raise InvalidValueError(f"{what} contains NaN or inf")


class _StateTable:
    """Distinct model states among many pairs: identical objects first, then equal contents."""

    def __init__(self, weight_key: str) -> None:
        self.weight_key = weight_key
        self.states: list[Mapping[str, torch.Tensor]] = []
        self._by_id: dict[int, int] = {}
        self._by_sig: dict[tuple, list[int]] = {}

    def index(self, state: Mapping[str, torch.Tensor]) -> int:
        hit = self._by_id.get(id(state))
        if hit is not None:
            return hit
        w = state[self.weight_key]
        sig = (tuple(state.keys()), float(w.double().sum()), float(w.double().abs().sum()))
        for cand in self._by_sig.get(sig, []):
            other = self.states[cand]
            if all(a is b or torch.equal(a, b) for a, b in zip(state.values(), other.values())):
                self._by_id[id(state)] = cand
                return cand
        self.states.append(state)
        new = len(self.states) - 1
        self._by_sig.setdefault(sig, []).append(new)
        self._by_id[id(state)] = new
        return new


def resolve_num_samples(obs: Observation, num_samples: int | None, where: str = "observation") -> int:
    b = obs.num_samples
    if num_samples is not None:
        if b is not None and int(num_samples) != int(b):
            raise InvalidValueError(f"num_samples={num_samples} disagrees with {where}.num_samples={b}")
        b = num_samples
    if b is None or int(b) < 1:
        raise InvalidValueError(f"num_samples must be a positive batch size; {where}.num_samples is {b!r}")
    return int(b)


def gather(observations: Sequence[Observation], model: nn.Module,
           num_samples: Sequence[int | None] | None = None) -> Evidence:
    """Stack the final-layer evidence of ``observations`` (all for ``model``'s architecture)."""
    fc, wkey, bkey = final_layer(model)
    if num_samples is None:
        num_samples = [None] * len(observations)
    if len(num_samples) != len(observations):
        raise InvalidValueError(f"num_samples must have one entry per observation ({len(observations)}), "
                                f"got {len(num_samples)}")
    table = _StateTable(wkey)
    gw, gb, dw, db, rows_b, rows_obs, rows_state, rows_upd, pair_ids = [], [], [], [], [], [], [], [], []
    use_bias = bkey is not None
    for i, obs in enumerate(observations):
        where = f"observations[{i}]" if len(observations) > 1 else "observation"
        if not isinstance(obs, Observation):
            raise InvalidTypeError(f"{where} must be a fastleak Observation, got {type(obs).__name__}")
        if not obs.pairs:
            raise InvalidValueError(f"{where} has no pairs")
        names = tuple(obs.param_names)
        if wkey not in names:
            raise InvalidValueError(f"{where}.param_names lacks the final layer weight {wkey!r}; "
                                    "was the observation made with this model?")
        wi = names.index(wkey)
        bi = names.index(bkey) if use_bias and bkey in names else None
        use_bias = use_bias and bi is not None
        b = resolve_num_samples(obs, num_samples[i], where)
        scale = mean_gradient_scale(obs, b)
        for j, pair in enumerate(obs.pairs):
            pw = f"{where}.pairs[{j}]"
            if len(pair.shared) != len(names):
                raise InvalidValueError(f"{pw}.shared has {len(pair.shared)} tensors but param_names has {len(names)}")
            if wkey not in pair.state:
                raise InvalidValueError(f"{pw}.state lacks {wkey!r}")
            w_sh = pair.shared[wi]
            if w_sh.shape != fc.weight.shape:
                raise InvalidValueError(f"{pw}.shared[{wkey!r}] has shape {tuple(w_sh.shape)}, "
                                        f"expected {tuple(fc.weight.shape)} from model")
            _check_finite(w_sh, f"{pw}.shared[{wkey!r}]")
            _check_finite(pair.state[wkey], f"{pw}.state[{wkey!r}]")
            gw.append(w_sh * scale)
            dw.append(w_sh if obs.kind == "update" else None)
            if bi is not None:
                b_sh = pair.shared[bi]
                _check_finite(b_sh, f"{pw}.shared[{bkey!r}]")
                _check_finite(pair.state[bkey], f"{pw}.state[{bkey!r}]")
                gb.append(b_sh * scale)
                db.append(b_sh if obs.kind == "update" else None)
            rows_b.append(b)
            rows_obs.append(i)
            rows_state.append(table.index(pair.state))
            rows_upd.append(obs.kind == "update")
            pair_ids.append((i, j))
    grad_w = torch.stack(gw)
    device, dtype = grad_w.device, grad_w.dtype
    any_update = any(rows_upd)
    delta_w = torch.stack([d if d is not None else torch.zeros_like(gw[0]) for d in dw]) if any_update else None
    weight = torch.stack([s[wkey] for s in table.states]).to(device)
    if use_bias:
        grad_b = torch.stack(gb)
        delta_b = torch.stack([d if d is not None else torch.zeros_like(gb[0]) for d in db]) if any_update else None
        bias = torch.stack([s[bkey] for s in table.states]).to(device)
    else:
        grad_b = delta_b = bias = None
        if bkey is not None:
            log.info("final layer bias is not among the shared parameters; bias-based methods unavailable")
    as_long = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
    return Evidence(grad_w=grad_w, grad_b=grad_b, weight=weight.to(dtype), bias=None if bias is None else bias.to(dtype),
                    state_index=as_long(rows_state), delta_w=delta_w, delta_b=delta_b,
                    num_samples=as_long(rows_b), obs_index=as_long(rows_obs),
                    is_update=torch.tensor(rows_upd, dtype=torch.bool, device=device),
                    observations=tuple(observations), pair_ids=tuple(pair_ids),
                    states=tuple(table.states), model=model, weight_name=wkey,
                    bias_name=bkey if use_bias else None)
