"""Real image data for attack targets: ``load(name, n, seed=0, labels=None, size=None)``.

Datasets: cifar10, cifar100, mnist, fashion_mnist, imagenet (see ``fastleak.data.sources``; the
label patterns and batch composition are described in ``fastleak.data.batches``).
"""
from fastleak.data import sources  # noqa: F401  (registers the datasets)
from fastleak.data.batches import DatasetInfo, info, load, num_classes
from fastleak.data.registry import DATASETS, Source, names, register

__all__ = ["load", "info", "num_classes", "names", "register", "DatasetInfo", "Source", "DATASETS"]
