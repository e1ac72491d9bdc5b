"""``rgap`` (Zhu & Blaschko, ICLR 2021): one sample read recursively, from the classifier back to the input.

A chain of layers ``z_i = layer_i(x_i)``, ``x_{i+1} = act_i(z_i)`` leaks, for one sample, the classifier's
input ``x_L`` (its weight gradient over its bias gradient, ``fastleak.closedform.linear``) and its output
gradient ``k_L = dL/dz_L`` (the bias gradient). Going back one layer: the activation's inverse gives its
pre-activation ``z_i = act_i^{-1}(x_{i+1})`` and ``k_i = (layer_{i+1}^T k_{i+1}) * act_i'(z_i)``; then
``x_i`` solves two linear systems at once,

* the gradient constraints ``dW_i = k_i (x) patches(x_i)``: the observed weight gradient, linear in
  ``x_i`` once ``k_i`` is known;
* the forward constraints ``layer_i(x_i) = z_i``: the layer reproduces its known output (a ReLU
  hides the outputs it zeroed, which drop out, and passes no gradient there);

by least squares (CGLS on the two operators, matrix-free, float64). Where the stacked system has full
column rank for every layer the input is determined (R-GAP's rank condition); ``rank_analysis`` computes
these ranks for any model ("how much of the input the gradient determines").

What it recurses through: ``nn.Linear`` and ``nn.Conv2d`` (no groups), the invertible activations
``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``Identity``, ``ReLU`` (only its positive outputs constrain), and
reshapes (``nn.Flatten``, ``nn.Unflatten`` or a function that only reshapes). The classifier needs a
bias; the batch one sample. Everything else (BatchNorm, pooling, skip connections) ends the chain with
an error naming the module.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastleak.closedform.linear import layer_input
from fastleak.closedform.registry import Reconstruction, Target, method
from fastleak.errors import InvalidValueError

log = logging.getLogger(__name__)

ACTIVATIONS = (nn.LeakyReLU, nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Identity)
RESHAPES = (nn.Flatten, nn.Unflatten)
LAYERS = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class Step:
    """One module of the chain, in execution order: ``kind`` "layer", "activation" or "reshape"; the
    per-sample shapes of its input and output."""

    name: str
    module: nn.Module | None
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


class NotAChain(InvalidValueError):
    """The model is not a chain R-GAP can recurse through; the message names the module."""


def _kind(name: str, module: nn.Module) -> str:
    if isinstance(module, LAYERS):
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"
                                              or isinstance(module.padding, str)):
            raise NotAChain(f"rgap: {name!r} is a Conv2d with groups={module.groups}, padding "
                            f"{module.padding!r} ({module.padding_mode}); it needs groups=1 and numeric zero padding")
        return "layer"
    if isinstance(module, ACTIVATIONS):
        if isinstance(module, nn.LeakyReLU) and module.negative_slope <= 0:
            raise NotAChain(f"rgap: {name!r} is a LeakyReLU with slope {module.negative_slope}, not invertible")
        return "activation"
    if isinstance(module, nn.Dropout) and (module.p == 0 or not module.training):
        return "reshape"
    if isinstance(module, RESHAPES):
        return "reshape"
    raise NotAChain(f"rgap cannot recurse through {name!r} ({type(module).__name__}): it reads chains of Linear/Conv2d "
                    "layers, invertible activations (LeakyReLU, Sigmoid, Tanh, ReLU's positive part) and reshapes")


def chain(model: nn.Module, in_shape: tuple[int, ...]) -> list[Step]:
    """The model's modules in execution order, checked to form a chain (module docs); raises ``NotAChain``."""
    calls: list[tuple[str, nn.Module, Tensor, Tensor]] = []
    leaves = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(lambda mod, args, out, _n=n: calls.append((_n, mod, args[0], out)))
               for n, m in leaves]
    probe = torch.rand((1, *in_shape), generator=torch.Generator().manual_seed(0)).to(next(model.parameters()))
    try:
        with torch.no_grad():
            output = model(probe)
    finally:
        for h in handles:
            h.remove()
    steps: list[Step] = []
    previous = probe
    for name, module, inp, out in calls:
        if inp is not previous:
            if inp.numel() != previous.numel() or not torch.equal(inp.reshape(-1), previous.reshape(-1)):
                where = f"the output of {steps[-1].name!r}" if steps else "the model's input"
                raise NotAChain(f"rgap needs a chain of layers: the input of {name!r} is not {where} (a skip "
                                "connection, pooling or another function runs between them)")
            steps.append(Step("(reshape)", None, "reshape", tuple(previous.shape[1:]), tuple(inp.shape[1:])))
        steps.append(Step(name, module, _kind(name, module), tuple(inp.shape[1:]), tuple(out.shape[1:])))
        previous = out
    if output is not previous:
        raise NotAChain("rgap needs a chain of layers: the model's output is not the output of its last module")
    layers = [s for s in steps if s.kind == "layer"]
    if not layers or not isinstance(layers[-1].module, nn.Linear) or steps[-1] is not layers[-1]:
        raise NotAChain("rgap needs the model to end in its nn.Linear classifier")
    return steps


