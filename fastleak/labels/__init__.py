"""Label-count recovery (duplicates included) from what an FL server observes.

    counts(obs, model, method="auto") -> LabelCounts     # float estimates, rounded counts
    recover(obs, model, method="auto") -> LongTensor     # sorted labels, one per sample
    counts_many(observations, model, ...)                # batched over many observations

Methods (``METHODS``): idlg, yin, llg, bias, geng, geng_bias, geng_shift, ilrg, rlg, and auto,
which runs iDLG for one sample, RLG for at most half as many samples as classes, and
otherwise geng_shift when the final layer has a bias, geng without (``choose``).
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
