"""One attack step's objective and gradients as a CUDA graph.

At the sizes of gradient inversion (a few images, a small model) one step of the double
backward is hundreds of short kernels, and on a GPU the host's cost of launching them one by
one is larger than the kernels themselves. ``capture_step`` records the step once as a CUDA
graph; every later step replays it with one launch. The graph reads the variables in place,
so the optimiser must update them in place (``torch.optim`` does), and it holds its own
outputs, which every replay overwrites.

A capture is only used after it has proved itself: at a second point, different from the one
it was captured at, its replay must give the losses and gradients that the eager computation
gives. Otherwise, or when the capture fails, the caller gets None and runs the step eagerly.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

log = logging.getLogger(__name__)

Step = Callable[[], tuple[Tensor, tuple[Tensor, ...]]]
WARMUP_CALLS = 2  # eager calls on a side stream before capturing, as torch.cuda.graph asks
RTOL = 1e-3


class StepGraph:
    """A captured ``step``: calling it replays the graph and returns its (losses, gradients)."""

    def __init__(self, step: Step) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.losses, self.grads = step()

    def __call__(self) -> tuple[Tensor, tuple[Tensor, ...]]:
        self.graph.replay()
        return self.losses, self.grads


def _agree(got: Tensor, expected: Tensor) -> bool:
    got, expected = torch.nan_to_num(got.double()), torch.nan_to_num(expected.double())
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return bool(torch.allclose(got, expected, rtol=RTOL, atol=RTOL * scale))


def capture_step(step: Step, variables: Sequence[Tensor]) -> StepGraph | None:
    """Capture ``step`` (which reads ``variables``) as a CUDA graph, or None where it cannot be trusted.

    The check moves the variables to 0.5 * v + 0.25 and back, so that anything the capture
    froze which should follow the variables shows up as a disagreement.
    """
    saved = [v.detach().clone() for v in variables]
    try:
        with torch.cuda.device(variables[0].device):  # capture on the variables' GPU, not the current one
            graph = StepGraph(step)
        with torch.no_grad():
            for v in variables:
                v.mul_(0.5).add_(0.25)
        expected_losses, expected_grads = step()
        losses, grads = graph()
        agree = _agree(losses, expected_losses) and all(_agree(g, e) for g, e in zip(grads, expected_grads))
    except RuntimeError as exc:
        log.warning("the attack step could not be captured as a CUDA graph (%s); running it eagerly", exc)
        return None
    finally:
        with torch.no_grad():
            for v, s in zip(variables, saved):
                v.copy_(s)
    if not agree:
        log.warning("the CUDA graph of the attack step disagrees with the eager step; running it eagerly")
        return None
    log.info("attack step captured as a CUDA graph")
    return graph
