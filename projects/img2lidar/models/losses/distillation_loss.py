"""The loss-head protocol: what a loss consumes and the named terms it returns."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from torch import Tensor, nn

from ..distillation_features import LEVELS, DistillationFeatures

#: a term whose name starts with it is a logged figure, not a loss (never optimised)
DIAGNOSTIC_PREFIX = 'diag/'


class DistillationLoss(nn.Module):
    """Base of the distillation losses.

    A loss declares what it consumes and returns its named, weighted terms; the distiller
    builds only what its losses declare and never needs editing for a new loss:

    - :attr:`levels`: the feature levels the loss can work on (``'superpixel'``: pooled
      superpixel features, ``'pair'``: one row per point-pixel pair), the first being the
      default; ``level=`` in the config picks one of them.
    - :meth:`required_levels`: every level the loss reads (its ``level`` by default; override
      it for a loss that reads several).
    - :attr:`uses_teacher_features`: whether the pooled raw teacher features ``e`` are read
      (then the distiller pools them; superpixel level only).
    - :meth:`loss`: the named terms from the step's :class:`DistillationFeatures`. The default
      calls :meth:`terms` on the chosen level's ``k``, ``q`` (and ``e``); a loss that needs ids,
      pair indices or per-sample ranges overrides :meth:`loss` itself.
    - :meth:`forward` ``(k, q, e=None)``: the weighted scalar on pooled tensors, so a head is
      also a plain function of its features (``head(k, q, e)``).

    The distiller logs the term ``'loss'`` under the config name of the loss and any other
    term ``t`` as ``<name>_<t>``; all of them are optimised (their sum). A term named
    ``'diag/<figure>'`` (:data:`DIAGNOSTIC_PREFIX`) is a detached figure for the log only: the
    distiller logs it as ``diag/<name without 'loss'>/<figure>`` and does not optimise it.

    Args:
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        level (str, optional): One of :attr:`levels`; the first when None.
    """

    #: feature levels this loss can work on; the first is the default
    levels: Tuple[str, ...] = ('superpixel', )
    #: whether gathered features are computed in the local-anchor form (:meth:`local_terms`)
    local_anchors: bool = False
    #: whether the loss reads only rows it draws itself from the global counts (PPKT): when
    #: every loss of a level does, the distiller leaves that level local in a gathered step
    #: (with every process's row count) and the loss gathers only what it drew
    draws_rows: bool = False

    def __init__(self, loss_weight: float = 1.0, level: Optional[str] = None) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        level = self.levels[0] if level is None else level
        if level not in self.levels or level not in LEVELS:
            raise ValueError(f'{type(self).__name__} works on {self.levels} features, '
                             f'not {level!r}')
        self.level = level

    @property
    def uses_teacher_features(self) -> bool:
        """Whether :meth:`loss` reads the pooled teacher features ``e``."""
        return False

    def required_levels(self) -> Tuple[str, ...]:
        """The feature levels :meth:`loss` reads."""
        return (self.level, )

    def loss(self, features: DistillationFeatures) -> Dict[str, Tensor]:
        """Named, weighted loss terms of one step.

        Args:
            features (DistillationFeatures): What the distiller built for this step.

        Returns:
            dict[str, Tensor]: Scalar terms; ``'loss'`` for a single-term loss.
        """
        feats = features.level(self.level)
        if getattr(feats, 'rank_rows', None) is not None:
            raise ValueError(f'{type(self).__name__} needs every row of the {self.level!r} '
                             'level, which was kept local for losses that draw their rows')
        e = getattr(feats, 'e', None) if self.uses_teacher_features else None
        rows = getattr(feats, 'local_rows', None)
        if features.gathered and rows is not None and self.local_anchors:
            return self.local_terms(feats.k, feats.q, e, rows)
        return self.terms(feats.k, feats.q, e)

    def local_terms(self, k: Tensor, q: Tensor, e: Optional[Tensor],
                    rows: Tuple[int, int]) -> Dict[str, Tensor]:
        """The terms in the local-anchor form: this process's anchors ``rows[0]:rows[1]``
        against every gathered candidate, as shares of the global loss
        (:func:`~projects.img2lidar.models.gather_features.sum_of_shares`: same value and
        gradient as the global form). Losses with ``local_anchors = True`` implement it."""
        raise NotImplementedError

    def terms(self, k: Tensor, q: Tensor, e: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Named, weighted terms on pooled tensors (one term, ``'loss'``, by default)."""
        return {'loss': self(k, q, e)}

    def forward(self, k: Tensor, q: Tensor, e: Optional[Tensor] = None) -> Tensor:
        """The weighted loss on (M, D) features ``k`` and ``q`` (and (M, E) ``e``)."""
        raise NotImplementedError
