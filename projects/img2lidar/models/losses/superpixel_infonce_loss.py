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
from every anchor's votes (one all-reduce of M numbers, each process's votes in its own rows,
with no exchange of sizes: :func:`~projects.img2lidar.models.gather_features.share_rows`).
``anchors='global'`` makes every process compute the whole global loss.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

from mmdet3d.registry import MODELS
from torch import Tensor, nn

from ..gather_features import share_rows, sum_of_shares
from .contrastive_diagnostics import ContrastiveDiagnostics
from .distillation_loss import DIAGNOSTIC_PREFIX, DistillationLoss
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
        diagnostics_interval (int): Every that many training steps (the first included), the
            step's terms also carry the figures of :mod:`.contrastive_diagnostics` (teacher
            similarity quantiles, masked negatives, balancing weights, positive similarity,
            the loss of each term) as ``'diag/<figure>'`` terms, which the distiller logs and
            does not optimise. Each logged figure costs one host read in mmengine's message
            hub on the steps that log it; the figures themselves add one histogram per chunk
            and, with a tolerance, one more (C, M) product without gradient. 0 (default): off.

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
                 anchors: str = 'local',
                 diagnostics_interval: int = 0) -> None:
        super().__init__(loss_weight=loss_weight, level=level)
        if anchors not in ANCHORS:
            raise ValueError(f'anchors must be one of {ANCHORS}, got {anchors!r}')
        if int(diagnostics_interval) < 0:
            raise ValueError(f'diagnostics_interval must be >= 0 (0: off), got '
                             f'{diagnostics_interval}')
        self.diagnostics_interval = int(diagnostics_interval)
        self._steps = 0
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
        return self._evaluate(k, q, e, diagnose=False)[0]

    def terms(self, k: Tensor, q: Tensor, e: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """The step's loss (``'loss'``) and, every ``diagnostics_interval`` steps, its figures
        (``'diag/<figure>'``, see :mod:`.contrastive_diagnostics`)."""
        loss, figures = self._evaluate(k, q, e, diagnose=self._diagnostics_due())
        return {'loss': loss, **{DIAGNOSTIC_PREFIX + key: v for key, v in figures.items()}}

    def _diagnostics_due(self) -> bool:
        """Whether this training step logs the diagnostics (one call per step)."""
        if self.diagnostics_interval <= 0:
            return False
        due = self._steps % self.diagnostics_interval == 0
        self._steps += 1
        return due

    def _evaluate(self, k: Tensor, q: Tensor, e: Optional[Tensor],
                  diagnose: bool) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The weighted loss and, when ``diagnose``, the figures (else an empty dict)."""
        check_pair(k, q, e)
        figures: Dict[str, Tensor] = {}
        with autocast_off(k.device):
            kk, qq, en, _ = self._anchors_and_teacher(k, q, e)
            diagnostics = ContrastiveDiagnostics(kk.shape[0], kk.device) if diagnose else None
            losses, votes = infonce_anchor_terms(kk, qq, self.tau, self.chunk_size, en,
                                                 self.transform, self.balancing,
                                                 diagnostics=diagnostics)
            weights = None if votes is None else self.balancing.weights_from_votes(votes)
            if losses.numel() == 0:
                return self.loss_weight * empty_loss(k, q), figures
            if weights is None:
                loss = losses.mean()
            else:
                loss = self.balancing.weighted_mean(losses, weights)
            if diagnostics is not None:
                figures = diagnostics.finish(kk, qq, (0, kk.shape[0]), losses, weights)
        return self.loss_weight * loss, figures

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
        diagnose = self._diagnostics_due()
        with autocast_off(k.device):
            k, q, en, rows = self._anchors_and_teacher(k, q, e, rows)
            diagnostics = ContrastiveDiagnostics(k.shape[0], k.device) if diagnose else None
            losses, votes = infonce_anchor_terms(k, q, self.tau, self.chunk_size, en,
                                                 self.transform, self.balancing, rows,
                                                 diagnostics)
            weights = None
            if votes is None:
                share = losses.sum() / max(k.shape[0], 1)
            else:
                weights = self.balancing.weights_from_votes(share_rows(votes, rows, k.shape[0]))
                share = self.balancing.weighted_share(losses, weights, rows)
            figures = {} if diagnostics is None or losses.numel() == 0 else \
                diagnostics.finish(k, q, rows, losses, weights)
        return {'loss': self.loss_weight * sum_of_shares(share + anchor),
                **{DIAGNOSTIC_PREFIX + key: v for key, v in figures.items()}}

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, loss_weight={self.loss_weight}, '
                f'chunk_size={self.chunk_size}, local_anchors={self.local_anchors}, '
                f'diagnostics_interval={self.diagnostics_interval}')
