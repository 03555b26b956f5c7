"""Similarity baseline (e.g. ScaLR, Puy et al., CVPR 2024): cosine regression, no negatives.

    L = (1/M) sum_i (1 - cos(k_i, q_i))

over pooled superpixels or point-pixel pairs (``level=``). It is O(M D), so it needs no
chunking.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from mmdet3d.registry import MODELS
from torch import Tensor

from .distillation_loss import DistillationLoss
from .utils import as_float32, autocast_off, check_pair, empty_loss


@MODELS.register_module()
class SimilarityLoss(DistillationLoss):
    """Mean of ``1 - cos(k_i, q_i)`` over superpixels or point-pixel pairs.

    Args:
        loss_weight (float): Multiplier of the returned loss. Defaults to 1.0.
        eps (float): ``eps`` of :func:`torch.nn.functional.cosine_similarity` (guards zero
            rows). Defaults to 1e-8.
        level (str): ``'superpixel'`` (pooled features, the default) or ``'pair'`` (one row
            per point-pixel pair, as ScaLR distils).
    """

    levels = ('superpixel', 'pair')

    def __init__(self, loss_weight: float = 1.0, eps: float = 1e-8,
                 level: str = 'superpixel') -> None:
        super().__init__(loss_weight=loss_weight, level=level)
        self.eps = float(eps)

    def forward(self, k: Tensor, q: Tensor, e: Optional[Tensor] = None) -> Tensor:
        """Compute the loss.

        Args:
            k (Tensor): 3D features, shape (M, D).
            q (Tensor): 2D-head features, shape (M, D).
            e (Tensor, optional): Ignored (common interface of the loss heads).

        Returns:
            Tensor: Scalar float32 loss, times ``loss_weight``.
        """
        check_pair(k, q)
        with autocast_off(k.device):
            k, q = as_float32(k, q)
            if k.shape[0] == 0:
                return self.loss_weight * empty_loss(k, q)
            cos = F.cosine_similarity(k, q, dim=1, eps=self.eps)
            return self.loss_weight * (1.0 - cos).mean()

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}, level={self.level!r}'
