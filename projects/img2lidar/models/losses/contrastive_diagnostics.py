"""Figures of one evaluation of the superpixel InfoNCE core, for logging (no gradient).

What a tolerant or balanced contrastive loss does depends on the teacher's similarity
distribution: which negatives the semantic tolerance masks, how unequal the class-agnostic
balancing weights are. :class:`ContrastiveDiagnostics` gathers, in the row chunks the loss
already makes, on the device and without a host synchronisation:

==================  ============================================================================
``cos_mean``        mean of ``s_ij = clip(cos(e_i, e_j), 0, 1)`` over the off-diagonal pairs
``cos_q10/50/90``   its 10 / 50 / 90 % quantiles (a 1000-bin histogram: error <= 0.001)
``st_masked_mean``  share of an anchor's M - 1 negatives that the tolerance masks, mean over
``st_masked_min``   the anchors, and its min and max (tolerant loss only)
``st_masked_max``
``cb_w_mean``       the balancing weights' mean, their effective sample size
``cb_ess``          ``(sum w)^2 / sum w^2`` divided by M (1: uniform; 1/M: one anchor), and
``cb_w_max_min``    ``max w / min w``, capped at 1e6 (min-max weights always give the most voted
                    anchor weight 0) (balanced loss only)
``pos_sim``         mean ``<k_i, q_i>`` (the positive similarity)
``neg_sim``         mean ``<k_i, q_j>``, i != j
``nce``             SLidR's plain InfoNCE on the same features (no mask, uniform anchors)
``nce_st``          the tolerant InfoNCE, anchors uniform (tolerant loss only)
``nce_cb``          the optimised value, ``sum w_i l_i / sum w_i`` (balanced loss only)
==================  ============================================================================

On gathered features in the local-anchor form the anchor figures are this process's anchors'
(all M rows are candidates), and the balancing figures are over all M weights.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from .similarity_histogram import SimilarityHistogram
from .utils import logsumexp_

#: the cosine quantiles that are logged
COS_QUANTILES = (('cos_q10', 0.1), ('cos_q50', 0.5), ('cos_q90', 0.9))
#: ``cb_w_max_min`` when the smallest weight is 0
MAX_RATIO = 1e6


class ContrastiveDiagnostics:
    """Accumulates the figures of the module doc over the row chunks of one loss evaluation.

    Args:
        num_candidates (int): Columns M of the logits (all candidates).
        device (torch.device): Where the figures are computed.
        bins (int): Histogram bins of the teacher similarity. Defaults to 1000.
    """

    def __init__(self, num_candidates: int, device: torch.device, bins: int = 1000) -> None:
        self.m = int(num_candidates)
        self.device = device
        self.histogram: Optional[SimilarityHistogram] = None
        self.cos_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.masked = []
        self.plain = []
        self.bins = bins

    @torch.no_grad()
    def add_similarity(self, s_rows: Tensor, offset: int) -> None:
        """Count a chunk's teacher similarity rows (off-diagonal entries), before any
        transform overwrites them.

        Args:
            s_rows (Tensor): Rows ``offset .. offset + C - 1`` of ``s``, shape (C, M).
            offset (int): The chunk's first row.
        """
        if self.histogram is None:
            self.histogram = SimilarityHistogram(self.bins, s_rows.device)
        self.cos_sum += self.histogram.add_rows(s_rows, offset)

    def add_masked(self, counts: Tensor) -> None:
        """Masked negatives of each anchor of a chunk, shape (C,)."""
        self.masked.append(counts.float())

    @torch.no_grad()
    def add_plain(self, k_rows: Tensor, q_rows: Tensor, q: Tensor, tau: float) -> None:
        """SLidR's plain InfoNCE of a chunk's anchors (no mask), for ``nce``.

        Args:
            k_rows (Tensor): The chunk's anchors, shape (C, D).
            q_rows (Tensor): Their positives, shape (C, D).
            q (Tensor): All candidates, shape (M, D).
            tau (float): Temperature.
        """
        k_scaled = k_rows.float() / tau
        z = k_scaled @ q.float().t()
        self.plain.append(logsumexp_(z) - (k_scaled * q_rows.float()).sum(dim=1))

    @torch.no_grad()
    def finish(self, k: Tensor, q: Tensor, rows: Tuple[int, int], losses: Tensor,
               weights: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """The figures, float32 scalars on the device.

        Args:
            k (Tensor): All anchors, shape (M, D).
            q (Tensor): All candidates, shape (M, D).
            rows (tuple[int, int]): The anchors whose losses are given.
            losses (Tensor): Their per-anchor losses (as optimised, before balancing), (R,).
            weights (Tensor, optional): Balancing weights of all M anchors, (M,).

        Returns:
            dict[str, Tensor]: The figures this loss has (see the module doc).
        """
        out: Dict[str, Tensor] = {}
        n = max(self.m - 1, 1)
        r = max(rows[1] - rows[0], 1)
        if self.histogram is not None:
            pairs = self.histogram.total.clamp(min=1.0)
            out['cos_mean'] = (self.cos_sum / pairs).float()
            for (name, _), value in zip(COS_QUANTILES, self.histogram.quantiles(
                    [qv for _, qv in COS_QUANTILES])):
                out[name] = value
        if self.masked:
            share = torch.cat(self.masked) / n
            out.update(st_masked_mean=share.mean(), st_masked_min=share.min(),
                       st_masked_max=share.max())
        if weights is not None:
            w = weights.detach().float()
            total = w.sum()
            out['cb_w_mean'] = w.mean()
            out['cb_ess'] = total * total / (w * w).sum().clamp(min=1e-30) / max(self.m, 1)
            out['cb_w_max_min'] = (w.max() / w.min().clamp(min=1.0 / MAX_RATIO)).clamp(
                max=MAX_RATIO)
        k_local, q_local = k[rows[0]:rows[1]].float(), q[rows[0]:rows[1]].float()
        pos = (k_local * q_local).sum(dim=1)
        out['pos_sim'] = pos.sum() / r
        out['neg_sim'] = ((k_local.sum(0) * q.float().sum(0)).sum() - pos.sum()) / (r * n)
        losses = losses.detach().float()
        out['nce'] = torch.cat(self.plain).sum() / r if self.plain else losses.sum() / r
        if self.plain:
            out['nce_st'] = losses.sum() / r
        if weights is not None:
            w_local = weights.detach().float()[rows[0]:rows[1]]
            mass = w_local.sum()
            out['nce_cb'] = torch.where(mass > 0, (w_local * losses).sum() / mass.clamp(
                min=1e-30), losses.sum() / r)
        return {key: value.float() for key, value in out.items()}
