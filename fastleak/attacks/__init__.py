"""Gradient-inversion attacks: presets, priors, the batched engine and its result type."""
from fastleak.attacks.engine import attack, attack_many
from fastleak.attacks.lbfgs import BatchedLBFGS, LBFGSConfig
from fastleak.attacks.presets import PRESETS, AttackConfig, preset
from fastleak.attacks.priors import PRIORS, prior
from fastleak.attacks.run import AttackResult

__all__ = ["attack", "attack_many", "AttackResult", "AttackConfig", "PRESETS", "preset", "PRIORS", "prior",
           "BatchedLBFGS", "LBFGSConfig"]
