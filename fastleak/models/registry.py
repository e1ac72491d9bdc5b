"""The model registry and ``build``: deterministic construction of the registered networks."""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from fastleak._checks import integer, positive_int, positive_ints
from fastleak._registry import Registry
from fastleak.errors import InvalidTypeError, InvalidValueError

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


@dataclass(frozen=True)
class ModelSpec:
    """How a model was built; ``build(**spec.build_kwargs())`` rebuilds it bit for bit."""

    name: str
    num_classes: int
    in_shape: tuple[int, ...]
    seed: int
    options: tuple[tuple[str, Any], ...] = ()

    def build_kwargs(self) -> dict[str, Any]:
        return dict(name=self.name, num_classes=self.num_classes, in_shape=self.in_shape, seed=self.seed,
                    **dict(self.options))


def register(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register ``factory(num_classes, in_shape, **options) -> nn.Module`` under ``name``."""
    return MODELS.register(name)


def names() -> tuple[str, ...]:
    return MODELS.names()


def spec_of(model: nn.Module) -> ModelSpec | None:
    """The ``ModelSpec`` of a model made by ``build``, else None."""
    spec = getattr(model, "fastleak_spec", None)
    return spec if isinstance(spec, ModelSpec) else None


def user_class(path: str) -> type[nn.Module]:
    """The ``nn.Module`` subclass named by ``"package.module:Class"``, imported from ``sys.path``."""
    module_name, _, class_name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidValueError(f"cannot import model class {path!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise InvalidValueError(f"{path!r} is not a torch.nn.Module subclass")
    return cls


def _check_sizes(sizes: dict[str, Any]) -> None:
    """The sizes a constructor takes: ``num_classes`` a positive int, ``in_shape`` positive ints."""
    positive_int(sizes.get("num_classes", 1), "num_classes")
    positive_ints(sizes.get("in_shape", (1,)), "in_shape", "(3, 32, 32)")


def build(name: str, num_classes: int | None, in_shape: tuple[int, ...] | None = (3, 32, 32), seed: int = 0,
          **kw: Any) -> nn.Module:
    """Build model ``name`` for inputs ``[n, *in_shape]`` and ``num_classes`` outputs.

    ``name`` is a registered model or ``"package.module:Class"``, a user's ``nn.Module`` class;
    such a class receives ``num_classes`` and ``in_shape`` only if its constructor takes them.
    Initialisation is deterministic given ``seed`` and leaves the global torch RNG untouched.
    The model is returned on the CPU in train mode, with ``model.fastleak_spec`` (a ``ModelSpec``)
    set. Every registered model ends in an ``nn.Linear`` classifier; ``bias=False`` removes its
    bias. Other keyword options depend on the model (see each factory's docstring).
    """
    factory: Callable[..., nn.Module] = user_class(name) if ":" in name else MODELS.get(name)
    integer(seed, "seed")
    params = inspect.signature(factory).parameters
    sizes = {k: v for k, v in (("num_classes", num_classes), ("in_shape", in_shape)) if k in params}
    _check_sizes(sizes)
    sizes = {k: tuple(v) if k == "in_shape" else v for k, v in sizes.items()}
    accepted = [p for p in params if p not in ("num_classes", "in_shape")]
    unknown = sorted(set(kw) - set(accepted))
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise InvalidTypeError(f"model {name!r} does not accept option(s) {', '.join(unknown)}; "
                               f"accepted options: {', '.join(accepted) or 'none'}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(**sizes, **kw)
    model.fastleak_spec = ModelSpec(name, num_classes, tuple(in_shape) if in_shape else None, seed,
                                    tuple(sorted(kw.items())))
    return model
