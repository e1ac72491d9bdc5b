"""Reconstruction quality and label-recovery metrics."""
from fastleak.metrics.images import evaluate, match, psnr, ssim
from fastleak.metrics.labels import LabelScores, label_scores

__all__ = ["evaluate", "match", "psnr", "ssim", "label_scores", "LabelScores"]
