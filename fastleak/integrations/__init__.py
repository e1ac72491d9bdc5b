"""Integrations with federated-learning frameworks; each needs its optional dependency.

* ``fastleak.integrations.flower``: a Flower server strategy that records what an
  honest-but-curious server sees (``pip install 'fastleak[flower]'``).

Nothing is imported here, so ``import fastleak`` works without these frameworks.
"""