def _invert(module: nn.Module, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(pre-activation, its derivative, which entries are known) of an activation's output ``value``."""
    known = torch.ones_like(value, dtype=torch.bool)
    if isinstance(module, nn.LeakyReLU):
        slope = module.negative_slope
        return torch.where(value >= 0, value, value / slope), torch.where(value >= 0, 1.0, slope).to(value), known
    if isinstance(module, nn.ReLU):
        known = value > 0
        return value, known.to(value), known
    if isinstance(module, nn.Sigmoid):
        known = (value > 0) & (value < 1)
        v = value.clamp(1e-300, 1 - 1e-16)
        return torch.log(v / (1 - v)), value * (1 - value), known
    if isinstance(module, nn.Tanh):
        known = value.abs() < 1
        return torch.atanh(value.clamp(-1 + 1e-16, 1 - 1e-16)), 1 - value * value, known
    return value, torch.ones_like(value), known


@dataclass(frozen=True)
class Constraints:
    """The linear system of one layer's input x: ``forward(x)`` [rows] = ``target`` [rows], with ``adjoint`` its
    transpose; ``gradient_rows`` of the rows are the weight gradient's, the rest the layer's known outputs."""

    forward: Callable[[Tensor], Tensor]
    adjoint: Callable[[Tensor], Tensor]
    target: Tensor
    unknowns: int
    gradient_rows: int

    @property
    def rows(self) -> int:
        return self.target.numel()

    def gram(self, chunk: int = 512) -> Tensor:
        """The normal matrix A^T A [unknowns, unknowns] of the system (float64), one operator pass per unknown."""
        basis = torch.eye(self.unknowns, dtype=torch.float64, device=self.target.device)
        normal = torch.vmap(lambda e: self.adjoint(self.forward(e)))
        return torch.cat([normal(basis[i:i + chunk]) for i in range(0, self.unknowns, chunk)])


def _rms(t: Tensor) -> Tensor:
    return t.pow(2).mean().sqrt().clamp_min(1e-300)


def constraints(module: nn.Module, in_shape: tuple[int, ...], k: Tensor, z: Tensor, known: Tensor,
                weight_grad: Tensor) -> Constraints:
    """The system of ``module``'s input (module docs): its output gradient ``k``, its output ``z`` where
    ``known``, its observed ``weight_grad``. Each block of rows is scaled to unit RMS of its target."""
    weight = module.weight.detach().double()
    bias = module.bias.detach().double() if module.bias is not None else None
    k, z, dw = k.double(), z.double(), weight_grad.double()
    out = z - (bias.view(-1, *[1] * (z.dim() - 1)) if bias is not None else 0)
    out = out[known]
    g_scale, f_scale = _rms(dw), _rms(out) if out.numel() else torch.ones((), dtype=torch.float64)
    if isinstance(module, nn.Conv2d):
        geometry = dict(kernel_size=module.kernel_size, dilation=module.dilation, padding=module.padding,
                        stride=module.stride)
        kernel = k.reshape(k.shape[0], -1)

        def forward(x: Tensor) -> Tensor:
            image = x.reshape(1, *in_shape)
            patches = F.unfold(image, **geometry)[0]                                   # [c kh kw, L]
            grad = (kernel @ patches.T).flatten() / g_scale
            conv = F.conv2d(image, weight, None, module.stride, module.padding, module.dilation)[0]
            return torch.cat([grad, conv[known] / f_scale])
    else:
        def forward(x: Tensor) -> Tensor:
            grad = torch.outer(k, x).flatten() / g_scale
            return torch.cat([grad, (weight @ x)[known] / f_scale])
    unknowns = math.prod(in_shape)
    _, pullback = torch.func.vjp(forward, torch.zeros(unknowns, dtype=torch.float64, device=k.device))
    target = torch.cat([dw.flatten() / g_scale, out / f_scale])
    return Constraints(forward, lambda r: pullback(r)[0], target, unknowns, dw.numel())


def cgls(system: Constraints, iterations: int, tolerance: float) -> tuple[Tensor, int]:
    """The least-squares solution of ``system`` by conjugate gradients on the normal equations, from zero
    (so the minimum-norm one where the system is rank-deficient); stops when the normal residual falls to
    ``tolerance`` of its start. Returns (x, iterations run)."""
    x = system.target.new_zeros(system.unknowns)
    r = system.target.clone()
    s = system.adjoint(r)
    p = s.clone()
    gamma = s.dot(s)
    stop = tolerance ** 2 * gamma
    done = 0
    for done in range(1, iterations + 1):
        q = system.forward(p)
        alpha = gamma / q.dot(q).clamp_min(1e-300)
        x = x + alpha * p
        r = r - alpha * q
        s = system.adjoint(r)
        new = s.dot(s)
        if new <= stop:
            break
        p = s + (new / gamma) * p
        gamma = new
    return x, done


def _pull_back(module: nn.Module, x: Tensor, k: Tensor) -> Tensor:
    """dL/dx of ``module`` at input ``x`` (one sample) given dL/d(output) ``k``: the layer's transpose applied to k."""
    weight = module.weight.detach().double()
    if isinstance(module, nn.Conv2d):
        return torch.nn.grad.conv2d_input((1, *x.shape), weight, k.double()[None], module.stride, module.padding,
                                          module.dilation)[0]
    return weight.T @ k.double()


def _reconstruct(target: Target, steps: list[Step], iterations: int, tolerance: float, partial: bool) -> Tensor:
    names = {id(p): n for n, p in target.model.named_parameters()}
    grads = {id(p): target.gradients[names[id(p)]] for p in target.model.parameters() if id(p) in names}
    last = steps[-1].module
    if last.bias is None:
        raise InvalidValueError("rgap needs the classifier's bias: its input is read off the weight gradient over "
                                "the bias gradient (build the model with bias=True)")
    value = layer_input(grads[id(last.weight)], grads[id(last.bias)])        # the classifier's input
    grad = _pull_back(last, value, grads[id(last.bias)].double())           # dL/dlogits = the bias gradient
    known = torch.ones_like(value, dtype=torch.bool)
    for step in reversed(steps[:-1]):                                      # value: this step's output
        if step.kind == "reshape":
            value, grad, known = (t.reshape(step.in_shape) for t in (value, grad, known))
        elif step.kind == "activation":
            value, slope, invertible = _invert(step.module, value)
            grad, known = grad * slope, known & invertible
        else:
            system = constraints(step.module, step.in_shape, grad, value, known, grads[id(step.module.weight)])
            if system.rows < system.unknowns and not partial:
                raise InvalidValueError(
                    f"rgap: layer {step.name!r} has {system.unknowns} unknown inputs but only {system.rows} constraints "
                    f"({system.gradient_rows} from its weight gradient, {system.rows - system.gradient_rows} from its "
                    "known outputs): the gradient does not determine its input (fastleak.closedform.rank_analysis); "
                    "partial=True returns the minimum-norm solution")
            x, used = cgls(system, iterations, tolerance)
            residual = (system.forward(x) - system.target).norm() / system.target.norm().clamp_min(1e-300)
            log.info("rgap %s: %d unknowns, %d gradient and %d forward constraints, %d CGLS iterations, relative "
                     "residual %.2e", step.name, system.unknowns, system.gradient_rows,
                     system.rows - system.gradient_rows, used, float(residual))
            grad = _pull_back(step.module, x.reshape(step.in_shape), grad)
            value = x.reshape(step.in_shape)
            known = torch.ones_like(value, dtype=torch.bool)
    return value


@method("rgap")
def rgap(targets: list[Target], labels: list[Tensor], *, iterations: int = 20000, tolerance: float = 1e-13,
         partial: bool = False) -> list[Reconstruction]:
    """R-GAP: one sample read recursively through the chain's layers (module docs).

    iterations, tolerance: the CGLS budget of each layer's least-squares problem; partial: go on (with the
    minimum-norm solution) where a layer has fewer constraints than unknowns, instead of refusing."""
    if targets[0].num_samples != 1:
        raise InvalidValueError(f"rgap reads one sample: the observation's batch has {targets[0].num_samples} "
                                "(the recursion needs that sample's own output gradients)")
    if iterations < 1 or not tolerance > 0:
        raise InvalidValueError(f"rgap options: iterations must be >= 1 and tolerance > 0, got {iterations!r}, "
                                f"{tolerance!r}")
    steps = chain(targets[0].model, targets[0].input_shape)
    out = []
    for target, y in zip(targets, labels):
        x = _reconstruct(target, steps, iterations, tolerance, partial)
        out.append(Reconstruction(images=x.reshape(1, 1, *target.input_shape), labels=y))
    return out


# Singular values below this share of the largest count as zero: a float32 gradient's rounding (1e-7)
# amplified past recovery, and the smallest ratio the eigenvalues of A^T A resolve in float64.
RANK_TOLERANCE = 1e-6


@dataclass(frozen=True)
class LayerRank:
    """One layer's system for its input (module docs): ``unknowns`` (its input's size), the constraint rows of
    its weight gradient and of its known outputs, the numerical ``rank`` (None where the layer has more than
    ``max_unknowns`` inputs: then only ``bound`` = min(unknowns, rows) is known) and the ``deficiency``,
    unknowns - rank: the dimensions of its input the gradient leaves free."""

    name: str
    kind: str
    unknowns: int
    gradient_constraints: int
    forward_constraints: int
    rank: int | None
    bound: int

    @property
    def deficiency(self) -> int | None:
        return None if self.rank is None else self.unknowns - self.rank


@dataclass(frozen=True)
class RankAnalysis:
    """R-GAP's rank analysis of a model on one sample: every Linear/Conv2d layer's ``LayerRank`` in execution
    order; ``recursable`` whether rgap can walk the model (else ``reason``); ``determined`` whether every layer
    has full rank (None while a layer's rank was not computed, or when rgap cannot recurse: then the ranks are each
    layer's alone, given its outputs); ``input_fraction``: the first layer's rank over
    its unknowns, the share of the input's dimensions its constraints fix given its output; ``verdict``: one
    sentence."""

    layers: tuple[LayerRank, ...]
    recursable: bool
    reason: str | None
    determined: bool | None
    input_fraction: float | None
    verdict: str


def _probe(model: nn.Module, in_shape: tuple[int, ...], x: Tensor | None, y: Tensor | None, loss: str,
           seed: int) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """Each Linear/Conv2d layer's (input, output, output gradient) for one sample, by name, in execution order."""
    from fastleak.federated.losses import client_loss

    gen = torch.Generator().manual_seed(seed)
    param = next(model.parameters())
    sample = (x[:1] if x is not None else torch.rand((1, *in_shape), generator=gen)).to(param)
    seen: dict[str, tuple[Tensor, Tensor]] = {}
    def record(name: str):
        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            seen.setdefault(name, (args[0], out))
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if isinstance(m, LAYERS)]
    try:
        with torch.enable_grad():
            logits = model(sample)
            label = (y[:1] if y is not None else torch.randint(logits.shape[-1], (1,), generator=gen)).to(logits.device)
            outputs = [out for _, out in seen.values()]
            grads = torch.autograd.grad(client_loss(logits, label, loss), outputs)
    finally:
        for h in handles:
            h.remove()
    return {n: (inp.detach()[0], out.detach()[0], g[0]) for (n, (inp, out)), g in zip(seen.items(), grads)}


