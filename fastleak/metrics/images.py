"""Image metrics, with reconstructions matched to ground truth by the Hungarian algorithm."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from pytorch_msssim import ssim as _ssim
from scipy.optimize import linear_sum_assignment

from fastleak.errors import InvalidValueError
from fastleak.metrics.labels import LabelScores, label_scores

log = logging.getLogger(__name__)

RECOGNISABLE_PSNR = 18.0  # dB; below it a CIFAR-size reconstruction rarely shows its object


def _check_images(name: str, x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise InvalidValueError(f"{name} must have shape [B,C,H,W], got {tuple(x.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB of images in [0, data_range]; [B]. Identical images give +inf."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).float()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window, 11 px or the largest odd size that fits); [B]."""
    win = min(11, min(x.shape[-2:]) - (1 - min(x.shape[-2:]) % 2))
    return _ssim(x.float(), y.float(), data_range=1.0, size_average=False, win_size=max(win, 1))


def match(rec: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Index order such that rec[order[i]] is the reconstruction matched to true[i] (min total MSE)."""
    cost = (rec.double().flatten(1)[None, :, :] - true.double().flatten(1)[:, None, :]).pow(2).mean(-1)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(cols[rows.argsort()], dtype=torch.long)


@dataclass(frozen=True)
class Evaluation:
    mse: float
    psnr: float
    ssim: float
    psnr_per_image: tuple[float, ...]
    ssim_per_image: tuple[float, ...]
    order: tuple[int, ...]
    labels: LabelScores | None = None
    lpips: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        out = {"mse": self.mse, "psnr": self.psnr, "ssim": self.ssim,
               "psnr_per_image": list(self.psnr_per_image), "ssim_per_image": list(self.ssim_per_image),
               "order": list(self.order), "lpips": self.lpips, "notes": list(self.notes)}
        if self.labels is not None:
            out["labels"] = {"ln_acc": self.labels.ln_acc, "le_acc": self.labels.le_acc, "exact": self.labels.exact}
        return out


def evaluate(rec_images: torch.Tensor, true_images: torch.Tensor, rec_labels: torch.Tensor | None = None,
             true_labels: torch.Tensor | None = None, *, num_classes: int | None = None) -> Evaluation:
    """Match reconstructions to ground truth (Hungarian on MSE) and score them.

    Images are clamped to [0, 1]. PSNR and SSIM are per matched image, then averaged
    (PSNR is capped at 100 dB for exact copies). LPIPS needs downloaded backbone weights,
    which are not available offline, so it is reported as None with a note.
    """
    _check_images("rec_images", rec_images)
    _check_images("true_images", true_images)
    if rec_images.shape != true_images.shape:
        raise InvalidValueError(f"rec_images {tuple(rec_images.shape)} and true_images {tuple(true_images.shape)} "
                                "must have the same shape")
    rec = rec_images.detach().float().clamp(0, 1).cpu()
    true = true_images.detach().float().clamp(0, 1).cpu()
    order = match(rec, true)
    matched = rec[order]
    p = psnr(matched, true).clamp(max=100.0)
    s = ssim(matched, true)
    labels = None
    if rec_labels is not None and true_labels is not None:
        labels = label_scores(rec_labels, true_labels, num_classes)
    return Evaluation(mse=(matched - true).pow(2).mean().item(), psnr=p.mean().item(), ssim=s.mean().item(),
                      psnr_per_image=tuple(p.tolist()), ssim_per_image=tuple(s.tolist()),
                      order=tuple(order.tolist()), labels=labels,
                      notes=("LPIPS skipped: its backbone weights cannot be loaded offline",))
