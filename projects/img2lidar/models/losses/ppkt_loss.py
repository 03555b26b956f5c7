"""PPKT baseline (Liu et al., 2021): point-level InfoNCE over random point-pixel pairs.

No superpixels: each of ``num_pairs`` randomly drawn point-pixel pairs is an anchor (its 3D
feature) whose positive is its own pixel's 2D feature and whose negatives are the pixels of the
other drawn pairs::

    z_ij = <k_i, q_j> / tau
    L = (1/P') sum_i -log( exp(z_ii) / sum_j exp(z_ij) ),   P' = min(P, num_pairs)

It is a pair sampler in front of the InfoNCE core of :mod:`.infonce_core`.

Random draw: when there are more than ``num_pairs`` pairs, ``num_pairs`` of them are sampled
uniformly **without replacement** with ``torch.randperm``, from a CPU generator seeded by
``(seed, iteration)`` (the training iteration from mmengine's message hub; 0 outside a
runner), unless the ``generator`` argument of :meth:`PPKTLoss.forward` gives one. The draw of an
iteration therefore depends on nothing else: every process of a distributed run draws the same
pairs of the gathered batch (``gather_features=True``) whatever else consumed random numbers on
it, and a resumed run draws what the uninterrupted run drew. The permutation is drawn on the CPU
and copied to the features' device without blocking the host (pinned memory on CUDA).

With ``gather_features=True`` the pairs are drawn from the global batch, before anything is
gathered: the distiller keeps the pair level local with every process's pair count (one
exchange per step, :meth:`DistillationFeatures.gather`), every process draws the same indices
of the global batch from those counts, and only the drawn rows' ``k`` and ``q`` travel
(:meth:`PairFeatures.gather_at`; ``num_pairs`` rows in all instead of every pair's six fields).
The loss then runs in the local-anchor form by default (``anchors='local'``): each process
computes the losses of the drawn pairs that are its own, against every drawn candidate, as
shares of the global loss (:func:`~projects.img2lidar.models.gather_features.sum_of_shares`);
``anchors='global'`` makes every process compute the whole loss of the draw. On a pair level
that was gathered whole (another loss reads every pair), the same draw is taken from the
gathered rows.
"""
from __future__ import annotations

from typing import Optional

import torch
from mmdet3d.registry import MODELS
from torch import Tensor

from ..distillation_features import DistillationFeatures, PairFeatures
from ..gather_features import sum_of_shares
from ..host_to_device import host_to_device
from .distillation_loss import DistillationLoss
from .infonce_core import infonce_anchor_losses, infonce_anchor_terms
from .utils import as_float32, autocast_off, check_pair, empty_loss


