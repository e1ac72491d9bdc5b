"""``AuditStrategy``: a Flower strategy wrapper that records what an honest-but-curious server sees.

Every ``Strategy`` method is delegated to the wrapped strategy (``FedAvg`` by default), so training
is unchanged. On the way, the wrapper keeps the parameters each client was sent in
``configure_fit`` and, in ``aggregate_fit``, turns every client result into a fastleak
``Observation`` (kind "update"): one ``Pair`` whose ``state`` is the full state_dict sent to the
client (parameters and buffers) and whose ``shared`` holds W_after - W_before for every trainable
parameter (``fastleak.federated.trainable_names`` order; buffers are not shared quantities).
``num_samples`` is the client's ``num_examples``; the local-training fields come from the
``TrainingRecipe`` (the protocol the server knows). Parameters travel in the convention of
``fastleak.integrations.flower.weights``.

Output directory, one folder per round::

    <out_dir>/round_001/
      index.json          {"version", "round", "recipe", "audit", "model", "param_names", "input_shape",
                           "num_classes", "failures": [str, ...],
                           "clients": [{"row", "cid", "num_examples", "metrics", "status": "recorded" |
                                        "skipped", "file": str | null, "note": str | null}]}
      client_<cid>.pt     the client's Observation (fastleak.federated.save format; load it with
                          fastleak.federated.load(path, model))
      leakage.json, reconstructions.pt, reconstructions.png
                          written by the background audit (fastleak.integrations.flower.audit)

A client whose parameters do not fit the model (array count or a shape) stops the round with a
ValueError naming the client. A client whose trainable parameters hold NaN or inf is skipped: a
warning is logged and the index marks it "skipped" with a note; it is still passed to the wrapped
strategy, which decides what to aggregate. Label recovery and attacks run in a background worker
(one thread by default) so aggregation never waits for them; ``flush()`` waits for them and
``close()`` (or leaving the ``with`` block) also shuts the worker down.
"""
from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from flwr.common import (EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Scalar, ndarrays_to_parameters,
                         parameters_to_ndarrays)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg, Strategy
from torch import nn

from fastleak._checks import all_finite
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated import Observation, Pair, save, trainable_names
from fastleak.integrations.flower.audit import AuditConfig, Recorded, audit_round
from fastleak.integrations.flower.recipe import TrainingRecipe
from fastleak.integrations.flower.weights import get_weights, state_from_arrays
from fastleak.models import final_linear, spec_of
from fastleak.reports.rundir import write_json

log = logging.getLogger(__name__)

_PLAIN_METRIC = (str, int, float, bool)


def _model_info(model: nn.Module) -> dict[str, Any]:
    spec = spec_of(model)
    if spec is None:
        return {"class": type(model).__name__}
    return {"name": spec.name, "num_classes": spec.num_classes, "in_shape": list(spec.in_shape), "seed": spec.seed,
            "options": dict(spec.options)}


def _plain_metrics(metrics: dict[str, Scalar] | None) -> dict[str, Any]:
    return {k: v for k, v in (metrics or {}).items() if isinstance(v, _PLAIN_METRIC)}


def _describe_failure(failure: tuple[ClientProxy, FitRes] | BaseException) -> str:
    if isinstance(failure, BaseException):
        return f"{type(failure).__name__}: {failure}"
    proxy, res = failure
    return f"client {proxy.cid}: {res.status.code.name} {res.status.message}"


