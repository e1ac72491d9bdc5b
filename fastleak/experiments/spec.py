"""The complete, serialisable description of one experiment."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fastleak import defenses
from fastleak._checks import known_fields, optional_positive_int, positive_int, positive_number
from fastleak.errors import InvalidValueError

MODES = tuple(defenses.PROTOCOLS)  # the FL protocols: "fedsgd", "fedavg", "multi-pair"
CLIENT_BN = ("train", "eval")
THREATS = ("honest", "malicious")
# Fields added after results files existed, and the value that reproduces the experiments written
# before them; ``fastleak.sweeps.job_key`` leaves them out at that value so old results stay valid.
LATER_FIELDS = {"threat": "honest", "clients": 1, "public_data": None, "priors": {}}
# The aggregation defense that ``clients`` > 1 selects, over that many clients (its one parameter).
AGGREGATION = "secure_aggregation"


@dataclass(frozen=True)
class ExperimentSpec:
    """What to simulate and how to attack it. Every field maps to a CLI option of the same name.

    data_root/split: where the private batch comes from (``fastleak.data.load``'s ``root`` and
    ``split``): the shipped samples or a dataset on disk, its held-out "test" split by default.
    model_options: keyword options of ``fastleak.models.build`` (e.g. {"width": 32}).
    state_dict: a ``torch.save``'d state dict (e.g. a round of ``fastleak train``) loaded into the
    model; None: the model as ``build`` initialises it.
    client_bn: how the client runs BatchNorm: "train" (batch statistics, as local training does and as
    ``models.build`` returns the model) or "eval" (the running statistics).
    labels: the batch's label pattern for ``fastleak.data.load`` ("unique", "random", "repeat:k").
    mode: "fedsgd" (one gradient), "fedavg" (an update after ``local_steps`` local SGD steps with
    ``local_lr`` and ``local_batch_size``) or "multi-pair" (``pairs`` gradients of the batch under
    re-initialised models).
    defense/defense_params: a ``fastleak.defenses`` name that acts on every client and its parameters:
    a transform of what the client shares (gaussian, clip, ...) or a client step (dp_sgd: the client
    clips and noises per-example gradients); the registry says which modes each applies to.
    clients: secure aggregation over this many clients (``AGGREGATION``, ``fastleak.defenses.secure_aggregate``):
    each draws its own batch of ``batch`` images (``clients * batch`` in all, the ground truth), and the
    server sees only the mean of their shared tensors. With the honest threat this needs FedSGD.
    threat: "honest" (an honest-but-curious server: the attack ``preset`` optimises dummy inputs) or
    "malicious" (the server sends a modified model, ``fastleak.malicious``; ``preset`` is "imprint" or
    "trap" and ``attack_options`` override its config fields, e.g. {"bins": 64}).
    restarts/iterations: None for the preset's (``fastleak.attack``'s defaults: one restart per
    candidate of the preset's search).
    attack_labels: "recover" (``label_method``), "optimize" or "true" (the ground truth, for ablations).
    public_data: the server's labelled public data for recovered labels, "NAME[:SPLIT]" of
    ``fastleak.data`` (read from ``data_root``; split "train" by default), "none", or None: the other
    split of ``dataset`` when it can be read (``fastleak.labels.counts``'s ``public``).
    attack_options: overrides of the preset's ``AttackConfig`` fields.
    priors: changes to the preset's priors, prior by prior and parameter by parameter (``fastleak.attack``'s
    ``priors``; e.g. {"tv": {"weight": 1e-4}}; a prior of your own by its dotted module path).
    """

    dataset: str = "cifar10"
    data_root: str | None = None
    split: str = "test"
    model: str = "convnet"
    model_options: dict[str, Any] = field(default_factory=dict)
    state_dict: str | None = None
    client_bn: str = "train"
    batch: int = 4
    labels: str = "random"
    mode: str = "fedsgd"
    local_steps: int = 4
    local_lr: float = 0.01
    local_batch_size: int | None = None
    pairs: int = 2
    defense: str | None = None
    defense_params: dict[str, Any] = field(default_factory=dict)
    preset: str = "inverting"
    restarts: int | None = None
    iterations: int | None = None
    attack_labels: str = "recover"
    label_method: str = "auto"
    public_data: str | None = None
    attack_options: dict[str, Any] = field(default_factory=dict)
    priors: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    threat: str = "honest"
    clients: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.client_bn not in CLIENT_BN:
            raise InvalidValueError(f"client_bn must be 'train' or 'eval', got {self.client_bn!r}")
        if self.split not in ("train", "test"):
            raise InvalidValueError(f"split must be 'train' or 'test', got {self.split!r}")
        if self.attack_labels not in ("recover", "optimize", "true"):
            raise InvalidValueError(f"attack_labels must be recover, optimize or true, got {self.attack_labels!r}")
        if self.public_data is not None and (not isinstance(self.public_data, str) or
                                             self.public_data.partition(":")[2] not in ("", "train", "test")):
            raise InvalidValueError(f"public_data must be 'NAME[:SPLIT]' (split train or test) or 'none', got "
                                    f"{self.public_data!r}")
        if not isinstance(self.priors, dict) or not all(isinstance(k, str) and isinstance(v, dict)
                                                        for k, v in self.priors.items()):
            raise InvalidValueError(f"priors must map prior names to their parameters, e.g. "
                                    f"{{'tv': {{'weight': 0.0001}}}}, got {self.priors!r}")
        for name in ("batch", "pairs", "local_steps", "clients"):
            positive_int(getattr(self, name), name)
        optional_positive_int(self.iterations, "iterations")
        optional_positive_int(self.restarts, "restarts")
        optional_positive_int(self.local_batch_size, "local_batch_size")
        positive_number(self.local_lr, "local_lr")
        self._check_threat()
        self._check_defenses()

    def _check_threat(self) -> None:
        if self.threat not in THREATS:
            raise InvalidValueError(f"threat must be one of {', '.join(THREATS)}, got {self.threat!r}")
        if self.threat == "malicious":
            from fastleak.malicious import presets

            if self.preset not in presets.names():
                raise InvalidValueError(f"preset must be one of {', '.join(presets.names())} under the malicious "
                                        f"threat, got {self.preset!r}")
            if self.mode == "multi-pair":
                raise InvalidValueError("mode must be fedsgd or fedavg under the malicious threat, got 'multi-pair'")
        elif self.clients > 1 and self.mode != "fedsgd":
            raise InvalidValueError(f"clients={self.clients} (secure aggregation) needs mode 'fedsgd' under the honest "
                                    f"threat, got {self.mode!r}: the mean of several clients' FedAvg updates is no "
                                    "single client's update; the malicious threat reads it in closed form")

    def _check_defenses(self) -> None:
        if self.defense is not None and self.defense not in defenses.names("client", "shared"):
            raise InvalidValueError(f"defense must be one of {', '.join(defenses.names('client', 'shared'))} (each "
                                    f"client's), got {self.defense!r}"
                                    + (f"; {self.defense} is set by clients=K" if self.defense == AGGREGATION else ""))
        defenses.check(self.mode, self.defenses())

    def defenses(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        """The round's defenses as ``fastleak.defenses`` (name, params) pairs: ``defense`` on every
        client, then ``AGGREGATION`` over the clients when there are several."""
        own = ((self.defense, dict(self.defense_params)),) if self.defense is not None else ()
        return own + (((AGGREGATION, {"clients": self.clients}),) if self.clients > 1 else ())

    def with_defense(self, name: str, params: dict[str, Any]) -> "ExperimentSpec":
        """This spec with the registered defense ``name`` added: ``AGGREGATION`` sets ``clients``, any
        other defense replaces ``defense``/``defense_params``."""
        if name == AGGREGATION:
            defenses.get(name).check_params(params)
            return self.replace(clients=params["clients"])
        return self.replace(defense=name, defense_params=dict(params))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExperimentSpec":
        known_fields(values, cls, "experiment")
        return cls(**values)

    def replace(self, **changes: Any) -> "ExperimentSpec":
        return self.from_dict({**self.as_dict(), **changes})
