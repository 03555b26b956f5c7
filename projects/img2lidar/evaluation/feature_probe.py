"""A linear probe on frozen per-point features, and the IoU of its predictions.

The probe is a multinomial logistic regression (one linear layer and a softmax) on features
standardised with the training points' mean and standard deviation, trained full-batch with
Adam for a fixed number of steps from a seeded initialisation: with frozen features it is
cheap, deterministic for a seed, and the same for every kind of feature (student points, teacher
pixels), so that their mIoUs compare.
"""
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F


@dataclass
class LinearProbe:
    """A trained probe: ``argmax((x - mean) / std @ weight.T + bias)``.

    Attributes:
        mean (Tensor): Feature mean of the training points, (C,).
        std (Tensor): Their standard deviation (floored at 1e-6), (C,).
        weight (Tensor): (K, C).
        bias (Tensor): (K,).
    """
    mean: Tensor
    std: Tensor
    weight: Tensor
    bias: Tensor

    def predict(self, feats: Tensor, chunk: int = 1 << 16) -> Tensor:
        """Class of each row of ``feats`` (N, C), (N,) int64."""
        out = [(((feats[a:a + chunk].float() - self.mean) / self.std) @ self.weight.T +
                self.bias).argmax(1) for a in range(0, feats.shape[0], chunk)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def fit_linear_probe(feats: Tensor, labels: Tensor, num_classes: int, seed: int = 0,
                     steps: int = 300, lr: float = 0.05, weight_decay: float = 1e-4,
                     max_points: Optional[int] = 200_000) -> LinearProbe:
    """Train a linear probe on frozen features.

    Args:
        feats (Tensor): Training features, (N, C).
        labels (Tensor): Their classes in ``[0, num_classes)``, (N,); rows with other labels
            (ignored classes) are left out.
        num_classes (int): K.
        seed (int): Seeds the initialisation and the subsample of ``max_points`` rows.
        steps (int): Full-batch Adam steps. Defaults to 300.
        lr (float): Adam's learning rate. Defaults to 0.05.
        weight_decay (float): L2 penalty on the weight. Defaults to 1e-4.
        max_points (int, optional): Train on at most this many rows, drawn at random.

    Returns:
        LinearProbe: The trained probe.
    """
    g = torch.Generator().manual_seed(seed)
    keep = (labels >= 0) & (labels < num_classes)
    x, y = feats[keep].float(), labels[keep].long()
    if max_points is not None and x.shape[0] > max_points:
        idx = torch.randperm(x.shape[0], generator=g)[:max_points]
        x, y = x[idx], y[idx]
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    x = (x - mean) / std
    weight = (torch.randn(num_classes, x.shape[1], generator=g) * 0.01).requires_grad_()
    bias = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(x @ weight.T + bias, y) + weight_decay * (weight**2).sum()
            loss.backward()
            opt.step()
    return LinearProbe(mean, std, weight.detach(), bias.detach())


def class_iou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class IoU of a prediction, NaN for the classes absent from ``gt``.

    Args:
        pred (np.ndarray): Predicted classes, (N,).
        gt (np.ndarray): True classes, (N,); rows outside ``[0, num_classes)`` are ignored.
        num_classes (int): K.

    Returns:
        np.ndarray: (K,) IoU in [0, 1], NaN where the class has no true point.
    """
    valid = (gt >= 0) & (gt < num_classes)
    hist = np.bincount(num_classes * gt[valid].astype(np.int64) + pred[valid].astype(np.int64),
                       minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(hist).astype(np.float64)
    union = hist.sum(0) + hist.sum(1) - tp
    iou = np.full(num_classes, np.nan)
    present = hist.sum(1) > 0
    iou[present] = tp[present] / union[present]
    return iou


def miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> Dict[str, object]:
    """mIoU (%) over the classes present in ``gt``, with the per-class IoUs (%)."""
    iou = class_iou(pred, gt, num_classes)
    return dict(miou=float(np.nanmean(iou) * 100), per_class=[float(v * 100) for v in iou],
                classes_present=int(np.isfinite(iou).sum()))
