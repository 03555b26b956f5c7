"""SLidR's superpixel InfoNCE loss and the chunked contrastive machinery shared by its family.

SLidR (Sautier et al., CVPR 2022) contrasts pooled superpixel features in one direction: every
3D anchor ``k_i`` is pulled to its own 2D feature ``q_i`` and pushed from the 2D features of all
other superpixels of the batch::

    z_ij = <k_i, q_j> / tau
    L = (1/M) sum_i -log( exp(z_ii) / sum_j exp(z_ij) )

The (M, M) logit matrix of a full batch (M ~ 14,000) is about 0.8 GB, so it is never built in
one piece: anchors are processed in row chunks of ``chunk_size`` rows, the per-anchor loss is
``logsumexp_j(z_ij) - z_ii`` (never ``exp`` of a raw logit), and each chunk runs under
``torch.utils.checkpoint`` so that backward keeps only the inputs and the per-anchor losses of
every chunk and recomputes one chunk's (chunk_size, M) intermediates at a time.

Everything is computed in float32 with autocast disabled, whatever the input dtype or the
autocast state of the caller, so that fp16/bf16 training stays finite.

The helpers at the top of this module (row chunks, checkpointed chunk runner, teacher
similarity, torch-exact row quantile) are shared with the other losses of this package.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def autocast_off(device: torch.device) -> ContextManager:
    """Return a context that disables autocast for ``device``'s type.

    Args:
        device (torch.device): Device of the tensors the context will compute on.

    Returns:
        ContextManager: ``torch.autocast(..., enabled=False)``, or a null context on a device
        type that autocast does not know.
    """
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # pragma: no cover - device type without autocast support
        return contextlib.nullcontext()


def row_chunks(num_rows: int, chunk_size: Optional[int]) -> List[Tuple[int, int]]:
    """Split ``range(num_rows)`` into consecutive ``(start, stop)`` chunks.

    Args:
        num_rows (int): Number of rows M.
        chunk_size (int, optional): Rows per chunk; None or a value <= 0 means one chunk.

    Returns:
        list[tuple[int, int]]: Half-open row ranges covering ``0..num_rows``.
    """
    if num_rows <= 0:
        return []
    if chunk_size is None or chunk_size <= 0:
        chunk_size = num_rows
    return [(a, min(a + chunk_size, num_rows)) for a in range(0, num_rows, chunk_size)]


def run_chunk(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` under non-reentrant activation checkpointing when grads are needed.

    Checkpointing keeps only ``args`` and the outputs alive after the forward pass; the
    chunk's intermediates (M wide) are recomputed chunk by chunk during backward. When no
    gradient can flow (``torch.no_grad()`` or no tensor argument requires grad), ``fn`` is
    simply called.

    Args:
        fn (Callable): The chunk function; must be deterministic given ``args``.
        *args: Its arguments (tensors, ints or None).

    Returns:
        Any: ``fn(*args)``.
    """
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(a, Tensor) and a.requires_grad for a in args)
    if not needs_grad:
        return fn(*args)
    # the chunk functions draw no random numbers, so the RNG state need not be saved
    return checkpoint(fn, *args, use_reentrant=False, preserve_rng_state=False)


def as_float32(*tensors: Optional[Tensor]) -> Tuple[Optional[Tensor], ...]:
    """Cast tensors to float32 (None passes through).

    Args:
        *tensors (Tensor, optional): Tensors of any floating dtype.

    Returns:
        tuple: The same tensors in float32, differentiable.
    """
    return tuple(None if t is None else t.float() for t in tensors)


def empty_loss(*tensors: Tensor) -> Tensor:
    """A float32 zero that stays connected to the graph of ``tensors``.

    Args:
        *tensors (Tensor): Inputs of a loss that has nothing to compute.

    Returns:
        Tensor: Scalar 0 (gradients of 0 flow to every input).
    """
    out = tensors[0].new_zeros((), dtype=torch.float32)
    for t in tensors:
        out = out + t.float().sum() * 0.0
    return out


