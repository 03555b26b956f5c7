"""ST-SLidR's class-agnostic balancing (CB) of contrastive anchors.

Anchors in over-represented regions (road, vegetation, ...) resemble many other superpixels of
the batch in the teacher's feature space. CB counts these "votes" and gives such anchors small
weights::

    votes_i = sum_j s_ij * [s_ij >= threshold]          (diagonal included)
    v_i     = (votes_i - min votes) / (max votes - min votes)
    w_i     = 1 - v_i
    L       = sum_i w_i l_i / sum_i w_i                  (l_i: per-anchor contrastive loss)

``s_ij = clip(cos(e_i, e_j), 0, 1)`` (the same similarity as the tolerant loss).

The reference's ``threshold`` 0.5 is a constant on the cosine scale of its teacher (a MoCo v2
ResNet-50 on nuScenes photographs). ``threshold_quantile=p`` makes it adapt to the teacher's
similarity distribution instead: each batch's threshold is the p quantile of its off-diagonal
``s`` (a 1000-bin histogram, :mod:`.similarity_histogram`), so that the share ``1 - p`` of the
most similar pairs vote whatever the teacher's cosine scale. Where the
reference divides 0 by 0 this module is defined instead: when all votes are equal (up to
``equal_rtol``) every weight is 1, and a weighted mean with all weights 0 falls back to the
unweighted mean. No input gives NaN.

The module supplies anchor weights to the InfoNCE core (:mod:`.infonce_core`) of
:class:`SuperpixelInfoNCELoss` and :class:`SemanticallyTolerantLoss` through their
``balancing`` argument: the core feeds it similarity rows chunk by chunk (:meth:`votes`),
turns the votes into weights (:meth:`weights_from_votes`) and reduces the per-anchor losses
with :meth:`weighted_mean`.
"""
from __future__ import annotations

from typing import Optional

import torch
from mmdet3d.registry import MODELS
from torch import Tensor, nn

from .similarity_histogram import SimilarityHistogram
from .utils import normalize_teacher, row_chunks, teacher_similarity