class AuditStrategy(Strategy):
    """Wrap ``strategy`` (default: ``FedAvg`` starting from ``model``'s weights) and record every
    client update of ``model`` as a fastleak Observation under ``out_dir`` (see the module doc).

    ``recipe``: how clients train (``TrainingRecipe``). ``audit``: what the background worker does
    with each round's updates (``AuditConfig``; default: label recovery only; ``AuditConfig(labels=None)``
    only records). ``input_shape``: the per-sample input shape, needed when ``model`` was not built by
    ``fastleak.models.build``. ``executor``: run the audits there instead of in a private one-thread
    pool (it is not shut down by ``close``).
    """

    def __init__(self, strategy: Strategy | None = None, *, model: nn.Module, recipe: TrainingRecipe,
                 out_dir: str | os.PathLike, audit: AuditConfig | None = None,
                 input_shape: Sequence[int] | None = None, executor: Executor | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(recipe, TrainingRecipe):
            raise InvalidTypeError(f"recipe must be a TrainingRecipe, got {type(recipe).__name__}")
        if audit is not None and not isinstance(audit, AuditConfig):
            raise InvalidTypeError(f"audit must be an AuditConfig or None, got {type(audit).__name__}")
        if strategy is not None and not isinstance(strategy, Strategy):
            raise InvalidTypeError(f"strategy must be a flwr.server.strategy.Strategy, got {type(strategy).__name__}")
        if executor is not None and not isinstance(executor, Executor):
            raise InvalidTypeError(f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
        self.model = copy.deepcopy(model).cpu()
        self.param_names = trainable_names(self.model)
        missing = [n for n in self.param_names if n not in self.model.state_dict()]
        if missing:
            raise InvalidValueError(f"model parameters {missing[:4]} are not in its state_dict (shared or tied "
                                    "weights?); the weights convention needs every trainable parameter in the "
                                    "state_dict")
        spec = spec_of(self.model)
        if input_shape is None and spec is None:
            raise InvalidValueError("input_shape is needed (e.g. (3, 32, 32)) for a model not built by "
                                    "fastleak.models.build")
        self.input_shape = tuple(input_shape) if input_shape is not None else tuple(spec.in_shape)
        self.recipe = recipe
        self.audit = audit if audit is not None else AuditConfig()
        try:
            self.num_classes: int | None = final_linear(self.model).out_features
        except ValueError:
            if self.audit.enabled:
                raise
            self.num_classes = None
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.strategy = strategy if strategy is not None else FedAvg(
            initial_parameters=ndarrays_to_parameters(get_weights(self.model)))
        self._executor = executor
        self._own_executor = executor is None
        self._futures: list[Future] = []
        self._sent: dict[str, Parameters] = {}
        self._sent_round: int | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"AuditStrategy({self.strategy!r}, out_dir={str(self.out_dir)!r})"

    # Strategy interface: delegated, with the recording in configure_fit / aggregate_fit.

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.strategy.initialize_parameters(client_manager=client_manager)

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        instructions = self.strategy.configure_fit(server_round=server_round, parameters=parameters,
                                                   client_manager=client_manager)
        self._sent = {str(proxy.cid): ins.parameters for proxy, ins in instructions}
        self._sent_round = server_round
        return instructions

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[tuple[ClientProxy, FitRes] | BaseException]
                      ) -> tuple[Parameters | None, dict[str, Scalar]]:
        self._record(server_round, results, failures)
        return self.strategy.aggregate_fit(server_round=server_round, results=results, failures=failures)

    def configure_evaluate(self, server_round: int, parameters: Parameters,
                           client_manager: ClientManager) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.strategy.configure_evaluate(server_round=server_round, parameters=parameters,
                                                client_manager=client_manager)

    def aggregate_evaluate(self, server_round: int, results: list[tuple[ClientProxy, EvaluateRes]],
                           failures: list[tuple[ClientProxy, EvaluateRes] | BaseException]
                           ) -> tuple[float | None, dict[str, Scalar]]:
        return self.strategy.aggregate_evaluate(server_round=server_round, results=results, failures=failures)

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        return self.strategy.evaluate(server_round=server_round, parameters=parameters)

    # Recording.

    def round_dir(self, server_round: int) -> Path:
        return self.out_dir / f"round_{server_round:03d}"

    def _skip_reason(self, after: dict[str, torch.Tensor], num_examples: int) -> str | None:
        bad = [n for n in self.param_names if not all_finite(after[n])]
        if bad:
            return f"non-finite values (NaN or inf) in parameters {bad[:4]}"
        if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
            return f"num_examples is {num_examples!r}, not a positive int"
        return None

    def _observation(self, server_round: int, cid: str, before: dict[str, torch.Tensor],
                     after: dict[str, torch.Tensor], res: FitRes) -> Observation:
        shared = tuple(after[n] - before[n] for n in self.param_names)
        meta = {"flower": {"round": server_round, "cid": cid, "metrics": _plain_metrics(res.metrics)},
                "model": _model_info(self.model), "recipe": self.recipe.as_dict()}
        return Observation(kind="update", pairs=(Pair(state=before, shared=shared),), param_names=self.param_names,
                           num_samples=res.num_examples, input_shape=self.input_shape, num_classes=self.num_classes,
                           meta=meta, **self.recipe.observation_fields())

    def _record(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                failures: list[tuple[ClientProxy, FitRes] | BaseException]) -> None:
        if self._closed:
            raise RuntimeError("AuditStrategy is closed: create a new one for another run")
        if self._sent_round != server_round:
            raise RuntimeError(f"aggregate_fit of round {server_round} came without configure_fit of that round, so "
                               "the parameters the clients started from are unknown")
        starts: dict[int, dict[str, torch.Tensor]] = {}
        checked = []
        for row, (proxy, res) in enumerate(results):
            cid = str(proxy.cid)
            where = f"client {cid} (round {server_round})"
            sent = self._sent.get(cid)
            if sent is None:
                raise InvalidValueError(f"{where} returned a fit result, but configure_fit sent it no parameters")
            if id(sent) not in starts:
                starts[id(sent)] = state_from_arrays(self.model, parameters_to_ndarrays(sent),
                                                     source=f"the parameters sent to {where}")
            after = state_from_arrays(self.model, parameters_to_ndarrays(res.parameters), source=where)
            checked.append((row, cid, where, starts[id(sent)], after, res))

        round_dir = self.round_dir(server_round)
        round_dir.mkdir(parents=True, exist_ok=True)
        clients, recorded, used = [], [], set()
        for row, cid, where, before, after, res in checked:
            entry: dict[str, Any] = {"row": row, "cid": cid, "num_examples": res.num_examples,
                                     "metrics": _plain_metrics(res.metrics)}
            note = self._skip_reason(after, res.num_examples)
            if note is not None:
                log.warning("%s not recorded: %s", where, note)
                entry.update(status="skipped", file=None, note=note)
            else:
                name = f"client_{re.sub(r'[^A-Za-z0-9_.-]', '_', cid)}.pt"
                name = name if name not in used else f"{name[:-3]}_{row}.pt"
                used.add(name)
                obs = self._observation(server_round, cid, before, after, res)
                save(obs, round_dir / name)
                entry.update(status="recorded", file=name, note=None)
                recorded.append(Recorded(row=row, cid=cid, file=name, observation=obs))
            clients.append(entry)
        write_json(round_dir / "index.json", {
            "round": server_round, "recipe": self.recipe.as_dict(), "audit": self.audit.as_dict(),
            "model": _model_info(self.model), "param_names": list(self.param_names),
            "input_shape": list(self.input_shape), "num_classes": self.num_classes,
            "failures": [_describe_failure(f) for f in failures], "clients": clients})
        log.info("round %d: recorded %d of %d client update(s) in %s", server_round, len(recorded), len(results),
                 round_dir)
        self._sent, self._sent_round = {}, None
        if recorded and self.audit.enabled:
            self._submit(round_dir, server_round, recorded)

    # The background audit.

    def _submit(self, round_dir: Path, server_round: int, recorded: list[Recorded]) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastleak-audit")
        self._futures.append(self._executor.submit(audit_round, round_dir, server_round, tuple(recorded), self.model,
                                                   self.audit))

    def flush(self) -> None:
        """Wait until every submitted round audit has finished; raise if one of them failed."""
        futures, self._futures = self._futures, []
        errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
        if errors:
            raise RuntimeError(f"{len(errors)} round audit(s) failed; the first: {errors[0]!r}") from errors[0]

    def close(self) -> None:
        """Wait for the pending audits (see ``flush``) and shut the private worker down."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            if self._own_executor and self._executor is not None:
                self._executor.shutdown(wait=True)

    def __enter__(self) -> "AuditStrategy":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
