"""Federated-learning simulation: what the server observes (``Observation``) and how clients compute it."""
from fastleak.federated.client import (client_gradients, fedavg, fedsgd, local_schedule, local_sgd,
                                       per_example_gradients, snapshot, trainable_names, validate_batch)
from fastleak.federated.io import load, save
from fastleak.federated.losses import LOSSES, client_loss
from fastleak.federated.multi import multi_pair
from fastleak.federated.observation import Observation, Pair

__all__ = ["Observation", "Pair", "fedsgd", "fedavg", "client_loss", "client_gradients", "local_schedule",
           "local_sgd", "per_example_gradients", "snapshot", "trainable_names", "validate_batch", "LOSSES",
           "multi_pair", "save", "load"]
