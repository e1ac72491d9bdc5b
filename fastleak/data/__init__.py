"""Real image data for attack targets: ``load(name, n, seed=0, labels=None, size=None, root=None, split="test")``.

Datasets: cifar10, cifar100, mnist, fashion_mnist, imagenet from the shipped samples
(``fastleak.data.samples``) or from disk, and folder and npz from disk only
(``fastleak.data.disk``). Label patterns and batch composition: ``fastleak.data.batches``.
"""
from fastleak.data import disk, samples  # noqa: F401  (registers the datasets)
from fastleak.data.batches import DatasetInfo, info, load, num_classes
from fastleak.data.errors import DatasetError
from fastleak.data.registry import ROOT_VARIABLE, SPLITS, Split, Traits, names, open_split, resolve_root

__all__ = ["load", "info", "num_classes", "names", "open_split", "resolve_root", "DatasetInfo", "DatasetError",
           "Split", "Traits", "SPLITS", "ROOT_VARIABLE"]
