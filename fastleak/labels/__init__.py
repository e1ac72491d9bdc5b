"""Label-count recovery (duplicates included) from what an FL server observes.

    counts(obs, model, method="auto", public=None) -> LabelCounts   # estimates, counts, intervals
    recover(obs, model, method="auto", public=None) -> LongTensor   # sorted labels, one per sample
    counts_many(observations, model, ..., public=None)              # batched over many observations

Methods (``METHODS``): idlg, yin, llg, bias, geng, geng_bias, geng_shift, ilrg, rlg, the count
posterior (``posterior``, ``presence_prior``; ``bayes``) and auto. ``public``: the server's
labelled public data, ``(images, labels)`` or a ``PublicData`` (which caches what it fitted per
model state): with it the posterior uses class-conditional statistics measured at the observed
model state, and auto picks the method with the highest LnAcc on client batches simulated from
it; without it auto follows ``choose``.
"""
from fastleak.labels import bayes as _bayes  # noqa: F401  (registers)
from fastleak.labels import geng as _geng  # noqa: F401
from fastleak.labels import ilrg as _ilrg  # noqa: F401
from fastleak.labels import rlg as _rlg  # noqa: F401
from fastleak.labels import sign as _sign  # noqa: F401
from fastleak.labels.api import candidates, choose, counts, counts_many, recover, recover_many
from fastleak.labels.public import PublicData
from fastleak.labels.registry import names as _names
from fastleak.labels.registry import register
from fastleak.labels.rounding import largest_remainder
from fastleak.labels.types import LabelConfig, LabelCounts

METHODS: tuple[str, ...] = _names() + ("auto",)

__all__ = ["METHODS", "LabelConfig", "LabelCounts", "PublicData", "candidates", "choose", "counts", "counts_many",
           "largest_remainder", "recover", "recover_many", "register"]