@MODELS.register_module()
class PPKTLoss(DistillationLoss):
    """Point-to-pixel InfoNCE over a random subset of the point-pixel pairs.

    Consumes the ``'pair'`` level: one row per point-pixel pair (the point's student feature
    and the 2D-head feature at its pixel).

    Args:
        num_pairs (int): Pairs drawn per call. Defaults to 4096.
        tau (float): Temperature. Defaults to 0.07.
        loss_weight (float): Multiplier of the returned loss. Defaults to 1.0.
        chunk_size (int, optional): Anchors per row chunk; None or <= 0 for one chunk.
            Defaults to 4096.
        seed (int): Seed of the draw, combined with the iteration. Defaults to 0.
        level (str, optional): Feature level; only ``'pair'``.
        anchors (str): On gathered pairs, ``'local'`` (default) or ``'global'``; see the
            module doc.
    """

    levels = ('pair', )
    #: the loss reads only the pairs it draws: the distiller leaves the pair level local
    draws_rows = True

    def __init__(self,
                 num_pairs: int = 4096,
                 tau: float = 0.07,
                 loss_weight: float = 1.0,
                 chunk_size: Optional[int] = 4096,
                 seed: int = 0,
                 level: Optional[str] = None,
                 anchors: str = 'local') -> None:
        super().__init__(loss_weight=loss_weight, level=level)
        if anchors not in ('local', 'global'):
            raise ValueError(f"anchors must be 'local' or 'global', got {anchors!r}")
        self.local_anchors = anchors == 'local'
        if num_pairs < 1:
            raise ValueError(f'num_pairs must be >= 1, got {num_pairs}')
        if tau <= 0:
            raise ValueError(f'tau must be positive, got {tau}')
        self.num_pairs = int(num_pairs)
        self.tau = float(tau)
        self.chunk_size = chunk_size
        self.seed = int(seed)

    def forward(self,
                k: Tensor,
                q: Tensor,
                e: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Draw pairs and compute their InfoNCE.

        Args:
            k (Tensor): 3D feature of each point-pixel pair, shape (P, D).
            q (Tensor): 2D-head feature of each pair's pixel, shape (P, D).
            e (Tensor, optional): Ignored (common interface of the loss heads).
            generator (torch.Generator, optional): CPU generator for the draw; overrides the
                one seeded by ``(seed, iteration)``.

        Returns:
            Tensor: Scalar float32 loss, times ``loss_weight``.
        """
        check_pair(k, q)
        idx = self.sample_pairs(k.shape[0], generator)
        if idx is not None:
            idx = host_to_device(idx, k.device)
            k, q = k.index_select(0, idx), q.index_select(0, idx)
        with autocast_off(k.device):
            k, q = as_float32(k, q)
            losses, _ = infonce_anchor_losses(k, q, self.tau, self.chunk_size)
            loss = losses.mean() if losses.numel() else empty_loss(k, q)
        return self.loss_weight * loss

    def loss(self, features: DistillationFeatures) -> dict:
        """The loss of the step; on a pair level kept local in a gathered step, drawn from
        the global counts and computed on the drawn rows only (see the module doc)."""
        feats = features.level(self.level)
        if features.gathered and getattr(feats, 'rank_rows', None) is not None:
            return self.drawn_terms(feats)
        return super().loss(features)

    def drawn_terms(self, feats: PairFeatures) -> dict:
        """The loss of a gathered step from a pair level kept local
        (:meth:`PairFeatures.keep_local`): the draw over the global batch's pairs, whose rows
        alone are gathered.

        Args:
            feats (PairFeatures): This process's pairs, with every process's pair count.

        Returns:
            dict: ``loss``: the global loss's value; in the local-anchor form with world_size
            times the gradient of this process's share.
        """
        check_pair(feats.k, feats.q)
        total = sum(feats.rank_rows)
        draw = self.sample_pairs(total)
        draw = torch.arange(total) if draw is None else draw
        order = draw.argsort()
        k, q, rows = feats.gather_at(draw[order])  # the drawn rows in increasing index
        anchor = empty_loss(k, q)  # every process's loss reaches the gather's collective
        with autocast_off(k.device):
            k, q = as_float32(k, q)
            if self.local_anchors:
                losses, _ = infonce_anchor_terms(k, q, self.tau, self.chunk_size, rows=rows)
                share = losses.sum() / max(len(draw), 1)
                return {'loss': self.loss_weight * sum_of_shares(share + anchor)}
            # the global form: every process the whole loss, anchors in the draw's order
            in_draw_order = host_to_device(order.argsort(), k.device)
            k, q = k.index_select(0, in_draw_order), q.index_select(0, in_draw_order)
            losses, _ = infonce_anchor_losses(k, q, self.tau, self.chunk_size)
            loss = losses.mean() if losses.numel() else empty_loss(k, q)
        return {'loss': self.loss_weight * (loss + anchor)}

    def local_terms(self, k: Tensor, q: Tensor, e: Optional[Tensor],
                    rows) -> dict:
        """The loss in the local-anchor form (see the module doc).

        Args:
            k (Tensor): Gathered 3D features of every pair, shape (P, D).
            q (Tensor): Gathered 2D features of every pair, shape (P, D).
            e (Tensor, optional): Ignored.
            rows (tuple[int, int]): This process's pairs among the P rows.

        Returns:
            dict: ``loss``: the global loss's value, with world_size times the gradient of this
            process's share.
        """
        check_pair(k, q)
        anchor = empty_loss(k, q)  # every process's loss reaches the gather's collective
        idx = self.sample_pairs(k.shape[0])
        idx = torch.arange(k.shape[0]) if idx is None else idx.sort().values
        # sorted, the drawn pairs of this process are one range of the draw
        lo, hi = (int(v) for v in torch.searchsorted(idx, torch.tensor(rows)))
        idx = host_to_device(idx, k.device)
        with autocast_off(k.device):
            ks, qs = as_float32(k.index_select(0, idx), q.index_select(0, idx))
            losses, _ = infonce_anchor_terms(ks, qs, self.tau, self.chunk_size, rows=(lo, hi))
            share = losses.sum() / max(len(idx), 1)
        return {'loss': self.loss_weight * sum_of_shares(share + anchor)}

    def sample_pairs(self,
                     num_available: int,
                     generator: Optional[torch.Generator] = None) -> Optional[Tensor]:
        """Indices of the drawn pairs, or None when every pair is used.

        Args:
            num_available (int): Number of pairs P.
            generator (torch.Generator, optional): CPU generator; defaults to
                :meth:`iteration_generator`.

        Returns:
            Tensor | None: ``num_pairs`` distinct indices (CPU, int64), or None if
            ``P <= num_pairs``.
        """
        if num_available <= self.num_pairs:
            return None
        gen = generator if generator is not None else self.iteration_generator()
        return torch.randperm(num_available, generator=gen)[:self.num_pairs]

    def iteration_generator(self) -> torch.Generator:
        """A CPU generator seeded by ``(seed, iteration)``: the same on every process."""
        from mmengine.logging import MessageHub
        iteration = MessageHub.get_current_instance().get_info('iter', 0) or 0
        return torch.Generator().manual_seed(self.seed + 1_000_003 * int(iteration))

    def extra_repr(self) -> str:
        return (f'num_pairs={self.num_pairs}, tau={self.tau}, loss_weight={self.loss_weight}, '
                f'chunk_size={self.chunk_size}, seed={self.seed}')
