"""Gradient-inversion attacks: presets, the batched engine and its result type."""
from fastleak.attacks.engine import AttackResult, attack, attack_many
from fastleak.attacks.lbfgs import BatchedLBFGS, LBFGSConfig
from fastleak.attacks.presets import PRESETS, AttackConfig, preset

__all__ = ["attack", "attack_many", "AttackResult", "AttackConfig", "PRESETS", "preset", "BatchedLBFGS",
           "LBFGSConfig"]
