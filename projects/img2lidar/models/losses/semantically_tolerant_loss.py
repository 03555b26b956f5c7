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

The loss is SLidR's InfoNCE core with :class:`SemanticTolerance` as its logit transform. The
quantile form keeps, per row chunk, only the bit-packed mask of masked negatives, computed in
the single teacher-similarity pass that class-agnostic balancing shares.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from mmdet3d.registry import MODELS
from torch import Tensor, nn

from .superpixel_infonce_loss import SuperpixelInfoNCELoss
from .utils import pack_bool, row_quantile, teacher_similarity, unpack_bool

TOLERANCES = ('quantile', 'continuous', None)
MASKED_NEGATIVES = ('zero_logit', 'exclude')


class SemanticTolerance:
    """The logit transform of the semantically tolerant loss (see the module doc).

    Args:
        tolerance (str): ``'quantile'`` or ``'continuous'``.
        min_quantile (float): Row quantile below which a negative is masked (quantile form).
        masked_negatives (str): ``'zero_logit'`` or ``'exclude'``.
    """

    def __init__(self, tolerance: str, min_quantile: float, masked_negatives: str) -> None:
        self.tolerance = tolerance
        self.min_quantile = float(min_quantile)
        self.fill = float('-inf') if masked_negatives == 'exclude' else 0.0

    @property
    def needs_similarity(self) -> bool:
        """The quantile form needs the similarity rows before the loss chunk (thresholds and
        mask); the continuous form recomputes its weights inside the chunk."""
        return self.tolerance == 'quantile'

    def chunk_context(self, s_rows: Optional[Tensor], en_rows: Tensor, en: Tensor,
                      offset: int, distribution=None) -> Tuple[Tensor, ...]:
        """What a row chunk's logits need, without gradient.

        Quantile form: the mask of masked negatives, bit-packed, (C, ceil(M / 8)) uint8; the
        similarity rows (C, M) are overwritten. Continuous form: the teacher rows, from which
        the chunk recomputes ``w`` (a float (C, M) weight per chunk would have to be kept
        until backward).
        """
        if self.tolerance != 'quantile':
            return en_rows, en
        w = s_rows.neg_().add_(1.0)  # in place: s_rows is a temporary of the chunk
        thresholds = row_quantile(w, self.min_quantile)
        masked = w == 0
        masked |= w < thresholds[:, None]
        rows = torch.arange(w.shape[0], device=w.device)
        masked[rows, rows + offset] = False
        return (pack_bool(masked), )

    @torch.no_grad()
    def masked_counts(self, context: Tuple[Tensor, ...], en_rows: Optional[Tensor],
                      en: Optional[Tensor], offset: int) -> Tensor:
        """How many negatives of each anchor of a chunk are masked (weight 0), (C,) int64.

        Args:
            context (tuple[Tensor]): What :meth:`chunk_context` returned for the chunk.
            en_rows (Tensor, optional): Unit teacher features of the chunk's anchors, (C, E).
            en (Tensor, optional): Unit teacher features of all superpixels, (M, E).
            offset (int): The chunk's first row.
        """
        if self.tolerance == 'quantile':
            return unpack_bool(context[0], en.shape[0]).sum(dim=1)
        masked = teacher_similarity(en_rows, en) >= 1.0  # w == 0
        masked.diagonal(offset=offset).fill_(False)
        return masked.sum(dim=1)

    def apply(self, z: Tensor, context: Tuple[Tensor, ...], offset: int) -> Tensor:
        """Weight or mask a chunk of logits ``z`` (C, M) in place."""
        if self.tolerance == 'quantile':
            return z.masked_fill_(unpack_bool(context[0], z.shape[1]), self.fill)
        en_rows, en = context
        w = teacher_similarity(en_rows, en).neg_().add_(1.0)
        rows = torch.arange(w.shape[0], device=w.device)
        w[rows, rows + offset] = 1.0
        z = z.mul_(w)  # in place: autograd keeps w, not a second (C, M) product
        if self.fill != 0.0:  # masked (w == 0) entries are 0 already
            z = z.masked_fill_(w == 0, self.fill)
        return z


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
        level (str, optional): Feature level; only ``'superpixel'``.
        anchors (str): On gathered features, ``'local'`` (default) or ``'global'``; see
            :class:`SuperpixelInfoNCELoss`.
        diagnostics_interval (int): Log the figures of :mod:`.contrastive_diagnostics` every
            that many steps; 0 (default) is off. See :class:`SuperpixelInfoNCELoss`.

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
                 masked_negatives: str = 'zero_logit',
                 level: Optional[str] = None,
                 anchors: str = 'local',
                 diagnostics_interval: int = 0) -> None:
        super().__init__(tau=tau, loss_weight=loss_weight, chunk_size=chunk_size,
                         balancing=balancing, level=level, anchors=anchors,
                         diagnostics_interval=diagnostics_interval)
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
        self.transform = None if tolerance is None else SemanticTolerance(
            tolerance, min_quantile, masked_negatives)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', tolerance={self.tolerance!r}, '
                f'min_quantile={self.min_quantile}, masked_negatives={self.masked_negatives!r}')
