"""Flower integration: audit a federated run from the point of view of an honest-but-curious server.

    from fastleak.integrations.flower import AuditConfig, AuditStrategy, TrainingRecipe

    recipe = TrainingRecipe(local_steps=2, lr=0.001, batch_size=2)   # how clients train
    with AuditStrategy(FedAvg(...), model=model, recipe=recipe, out_dir="audit",
                       audit=AuditConfig(labels="auto", attack="inverting", iterations=200)) as strategy:
        ...  # pass `strategy` to the ServerApp and run Flower

Weights convention (``weights``): clients send every ``model.state_dict()`` entry in order, as
``get_weights(model)`` does, and load the server's with ``set_weights(model, arrays)``.
Needs Flower: ``pip install 'fastleak[flower]'``.
"""
try:
    import flwr  # noqa: F401
except ImportError:
    raise ImportError("fastleak.integrations.flower needs Flower: pip install 'fastleak[flower]'") from None

from fastleak.integrations.flower.audit import AuditConfig, audit_round
from fastleak.integrations.flower.client import RecipeClient, client_app
from fastleak.integrations.flower.recipe import TrainingRecipe, train_locally
from fastleak.integrations.flower.strategy import AuditStrategy
from fastleak.integrations.flower.weights import get_weights, set_weights, state_from_arrays

__all__ = ["AuditStrategy", "AuditConfig", "TrainingRecipe", "train_locally", "RecipeClient", "client_app",
           "get_weights", "set_weights", "state_from_arrays", "audit_round"]
