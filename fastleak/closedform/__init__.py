"""Closed-form attacks: the private batch read off the shared gradient by linear algebra.

    fastleak.attack(obs, model, "analytic")        # or attack_many, or --preset analytic
    fastleak.closedform.run("rgap", [obs], model)  # the same, by the registry

Methods (``METHODS``, registered with ``@method``): analytic (a first fully connected layer),
rgap (recursively through conv and linear layers), april (a Vision Transformer's position
embedding), feature_inversion (the final layer's features in closed form, then images that
produce them: one forward and one backward pass per step). Building blocks: ``layer_input``,
``final_features``, ``singleton_rows``; ``rank_analysis`` says how much of the input a model's
gradient determines.
"""
from fastleak.closedform import analytic as _analytic  # noqa: F401  (registers)
from fastleak.closedform import april as _april  # noqa: F401
from fastleak.closedform import features as _features  # noqa: F401
from fastleak.closedform import rgap as _rgap  # noqa: F401
from fastleak.closedform.linear import Features, final_features, layer_input, row_inputs, singleton_rows
from fastleak.closedform.rgap import LayerRank, RankAnalysis, rank_analysis
from fastleak.closedform.registry import (METHODS, ClosedFormConfig, Reconstruction, Target, gradient_residual, method,
                                          names, run)

__all__ = ["METHODS", "ClosedFormConfig", "Features", "LayerRank", "RankAnalysis", "rank_analysis", "Reconstruction", "Target", "final_features",
           "gradient_residual", "layer_input", "method", "names", "row_inputs", "run", "singleton_rows"]
