"""ST-SLidR's semantically tolerant contrastive loss (Mahmoud et al., CVPR 2023).

Negatives that the frozen teacher finds semantically similar to the anchor are pushed less. With
``s_ij = clip(cos(e_i, e_j), 0, 1)`` and ``w_ij = 1 - s_ij``, the logits of SLidR's InfoNCE are
multiplied by a per-pair weight::

    continuous: w'_ij = w_ij
    quantile:   w'_ij = 0 if w_ij < Q_i or w_ij == 0 else 1,
                Q_i = linear-interpolated min_quantile of the full row w_i. (diagonal included)
    always      w'_ii = 1
    L = (1/M) sum_i -log( exp(w'_ii z_ii) / sum_j exp(w'_ij z_ij) )

A negative whose weight is 0 is "masked". As in the reference code it then has logit 0 and
still adds ``exp(0)`` to the denominator (``masked_negatives='zero_logit'``); with
``masked_negatives='exclude'`` it gets logit ``-inf`` instead and leaves the denominator.
Superpixels whose pooled teacher feature is all zero are dropped from the loss.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from mmdet3d.registry import MODELS
from torch import Tensor, nn

from .superpixel_infonce_loss import (SuperpixelInfoNCELoss, row_quantile,
                                      teacher_similarity)

TOLERANCES = ('quantile', 'continuous', None)
MASKED_NEGATIVES = ('zero_logit', 'exclude')


@MODELS.register_module()
class SemanticallyTolerantLoss(SuperpixelInfoNCELoss):
    """Semantically tolerant superpixel InfoNCE (ST), optionally class-agnostic balanced (CB).

    Args:
        tau (float): Temperature. Defaults to 0.07.
        loss_weight (float): Multiplier of the returned loss. Defaults to 1.0.
        chunk_size (int, optional): Anchors per row chunk; None or <= 0 for a single chunk.
            Defaults to 4096.
        balancing (dict | nn.Module, optional): Anchor weighting, e.g.
            ``dict(type='ClassAgnosticBalancing', threshold=0.5)`` (ST + CB). Defaults to None.
        tolerance (str, optional): ``'quantile'`` (the released configs), ``'continuous'``
            (``w = 1 - s``) or None (plain SLidR InfoNCE, identical to
            :class:`SuperpixelInfoNCELoss` with the same ``balancing``). Defaults to
            ``'quantile'``.
        min_quantile (float): Row quantile below which a negative is masked in the quantile
            form. Defaults to 0.01.
        masked_negatives (str): ``'zero_logit'`` (reference: a masked negative has logit 0 and
            still counts ``exp(0)`` in the denominator) or ``'exclude'`` (logit ``-inf``).
            Defaults to ``'zero_logit'``.

    Note:
        ``forward(k, q, e)`` needs ``e`` unless ``tolerance`` is None and ``balancing`` is None.
        In the quantile form the weights are binary; a negative whose ``w_ij`` is already 0
        (``s_ij >= 1``) stays masked even when the row quantile is 0. In the continuous form a
        negative is masked when ``w_ij == 0`` exactly, and ``'exclude'`` only changes those.
    """

    def __init__(self,
                 tau: float = 0.07,
                 loss_weight: float = 1.0,
                 chunk_size: Optional[int] = 4096,
                 balancing: Union[None, dict, nn.Module] = None,
                 tolerance: Optional[str] = 'quantile',
                 min_quantile: float = 0.01,
                 masked_negatives: str = 'zero_logit') -> None:
        super().__init__(tau=tau, loss_weight=loss_weight, chunk_size=chunk_size,
                         balancing=balancing)
        if tolerance not in TOLERANCES:
            raise ValueError(f'tolerance must be one of {TOLERANCES}, got {tolerance!r}')
        if masked_negatives not in MASKED_NEGATIVES:
            raise ValueError(f'masked_negatives must be one of {MASKED_NEGATIVES}, '
                             f'got {masked_negatives!r}')
        if not 0.0 <= min_quantile <= 1.0:
            raise ValueError(f'min_quantile must be in [0, 1], got {min_quantile}')
        self.tolerance = tolerance
        self.min_quantile = float(min_quantile)
        self.masked_negatives = masked_negatives

    @property
    def uses_teacher(self) -> bool:
        """Whether ``e`` is needed (then zero-feature superpixels are dropped)."""
        return self.tolerance is not None or self.balancing is not None

    def _needs_row_statistics(self) -> bool:
        """The quantile form needs each row's quantile threshold before the loss chunks."""
        return self.tolerance == 'quantile'

    def _row_statistics(self, s_rows: Tensor) -> Tensor:
        """Quantile thresholds ``Q_i`` of ``w_i = 1 - s_i`` over full rows (diagonal included).

        Args:
            s_rows (Tensor): Clipped similarity rows, shape (C, M); overwritten in place.

        Returns:
            Tensor: Shape (C,).
        """
        return row_quantile(s_rows.neg_().add_(1.0), self.min_quantile)

    def negative_weights(self, s_rows: Tensor, thresholds: Optional[Tensor],
                         offset: int) -> Tuple[Optional[Tensor], Tensor]:
        """Weights ``w'_ij`` of a row chunk and the mask of masked negatives.

        Args:
            s_rows (Tensor): Clipped similarity rows, shape (C, M); overwritten in place.
            thresholds (Tensor, optional): Row quantiles ``Q_i`` (quantile form), shape (C,).
            offset (int): Global index of the chunk's first anchor.

        Returns:
            tuple: the continuous weights (C, M) float32 with ``w'_ii = 1`` (None in the
            quantile form, whose weights are 1 outside the mask), and the boolean mask (C, M)
            of negatives whose weight is 0 (never the diagonal).
        """
        w = s_rows.neg_().add_(1.0)  # in place: s_rows is a temporary of the chunk
        masked = w == 0
        rows = torch.arange(w.shape[0], device=w.device)
        if self.tolerance == 'quantile':
            masked |= w < thresholds[:, None]
            w = None
        else:
            w[rows, rows + offset] = 1.0
        masked[rows, rows + offset] = False
        return w, masked

    def _transform_logits(self, z: Tensor, en_rows: Optional[Tensor], en: Optional[Tensor],
                          stats_rows: Optional[Tensor], offset: int) -> Tensor:
        """Apply the tolerant weights to a chunk of logits.

        Args:
            z (Tensor): Logits ``<k_i, q_j> / tau``, shape (C, M).
            en_rows (Tensor, optional): Normalised teacher features of the chunk, (C, E).
            en (Tensor, optional): All normalised teacher features, (M, E).
            stats_rows (Tensor, optional): Row quantiles of the chunk, (C,).
            offset (int): Global index of the chunk's first anchor.

        Returns:
            Tensor: ``w' * z`` (masked negatives 0 or ``-inf``), shape (C, M).
        """
        if self.tolerance is None:
            return z
        w, masked = self.negative_weights(teacher_similarity(en_rows, en), stats_rows, offset)
        if w is not None:
            z = z.mul_(w)  # in place: autograd keeps w, not a second (C, M) product
        fill = float('-inf') if self.masked_negatives == 'exclude' else 0.0
        if w is None or fill != 0.0:  # with continuous weights masked entries are 0 already
            z = z.masked_fill_(masked, fill)
        return z

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', tolerance={self.tolerance!r}, '
                f'min_quantile={self.min_quantile}, masked_negatives={self.masked_negatives!r}')