def logsumexp_(z: Tensor) -> Tensor:
    """Row-wise log-sum-exp that reuses the storage of ``z`` (``z`` is consumed).

    ``log sum_j exp(z_ij) = m_i + log sum_j exp(z_ij - m_i)`` with ``m_i = max_j z_ij``
    (detached: the identity holds for any constant). The shift and ``exp`` run in place, so
    the forward holds a single (C, M) buffer and autograd saves only ``exp(z - m)``, where
    ``torch.logsumexp`` would keep its input and allocate further (C, M) temporaries.

    Args:
        z (Tensor): Logits, shape (C, M), each row with at least one finite entry; entries
            may be ``-inf``. Overwritten.

    Returns:
        Tensor: Shape (C,).
    """
    m = z.detach().amax(dim=1, keepdim=True)
    return m.squeeze(1) + z.sub_(m).exp_().sum(dim=1).log()


def normalize_teacher(e: Tensor) -> Tensor:
    """L2-normalise pooled teacher features row-wise in float32, without gradient.

    Args:
        e (Tensor): Pooled raw teacher features, shape (M, E).

    Returns:
        Tensor: Unit rows (zero rows stay zero), shape (M, E), float32, detached.
    """
    return F.normalize(e.detach().float(), p=2.0, dim=1)


def teacher_similarity(en_rows: Tensor, en: Tensor) -> Tensor:
    """Rows of the semantic similarity ``s_ij = cos(e_i, e_j)``, clipped to [0, 1].

    Args:
        en_rows (Tensor): Normalised teacher features of the chunk's anchors, shape (C, E).
        en (Tensor): Normalised teacher features of all superpixels, shape (M, E).

    Returns:
        Tensor: ``clip(en_rows @ en^T, 0, 1)``, shape (C, M), float32.
    """
    return (en_rows @ en.t()).clamp_(0.0, 1.0)


def row_quantile(x: Tensor, q: float) -> Tensor:
    """Per-row quantile with linear interpolation, equal to ``torch.quantile(x, q, dim=1)``.

    ``torch.quantile`` refuses inputs of more than 2**24 elements and sorts (copies) whole
    rows; this version takes the two order statistics it needs from one ``topk`` call from the
    nearer end of each row (for ``q = 0.01`` the 1% smallest values) and works on any size.
    The rank is computed in ``x``'s dtype exactly as ``torch.quantile`` does.

    Args:
        x (Tensor): Values without NaN, shape (C, N), N >= 1.
        q (float): Quantile in [0, 1].

    Returns:
        Tensor: Shape (C,).
    """
    n = x.shape[1]
    rank = torch.tensor(q, dtype=x.dtype) * (n - 1)
    below = int(rank.floor())
    above = int(rank.ceil())
    frac = float(rank - below)
    if above + 1 <= n - below:  # ascending: column j is the j-th smallest
        values = x.topk(above + 1, dim=1, largest=False, sorted=True).values
        v_below, v_above = values[:, below], values[:, above]
    else:  # descending: column j is the (n - 1 - j)-th smallest
        values = x.topk(n - below, dim=1, largest=True, sorted=True).values
        v_below, v_above = values[:, n - 1 - below], values[:, n - 1 - above]
    return torch.lerp(v_below, v_above, frac)


def check_pair(k: Tensor, q: Tensor, e: Optional[Tensor] = None) -> None:
    """Validate the shapes of pooled features.

    Args:
        k (Tensor): Pooled 3D features, shape (M, D).
        q (Tensor): Pooled 2D-head features, shape (M, D).
        e (Tensor, optional): Pooled teacher features, shape (M, E).

    Raises:
        ValueError: On a shape mismatch.
    """
    if k.dim() != 2 or k.shape != q.shape:
        raise ValueError(f'k and q must both be (M, D); got {tuple(k.shape)} and '
                         f'{tuple(q.shape)}')
    if e is not None and (e.dim() != 2 or e.shape[0] != k.shape[0]):
        raise ValueError(f'e must be (M, E) with M = {k.shape[0]}; got {tuple(e.shape)}')


