"""Cross-modal and intra-modal relational loss (Mahmoud, Harakeh, Waslander, ECCV 2024).

With K = [k_i] and Q = [q_i] (M x D pooled superpixel features)::

    C_cross = | K Q^T - Q Q^T |        (element-wise absolute value)
    C_intra = | K K^T - Q Q^T |
    L(C)    = mean_i C_ii + mean_{i != j} C_ij
    L_rel   = lambda_cross * L(C_cross) + lambda_intra * L(C_intra)

The 3D-to-2D and 3D-to-3D similarity structures are made to copy the teacher-head's 2D-to-2D
one. The three M x M products are computed in row chunks under activation checkpointing, so at
most a few (chunk_size, M) blocks are alive at a time; only sums leave a chunk. With ``M == 1``
there is no off-diagonal pair and that term is 0.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from mmdet3d.registry import MODELS
from torch import Tensor

from .distillation_loss import DistillationLoss
from .utils import as_float32, autocast_off, check_pair, empty_loss, row_chunks, run_chunk


@MODELS.register_module()
class RelationalLoss(DistillationLoss):
    """Relational distillation loss (cross-modal + intra-modal similarity structures).

    Its two weighted terms are logged separately (``<name>_cross`` and ``<name>_intra``).

    Args:
        lambda_cross (float): Weight of ``L(C_cross)``. Defaults to 1.0.
        lambda_intra (float): Weight of ``L(C_intra)``. Defaults to 1.0.
        loss_weight (float): Multiplier of the returned loss. Defaults to 1.0.
        chunk_size (int, optional): Rows per chunk; None or <= 0 for one chunk.
            Defaults to 4096.
        detach_target (bool): Stop the gradient through the target structure ``Q Q^T``
            (not in the formula; off by default, so ``q`` also receives its gradient).
            Defaults to False.
        detach_q (bool): Treat the 2D side as the teacher: no gradient reaches ``q`` at all,
            only the 3D features learn the structure. With a trainable 2D head and no stop
            gradient, the trivial optimum is every k and q equal to one vector (measured on the
            demo world: the loss reaches ~0.005 with positive similarity 0.998 and the features
            are useless), so the relational configs set it. Defaults to False.
        level (str, optional): Feature level; only ``'superpixel'``.
    """

    def __init__(self,
                 lambda_cross: float = 1.0,
                 lambda_intra: float = 1.0,
                 loss_weight: float = 1.0,
                 chunk_size: Optional[int] = 4096,
                 detach_target: bool = False,
                 detach_q: bool = False,
                 level: Optional[str] = None) -> None:
        super().__init__(loss_weight=loss_weight, level=level)
        self.lambda_cross = float(lambda_cross)
        self.lambda_intra = float(lambda_intra)
        self.chunk_size = chunk_size
        self.detach_target = bool(detach_target)
        self.detach_q = bool(detach_q)

    def forward(self, k: Tensor, q: Tensor, e: Optional[Tensor] = None) -> Tensor:
        """Compute the weighted relational loss.

        Args:
            k (Tensor): Pooled 3D features, shape (M, D).
            q (Tensor): Pooled 2D-head features, shape (M, D).
            e (Tensor, optional): Ignored (common interface of the loss heads).

        Returns:
            Tensor: ``loss_weight * (lambda_cross * cross + lambda_intra * intra)``, scalar
            float32.
        """
        terms = self.components(k, q.detach() if self.detach_q else q)
        return self.loss_weight * (self.lambda_cross * terms['cross'] +
                                   self.lambda_intra * terms['intra'])

    def terms(self, k: Tensor, q: Tensor, e: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """The two weighted terms, ``cross`` and ``intra`` (their sum is :meth:`forward`).

        Args:
            k (Tensor): Pooled 3D features, shape (M, D).
            q (Tensor): Pooled 2D-head features, shape (M, D).
            e (Tensor, optional): Ignored.

        Returns:
            dict[str, Tensor]: ``loss_weight * lambda_cross * L(C_cross)`` and
            ``loss_weight * lambda_intra * L(C_intra)``.
        """
        terms = self.components(k, q.detach() if self.detach_q else q)
        return dict(cross=self.loss_weight * self.lambda_cross * terms['cross'],
                    intra=self.loss_weight * self.lambda_intra * terms['intra'])

    def components(self, k: Tensor, q: Tensor) -> Dict[str, Tensor]:
        """The two unweighted terms ``L(C_cross)`` and ``L(C_intra)``.

        Args:
            k (Tensor): Pooled 3D features, shape (M, D).
            q (Tensor): Pooled 2D-head features, shape (M, D).

        Returns:
            dict[str, Tensor]: ``cross`` and ``intra``, scalars in float32 (without
            ``lambda_*`` or ``loss_weight``).
        """
        check_pair(k, q)
        with autocast_off(k.device):
            k, q = as_float32(k, q)
            m = k.shape[0]
            if m == 0:
                zero = empty_loss(k, q)
                return dict(cross=zero, intra=zero)
            return dict(cross=self._term(k, q, q), intra=self._term(k, q, k))

    def _term(self, k: Tensor, q: Tensor, side: Tensor) -> Tensor:
        """``L(C)`` for ``C = |K side^T - Q Q^T|`` (side = Q: cross-modal, K: intra-modal).

        Args:
            k (Tensor): 3D features, shape (M, D), float32.
            q (Tensor): 2D features, shape (M, D), float32.
            side (Tensor): ``q`` or ``k``.

        Returns:
            Tensor: Scalar.
        """
        m = k.shape[0]
        sums = sum(
            run_chunk(self._chunk_sums, k[a:b], side[a:b], q[a:b], side, q)
            for a, b in row_chunks(m, self.chunk_size))
        return self._reduce(sums[0], sums[1], m)

    @staticmethod
    def _reduce(diag_sum: Tensor, total_sum: Tensor, m: int) -> Tensor:
        """``L(C) = mean_i C_ii + mean_{i != j} C_ij`` from the sums of C.

        Args:
            diag_sum (Tensor): ``sum_i C_ii``, scalar.
            total_sum (Tensor): ``sum_ij C_ij``, scalar.
            m (int): M.

        Returns:
            Tensor: Scalar.
        """
        loss = diag_sum / m
        if m > 1:
            loss = loss + (total_sum - diag_sum) / (m * (m - 1))
        return loss

    def _chunk_sums(self, k_rows: Tensor, side_rows: Tensor, q_rows: Tensor, side: Tensor,
                    q: Tensor) -> Tensor:
        """Diagonal and total sums of one row chunk of ``C = |K side^T - Q Q^T|``.

        One term per checkpointed call keeps a single (C, M) difference alive for backward.

        Args:
            k_rows (Tensor): 3D features of the chunk, shape (C, D).
            side_rows (Tensor): ``side`` features of the chunk, shape (C, D).
            q_rows (Tensor): 2D features of the chunk, shape (C, D).
            side (Tensor): All ``side`` features (Q or K), shape (M, D).
            q (Tensor): All 2D features, shape (M, D).

        Returns:
            Tensor: ``[sum_i C_ii, sum_ij C_ij]`` over the chunk's rows, shape (2,).
        """
        with autocast_off(k_rows.device):
            q_t, q_rows_t = (q.detach(), q_rows.detach()) if self.detach_target else (q, q_rows)
            # in place on the fresh product; the L1 norm needs no |.| temporary
            diff = (k_rows @ side.t()).sub_(q_rows_t @ q_t.t())
            total = torch.linalg.vector_norm(diff, ord=1)
            # the diagonal from row-wise dot products (no (C, M) gather in backward)
            diag = ((k_rows * side_rows).sum(dim=1) - (q_rows_t * q_rows_t).sum(dim=1)).abs()
            return torch.stack([diag.sum(), total])

    def extra_repr(self) -> str:
        return (f'lambda_cross={self.lambda_cross}, lambda_intra={self.lambda_intra}, '
                f'loss_weight={self.loss_weight}, chunk_size={self.chunk_size}')
