"""Gradient-inversion attacks: presets, priors, the batched engine and its result type."""
from fastleak.attacks.engine import attack, attack_many
from fastleak.attacks.execution import Execution
from fastleak.attacks.lbfgs import BatchedLBFGS, LBFGSConfig
from fastleak.attacks.presets import PRESETS, AttackConfig, preset
from fastleak.attacks.priors import PRIORS, Prior, Tap, prior
from fastleak.attacks.run import AttackResult

__all__ = ["attack", "attack_many", "AttackResult", "AttackConfig", "Execution", "PRESETS", "preset", "PRIORS",
           "Prior", "Tap", "prior",
           "BatchedLBFGS", "LBFGSConfig"]