@MODELS.register_module()
class ClassAgnosticBalancing(nn.Module):
    """Per-anchor weights from teacher similarity votes, and the weighted mean they define.

    Args:
        threshold (float): Similarities below it are noise and give no vote. Defaults to 0.5.
        equal_rtol (float): Votes whose spread ``max - min`` is at most
            ``equal_rtol * max(|max votes|, 1)`` count as all equal (float rounding of the
            diagonal ``s_ii`` must not turn equal votes into weights 0 and 1). Defaults to 1e-5.
        threshold_quantile (float, optional): When set, it replaces ``threshold``: each
            batch's threshold is this quantile of the batch's off-diagonal similarities (see
            the module doc). Defaults to None (the reference's fixed threshold).
    """

    def __init__(self, threshold: float = 0.5, equal_rtol: float = 1e-5,
                 threshold_quantile: Optional[float] = None) -> None:
        super().__init__()
        if threshold_quantile is not None and not 0.0 <= threshold_quantile <= 1.0:
            raise ValueError(f'threshold_quantile must be in [0, 1], got {threshold_quantile}')
        self.threshold = float(threshold)
        self.equal_rtol = float(equal_rtol)
        self.threshold_quantile = None if threshold_quantile is None else \
            float(threshold_quantile)

    @property
    def needs_distribution(self) -> bool:
        """Whether the votes need the batch's similarity histogram first."""
        return self.threshold_quantile is not None

    @torch.no_grad()
    def batch_threshold(self, histogram: Optional[SimilarityHistogram]) -> Optional[Tensor]:
        """The vote threshold of a batch: the ``threshold_quantile`` quantile of its
        similarity histogram (a 0-d tensor), or None for the fixed ``threshold``."""
        if self.threshold_quantile is None or histogram is None:
            return None
        return histogram.quantiles([self.threshold_quantile])[0]

    def forward(self, similarity: Tensor) -> Tensor:
        """Anchor weights from a full similarity matrix (convenience for small M).

        Args:
            similarity (Tensor): ``s`` clipped to [0, 1], shape (M, M).

        Returns:
            Tensor: Weights in [0, 1], shape (M,), float32, no gradient.
        """
        threshold = None
        if self.needs_distribution:
            histogram = SimilarityHistogram(device=similarity.device)
            histogram.add_rows(similarity.float(), 0)
            threshold = self.batch_threshold(histogram)
        return self.weights_from_votes(self.votes(similarity, threshold))

    @torch.no_grad()
    def votes(self, similarity_rows: Tensor, threshold: Optional[Tensor] = None) -> Tensor:
        """Votes of a chunk of anchors.

        Args:
            similarity_rows (Tensor): Rows of ``s`` for the chunk (full rows, diagonal
                included), shape (C, M).
            threshold (Tensor, optional): The batch's threshold (:meth:`batch_threshold`);
                the fixed ``threshold`` when None.

        Returns:
            Tensor: ``sum_j s_ij [s_ij >= threshold]``, shape (C,), float32.
        """
        s = similarity_rows.float()
        return s.masked_fill(s < (self.threshold if threshold is None else threshold),
                             0.0).sum(dim=1)

    @torch.no_grad()
    def weights_from_votes(self, votes: Tensor) -> Tensor:
        """Min-max normalise the votes and flip them into weights.

        Args:
            votes (Tensor): Votes of all anchors, shape (M,).

        Returns:
            Tensor: ``1 - v``, shape (M,), in [0, 1]; all ones when the votes are all equal.
        """
        votes = votes.float()
        if votes.numel() == 0:
            return votes
        vmin, vmax = votes.min(), votes.max()
        span = vmax - vmin
        spread = span > self.equal_rtol * torch.clamp(vmax.abs(), min=1.0)
        v = (votes - vmin) / torch.where(spread, span, torch.ones_like(span))
        return torch.where(spread, 1.0 - v, torch.ones_like(v))

    @torch.no_grad()
    def weights_from_features(self, e: Tensor, chunk_size: Optional[int] = 4096) -> Tensor:
        """Anchor weights straight from pooled teacher features, computed in row chunks.

        Args:
            e (Tensor): Pooled teacher features (rows must not be all zero), shape (M, E).
            chunk_size (int, optional): Rows of ``s`` per chunk. Defaults to 4096.

        Returns:
            Tensor: Shape (M,).
        """
        en = normalize_teacher(e)
        chunks = row_chunks(en.shape[0], chunk_size)
        threshold = None
        if self.needs_distribution:
            histogram = SimilarityHistogram(device=en.device)
            for a, b in chunks:
                histogram.add_rows(teacher_similarity(en[a:b], en), a)
            threshold = self.batch_threshold(histogram)
        votes = [self.votes(teacher_similarity(en[a:b], en), threshold) for a, b in chunks]
        return self.weights_from_votes(torch.cat(votes) if votes else en.new_zeros((0, )))

    @staticmethod
    def weighted_mean(per_anchor_losses: Tensor, weights: Tensor) -> Tensor:
        """``sum_i w_i l_i / sum_i w_i``, finite for any non-negative weights.

        Args:
            per_anchor_losses (Tensor): Losses ``l_i``, shape (M,), M >= 1.
            weights (Tensor): Non-negative weights ``w_i`` (no gradient), shape (M,).

        Returns:
            Tensor: Scalar. When all weights are 0 it is the unweighted mean of the losses
            (no 0/0 anywhere, so gradients stay finite too).
        """
        losses = per_anchor_losses.float()
        weights = weights.detach().to(losses.dtype)
        total = weights.sum()
        has_mass = total > 0
        weighted = (losses * weights).sum() / torch.where(has_mass, total, torch.ones_like(total))
        return torch.where(has_mass, weighted, losses.mean())

    @staticmethod
    def weighted_share(local_losses: Tensor, weights: Tensor, rows) -> Tensor:
        """This process's share of :meth:`weighted_mean` in the local-anchor form.

        Args:
            local_losses (Tensor): Losses of the anchors ``rows[0]:rows[1]``, shape (R,).
            weights (Tensor): Weights of every anchor (the same on every process), (M,).
            rows (tuple[int, int]): This process's anchors.

        Returns:
            Tensor: ``sum_{i in rows} w_i l_i / sum_i w_i`` (the unweighted
            ``sum_{i in rows} l_i / M`` when all weights are 0): the shares sum to
            :meth:`weighted_mean` of every anchor.
        """
        losses = local_losses.float()
        weights = weights.detach().to(losses.dtype)
        total = weights.sum()
        has_mass = total > 0
        weighted = (losses * weights[rows[0]:rows[1]]).sum() / torch.where(
            has_mass, total, torch.ones_like(total))
        return torch.where(has_mass, weighted, losses.sum() / max(weights.shape[0], 1))

    def extra_repr(self) -> str:
        return (f'threshold={self.threshold}, equal_rtol={self.equal_rtol}, '
                f'threshold_quantile={self.threshold_quantile}')