def _known_outputs(steps: list[Step] | None, name: str, z: Tensor) -> Tensor:
    """Which outputs of layer ``name`` the recursion knows: those its activation can invert (all, without a
    chain: an upper bound)."""
    if steps is None:
        return torch.ones_like(z, dtype=torch.bool)
    index = next(i for i, s in enumerate(steps) if s.name == name)
    later = [s for s in steps[index + 1:] if s.kind != "reshape"]
    if later and later[0].kind == "activation":
        module = later[0].module
        return _invert(module, module(z.double()))[2].reshape(z.shape)
    return torch.ones_like(z, dtype=torch.bool)


def _layer_rank(name: str, module: nn.Module, inp: Tensor, z: Tensor, k: Tensor, known: Tensor,
                max_unknowns: int) -> LayerRank:
    n = inp.numel()
    system = constraints(module, tuple(inp.shape), k, z, known, torch.ones_like(module.weight))
    rows = system.rows
    forward_rows = rows - system.gradient_rows
    if isinstance(module, nn.Linear):
        rank = n if bool((k != 0).any()) else int(torch.linalg.matrix_rank(module.weight.detach().double()[known]))
    elif n <= max_unknowns:
        eigenvalues = torch.linalg.eigvalsh(system.gram())                 # the squared singular values
        rank = int((eigenvalues > RANK_TOLERANCE ** 2 * eigenvalues[-1].clamp_min(1e-300)).sum())
    else:
        rank = None
    return LayerRank(name, type(module).__name__, n, system.gradient_rows, forward_rows, rank, min(n, rows))


