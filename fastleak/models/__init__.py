"""Models to attack: the registered networks and helpers for any classifier ending in nn.Linear.

``build(name, num_classes, in_shape=(3, 32, 32), seed=0, **options)``; names: lenet, convnet,
plainconv, resnet18, resnet20, mlp, vit, cnn6; or "package.module:Class", a user's own nn.Module.
"""
from fastleak.models import cnn6, convnet, lenet, mlp, plainconv, resnet, vit  # noqa: F401  (registers the models)
from fastleak.models.batchnorm import batchnorm_layers, has_batchnorm, is_batchnorm
from fastleak.models.classifier import features_and_logits, final_linear, final_linear_param_names
from fastleak.models.registry import MODELS, ModelSpec, build, names, register, spec_of, user_class
from fastleak.models.state import load_state

__all__ = ["MODELS", "ModelSpec", "build", "names", "register", "spec_of", "user_class", "final_linear",
           "final_linear_param_names", "features_and_logits", "load_state",
           "has_batchnorm", "batchnorm_layers", "is_batchnorm"]