def build_balancing(balancing: Union[None, dict, nn.Module]) -> Optional[nn.Module]:
    """Build an anchor-balancing module from a config (or pass a module / None through).

    Args:
        balancing (dict | nn.Module | None): e.g. ``dict(type='ClassAgnosticBalancing',
            threshold=0.5)``.

    Returns:
        nn.Module | None: The module.
    """
    if balancing is None or isinstance(balancing, nn.Module):
        return balancing
    return MODELS.build(balancing)


# ---------------------------------------------------------------------------------------------
# SLidR InfoNCE (base class of the contrastive family)
# ---------------------------------------------------------------------------------------------


@MODELS.register_module()
class SuperpixelInfoNCELoss(nn.Module):
    """SLidR's superpixel InfoNCE: 3D anchors against 2D candidates, one direction.

    Negatives are all other superpixels of the batch passed in. Subclasses change the logits of
    a row chunk (:meth:`_transform_logits`) and may precompute per-anchor statistics of the
    teacher similarity in one no-grad pass (:meth:`_row_statistics`).

    Args:
        tau (float): Temperature. Defaults to 0.07.
        loss_weight (float): Multiplier of the returned loss. Defaults to 1.0.
        chunk_size (int, optional): Anchors per row chunk; None or <= 0 for a single chunk.
            Defaults to 4096.
        balancing (dict | nn.Module, optional): Anchor weighting, e.g.
            ``dict(type='ClassAgnosticBalancing', threshold=0.5)``; it needs ``e`` in
            :meth:`forward`. None averages anchors uniformly. Defaults to None.

    Note:
        Whenever ``e`` is used (here: only with ``balancing``), superpixels whose pooled teacher
        feature is all zero are dropped from the loss (ST-SLidR's reference behaviour);
        without balancing ``e`` is ignored.
    """

    def __init__(self,
                 tau: float = 0.07,
                 loss_weight: float = 1.0,
                 chunk_size: Optional[int] = 4096,
                 balancing: Union[None, dict, nn.Module] = None) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f'tau must be positive, got {tau}')
        self.tau = float(tau)
        self.loss_weight = float(loss_weight)
        self.chunk_size = chunk_size
        self.balancing = build_balancing(balancing)

    # -- public API ------------------------------------------------------------------------
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
            k, q, en = self._prepare(k, q, e)
            if k.shape[0] == 0:
                return k.new_zeros((0, )), None
            stats, weights = self._teacher_pass(en)
            chunks = []
            for a, b in row_chunks(k.shape[0], self.chunk_size):
                en_rows = None if en is None else en[a:b]
                stats_rows = None if stats is None else stats[a:b]
                chunks.append(
                    run_chunk(self._chunk_losses, k[a:b], q[a:b], q, en_rows, en, stats_rows,
                              a))
        return torch.cat(chunks), weights

    # -- steps -----------------------------------------------------------------------------
    @property
    def uses_teacher(self) -> bool:
        """Whether ``e`` is needed (then zero-feature superpixels are dropped)."""
        return self.balancing is not None

    def _prepare(self, k: Tensor, q: Tensor,
                 e: Optional[Tensor]) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Cast to float32, drop superpixels without teacher feature, normalise ``e``.

        Args:
            k (Tensor): Shape (M, D).
            q (Tensor): Shape (M, D).
            e (Tensor, optional): Shape (M, E).

        Returns:
            tuple: k (M', D), q (M', D) in float32 and the normalised, detached teacher
            features (M', E), or None when the loss does not use them.
        """
        k, q = as_float32(k, q)
        if not self.uses_teacher:
            return k, q, None
        if e is None:
            raise ValueError(f'{type(self).__name__} with this configuration needs the pooled '
                             'teacher features e')
        keep = (e.detach() != 0).any(dim=1)
        if not bool(keep.all()):
            idx = keep.nonzero(as_tuple=True)[0]
            k, q, e = k.index_select(0, idx), q.index_select(0, idx), e.index_select(0, idx)
        return k, q, normalize_teacher(e)

    def _teacher_pass(self, en: Optional[Tensor]) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """One no-grad pass over the rows of s: per-anchor statistics and balancing weights.

        Args:
            en (Tensor, optional): Normalised teacher features, shape (M, E).

        Returns:
            tuple: per-anchor statistics from :meth:`_row_statistics` (M,) or None, and
            balancing weights (M,) or None.
        """
        need_stats = self._needs_row_statistics()
        if en is None or not (need_stats or self.balancing is not None):
            return None, None
        stats, votes = [], []
        with torch.no_grad():
            for a, b in row_chunks(en.shape[0], self.chunk_size):
                s = teacher_similarity(en[a:b], en)
                if self.balancing is not None:
                    votes.append(self.balancing.votes(s))
                if need_stats:  # last: may overwrite s
                    stats.append(self._row_statistics(s))
        stats_t = torch.cat(stats) if need_stats else None
        weights = self.balancing.weights_from_votes(torch.cat(votes)) if votes else None
        return stats_t, weights

    def _chunk_losses(self, k_rows: Tensor, q_rows: Tensor, q: Tensor,
                      en_rows: Optional[Tensor], en: Optional[Tensor],
                      stats_rows: Optional[Tensor], offset: int) -> Tensor:
        """Per-anchor InfoNCE of one row chunk: ``logsumexp_j(z'_ij) - z_ii``.

        The positive logit is taken as a row-wise dot product (its weight is always 1) rather
        than gathered from the (C, M) logits, so backward needs no extra (C, M) buffer for it.
        The logits are modified in place (:func:`logsumexp_`); autograd keeps only what the
        chunk's backward needs: ``exp(z' - max)`` and, for the tolerant loss, its weights or
        mask.

        Args:
            k_rows (Tensor): Anchors of the chunk, shape (C, D).
            q_rows (Tensor): Their positives, shape (C, D).
            q (Tensor): All 2D candidates, shape (M, D).
            en_rows (Tensor, optional): Normalised teacher features of the chunk, (C, E).
            en (Tensor, optional): All normalised teacher features, (M, E).
            stats_rows (Tensor, optional): Per-anchor statistics of the chunk, (C,).
            offset (int): Global index of the chunk's first anchor.

        Returns:
            Tensor: Shape (C,), float32.
        """
        with autocast_off(k_rows.device):
            k_scaled = k_rows / self.tau
            z = self._transform_logits(k_scaled @ q.t(), en_rows, en, stats_rows, offset)
            return logsumexp_(z) - (k_scaled * q_rows).sum(dim=1)

    # -- hooks for subclasses ----------------------------------------------------------------
    def _needs_row_statistics(self) -> bool:
        """Whether :meth:`_row_statistics` must run before the loss chunks."""
        return False

    def _row_statistics(self, s_rows: Tensor) -> Tensor:  # pragma: no cover - hook
        """Per-anchor statistic of a chunk of s (e.g. a quantile), shape (C,).

        ``s_rows`` (C, M) is a temporary and may be overwritten.
        """
        raise NotImplementedError

    def _transform_logits(self, z: Tensor, en_rows: Optional[Tensor], en: Optional[Tensor],
                          stats_rows: Optional[Tensor], offset: int) -> Tensor:
        """Modify the logits of a row chunk (identity for plain InfoNCE).

        The diagonal (positive) logits must stay unchanged. ``z`` may be modified in place.

        Args:
            z (Tensor): Logits ``<k_i, q_j> / tau``, shape (C, M).
            en_rows (Tensor, optional): Normalised teacher features of the chunk, (C, E).
            en (Tensor, optional): All normalised teacher features, (M, E).
            stats_rows (Tensor, optional): Per-anchor statistics of the chunk, (C,).
            offset (int): Global index of the chunk's first anchor.

        Returns:
            Tensor: Logits, shape (C, M).
        """
        return z

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, loss_weight={self.loss_weight}, '
                f'chunk_size={self.chunk_size}')