def rank_analysis(model: nn.Module, x: Tensor | None = None, y: Tensor | None = None, *,
                  in_shape: tuple[int, ...] | None = None, loss: str = "ce", max_unknowns: int = 4096,
                  seed: int = 0) -> RankAnalysis:
    """How much of one input ``model``'s gradient determines: R-GAP's rank analysis, layer by layer.

    x [1, ...] and y [1]: the sample to analyse (the client's own; default a seeded uniform image and a random
    label, which sets the activation pattern of ReLUs and the output gradients). in_shape: the input's shape when
    neither ``x`` nor the model's ``fastleak_spec`` gives it. Layers with more than ``max_unknowns`` inputs get the
    counting bound only (a dense singular-value decomposition of their system would be too large). The model runs
    in eval mode (BatchNorm with its running statistics); any model works, the verdict says whether rgap can
    recurse through it.
    """
    from fastleak.models import spec_of

    if in_shape is None:
        spec = spec_of(model)
        in_shape = tuple(x.shape[1:]) if x is not None else (spec.in_shape if spec is not None else None)
    if in_shape is None:
        raise InvalidValueError("rank_analysis needs the input's shape: pass x or in_shape")
    was_training = model.training
    model.eval()
    try:
        try:
            steps, reason = chain(model, tuple(in_shape)), None
        except NotAChain as exc:
            steps, reason = None, str(exc)
        probed = _probe(model, tuple(in_shape), x, y, loss, seed)
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    layers = tuple(_layer_rank(name, modules[name], inp, z, k, _known_outputs(steps, name, z), max_unknowns)
                   for name, (inp, z, k) in probed.items())
    first = layers[0] if layers else None
    fraction = first.rank / first.unknowns if first is not None and first.rank is not None else None
    deficient = [layer for layer in layers if layer.deficiency]
    unknown = [layer for layer in layers if layer.rank is None]
    if deficient:
        worst = deficient[0]
        determined, verdict = False, (f"layer {worst.name!r} leaves {worst.deficiency} of its {worst.unknowns} inputs "
                                      f"free (rank {worst.rank})")
    elif unknown:
        determined, verdict = None, (f"{len(unknown)} layer(s) too large to compute (first {unknown[0].name!r}, "
                                     f"{unknown[0].unknowns} inputs; raise max_unknowns)")
    else:
        determined, verdict = True, "every layer's system has full rank"
    if steps is None:
        verdict = f"not recursable: {reason}; each layer alone, given its outputs: {verdict}"
        determined = None
    else:
        verdict = {True: "determined: ", False: "not determined: ", None: "undecided: "}[determined] + verdict
    return RankAnalysis(layers, steps is not None, reason, determined, fraction, verdict)
