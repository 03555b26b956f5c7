"""SLidR's superpixel InfoNCE loss (Sautier et al., CVPR 2022).

Pooled superpixel features are contrasted in one direction: every 3D anchor ``k_i`` is pulled
to its own 2D feature ``q_i`` and pushed from the 2D features of all other superpixels of the
batch::

    z_ij = <k_i, q_j> / tau
    L = (1/M) sum_i -log( exp(z_ii) / sum_j exp(z_ij) )

computed by the chunked core of :mod:`.infonce_core`, optionally with class-agnostic balanced
anchors (:class:`ClassAgnosticBalancing`, ``balancing=``).

On features gathered across processes (``gather_features=True``) it runs in the local-anchor
form by default (``anchors='local'``): each process computes only its own anchors' losses,
against every gathered candidate (1/W of the work of the global form on W processes), as
shares of the global loss with the same value and gradient
(:func:`~projects.img2lidar.models.gather_features.sum_of_shares`); the balancing weights come
from every anchor's votes (one small gather of M numbers). ``anchors='global'`` makes every
process compute the whole global loss.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

from mmdet3d.registry import MODELS
from torch import Tensor, nn

from ..gather_features import gather_rows, sum_of_shares
from .distillation_loss import DistillationLoss
from .infonce_core import drop_rows_without_teacher, infonce_anchor_losses, infonce_anchor_terms
from .utils import as_float32, autocast_off, build_balancing, check_pair, empty_loss

ANCHORS = ('local', 'global')


@MODELS.register_module()
class SuperpixelInfoNCELoss(DistillationLoss):
    """SLidR's superpixel InfoNCE: 3D anchors against 2D candidates, one direction.

    Negatives are all other superpixels of the batch passed in. A logit ``transform`` (the
    semantic tolerance of :class:`SemanticallyTolerantLoss`) and an anchor ``balancing`` plug
    into the same core.

    Args:
        tau (float): Temperature. Defaults to 0.07.
        loss_weight (float): Multiplier of the returned loss. Defaults to 1.0.
        chunk_size (int, optional): Anchors per row chunk; None or <= 0 for a single chunk.
            Defaults to 4096.
        balancing (dict | nn.Module, optional): Anchor weighting, e.g.
            ``dict(type='ClassAgnosticBalancing', threshold=0.5)``; it needs ``e``. None
            averages anchors uniformly. Defaults to None.
        level (str, optional): Feature level; only ``'superpixel'``.
        anchors (str): On gathered features, ``'local'`` (default: each process its own
            anchors) or ``'global'`` (every process all anchors); see the module doc.

    Note:
        Whenever ``e`` is used (here: only with ``balancing``), superpixels whose pooled teacher
        feature is all zero are dropped from the loss (ST-SLidR's reference behaviour);
        without balancing ``e`` is ignored.
    """

    #: logit transform of the core (None: plain InfoNCE)
    transform = None

    def __init__(self,
                 tau: float = 0.07,
                 loss_weight: float = 1.0,
                 chunk_size: Optional[int] = 4096,
                 balancing: Union[None, dict, nn.Module] = None,
                 level: Optional[str] = None,
                 anchors: str = 'local') -> None:
        super().__init__(loss_weight=loss_weight, level=level)
        if anchors not in ANCHORS:
            raise ValueError(f'anchors must be one of {ANCHORS}, got {anchors!r}')
        self.local_anchors = anchors == 'local'
        if tau <= 0:
            raise ValueError(f'tau must be positive, got {tau}')
        self.tau = float(tau)
        self.chunk_size = chunk_size
        self.balancing = build_balancing(balancing)

    @property
    def uses_teacher_features(self) -> bool:
        """Whether ``e`` is needed (then zero-feature superpixels are dropped)."""
        return self.balancing is not None or self.transform is not None

    def forward(self, k: Tensor, q: Tensor, e: Optional[Tensor] = None) -> Tensor:
        """Compute the loss.

        Args:
            k (Tensor): Pooled 3D (student) features, shape (M, D).
            q (Tensor): Pooled 2D-head features, shape (M, D).
            e (Tensor, optional): Pooled raw teacher features, shape (M, E).

        Returns:
            Tensor: Scalar float32 loss, times ``loss_weight``.
        """
        with autocast_off(k.device):
            losses, weights = self.per_anchor_losses(k, q, e)
            if losses.numel() == 0:
                loss = empty_loss(k, q)
            elif weights is None:
                loss = losses.mean()
            else:
                loss = self.balancing.weighted_mean(losses, weights)
        return self.loss_weight * loss

    def per_anchor_losses(self,
                          k: Tensor,
                          q: Tensor,
                          e: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """Per-anchor losses and, with balancing, per-anchor weights (unreduced).

        Args:
            k (Tensor): Pooled 3D features, shape (M, D).
            q (Tensor): Pooled 2D-head features, shape (M, D).
            e (Tensor, optional): Pooled teacher features, shape (M, E).

        Returns:
            tuple: losses of the kept anchors, shape (M',), float32; and their balancing
            weights, shape (M',), or None without balancing. M' < M when superpixels with an
            all-zero teacher feature were dropped.
        """
        check_pair(k, q, e)
        with autocast_off(k.device):
            k, q, en, _ = self._anchors_and_teacher(k, q, e)
            return infonce_anchor_losses(k, q, self.tau, self.chunk_size, en, self.transform,
                                         self.balancing)

    def _anchors_and_teacher(self, k: Tensor, q: Tensor, e: Optional[Tensor],
                             rows: Optional[Tuple[int, int]] = None) -> tuple:
        """k and q in float32 and, when the loss reads ``e``, without the rows whose teacher
        feature is all zero, with the unit teacher rows (else None) and ``rows`` followed
        through that drop."""
        k, q = as_float32(k, q)
        if not self.uses_teacher_features:
            return k, q, None, rows
        if e is None:
            raise ValueError(f'{type(self).__name__} with this configuration needs the pooled '
                             'teacher features e')
        if rows is None:
            return (*drop_rows_without_teacher(k, q, e), None)
        return drop_rows_without_teacher(k, q, e, rows)

    def local_terms(self, k: Tensor, q: Tensor, e: Optional[Tensor],
                    rows: Tuple[int, int]) -> dict:
        """The loss in the local-anchor form (see the module doc).

        Args:
            k (Tensor): Gathered pooled 3D features, shape (M, D).
            q (Tensor): Gathered pooled 2D-head features, shape (M, D).
            e (Tensor, optional): Gathered pooled teacher features, shape (M, E).
            rows (tuple[int, int]): This process's anchors among the M rows.

        Returns:
            dict: ``loss``: the global loss's value, with world_size times the gradient of
            this process's share.
        """
        check_pair(k, q, e)
        # every process's loss must reach the gather, whose backward is a collective
        anchor = empty_loss(k, q)
        with autocast_off(k.device):
            k, q, en, rows = self._anchors_and_teacher(k, q, e, rows)
            losses, votes = infonce_anchor_terms(k, q, self.tau, self.chunk_size, en,
                                                 self.transform, self.balancing, rows)
            if votes is None:
                share = losses.sum() / max(k.shape[0], 1)
            else:
                weights = self.balancing.weights_from_votes(gather_rows(votes))
                share = self.balancing.weighted_share(losses, weights, rows)
        return {'loss': self.loss_weight * sum_of_shares(share + anchor)}

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, loss_weight={self.loss_weight}, '
                f'chunk_size={self.chunk_size}, local_anchors={self.local_anchors}')
