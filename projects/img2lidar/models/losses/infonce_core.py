"""The chunked, checkpointed InfoNCE core of the contrastive losses (SLidR, ST-SLidR, PPKT).

Every anchor ``k_i`` is pulled to its own candidate ``q_i`` and pushed from all others::

    z_ij = <k_i, q_j> / tau          l_i = logsumexp_j(z'_ij) - z_ii

where ``z'`` is ``z`` after an optional logit transform (the semantically tolerant loss masks
or weights negatives). The (M, M) logits are never built in one piece: anchors run in row
chunks under activation checkpointing, the log-sum-exp works in place, and the positive logit
is a row-wise dot product. Everything is float32 with autocast off.

Teacher similarity ``s = clip(cos(e_i, e_j), 0, 1)`` is needed by the tolerant transform and by
class-agnostic balancing. It is computed once per row chunk, without gradient, and handed to
both: balancing takes its votes, the transform keeps only what its logits need (the quantile
form: a packed boolean mask), so neither the forward nor the backward recomputation of a chunk
multiplies the (C, E) x (E, M) teacher features again.

The pieces plug in by composition:

- a **transform** (e.g. :class:`SemanticTolerance`) has ``needs_similarity`` (bool),
  ``chunk_context(s_rows, en_rows, en, offset, distribution) -> tuple`` (no grad; may overwrite
  ``s_rows``), ``masked_counts(context, en_rows, en, offset) -> (C,)`` (for the diagnostics)
  and ``apply(z, context, offset) -> z`` (in place, diagonal untouched);
- a **balancing** (e.g. :class:`ClassAgnosticBalancing`) has
  ``batch_threshold(distribution) -> Tensor | None``, ``votes(s_rows, threshold) -> (C,)``,
  ``weights_from_votes(votes) -> (M,)`` and ``weighted_mean(losses, weights)``.

Either may set ``needs_distribution``: then the histogram of the batch's off-diagonal teacher
similarities (:class:`SimilarityHistogram`, over all M rows) is computed in a first pass of row
chunks and handed to ``batch_threshold`` and ``chunk_context`` (``distribution``; None
otherwise).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from .contrastive_diagnostics import ContrastiveDiagnostics
from .similarity_histogram import SimilarityHistogram
from .utils import autocast_off, logsumexp_, normalize_teacher, row_chunks, run_chunk, \
    teacher_similarity


def drop_rows_without_teacher(k: Tensor, q: Tensor, e: Tensor,
                              rows: Optional[Tuple[int, int]] = None) -> tuple:
    """Drop superpixels whose pooled teacher feature is all zero and normalise ``e``.

    ST-SLidR's reference drops them (they vanish at the teacher's resolution with its nearest
    pooling). One host read decides (and, with ``rows``, gives their new range).

    Args:
        k (Tensor): Shape (M, D).
        q (Tensor): Shape (M, D).
        e (Tensor): Shape (M, E).
        rows (tuple[int, int], optional): A range of rows to follow through the drop.

    Returns:
        tuple: k (M', D), q (M', D), the unit, detached float32 teacher rows (M', E) and, when
        ``rows`` is given, that range among the kept rows.
    """
    keep = (e.detach() != 0).any(dim=1)
    start, stop = (0, k.shape[0]) if rows is None else rows
    kept = keep.cumsum(0)
    facts = torch.stack([keep.all().long(), kept[start - 1] if start else kept.new_zeros(()),
                         kept[stop - 1] if stop else kept.new_zeros(())]).tolist()
    if not facts[0]:
        idx = keep.nonzero(as_tuple=True)[0]
        k, q, e = k.index_select(0, idx), q.index_select(0, idx), e.index_select(0, idx)
    out = (k, q, normalize_teacher(e))
    return out if rows is None else out + ((facts[1], facts[2]), )


@torch.no_grad()
def batch_distribution(en: Optional[Tensor], chunk_size: Optional[int], transform: Any,
                       balancing: Any) -> Optional[SimilarityHistogram]:
    """The histogram of the batch's off-diagonal teacher similarities, over all M rows, when
    the transform or the balancing adapts its threshold to it (else None): one more pass of
    row chunks without gradient, before the loss's own."""
    if en is None or not any(getattr(part, 'needs_distribution', False)
                             for part in (transform, balancing)):
        return None
    histogram = SimilarityHistogram(device=en.device)
    for a, b in row_chunks(en.shape[0], chunk_size):
        histogram.add_rows(teacher_similarity(en[a:b], en), a)
    return histogram


def _infonce_chunk(k_rows: Tensor, q_rows: Tensor, q: Tensor, tau: float, transform: Any,
                   offset: int, *context: Tensor) -> Tensor:
    """Per-anchor InfoNCE of one row chunk, (C,); see the module doc."""
    with autocast_off(k_rows.device):
        k_scaled = k_rows / tau
        z = k_scaled @ q.t()
        if transform is not None:
            z = transform.apply(z, context, offset)
        return logsumexp_(z) - (k_scaled * q_rows).sum(dim=1)


def infonce_anchor_terms(k: Tensor,
                         q: Tensor,
                         tau: float,
                         chunk_size: Optional[int] = 4096,
                         en: Optional[Tensor] = None,
                         transform: Any = None,
                         balancing: Any = None,
                         rows: Optional[Tuple[int, int]] = None,
                         diagnostics: Optional[ContrastiveDiagnostics] = None
                         ) -> Tuple[Tensor, Optional[Tensor]]:
    """Per-anchor InfoNCE losses and, with balancing, the anchors' votes.

    Args:
        k (Tensor): Anchors, shape (M, D), float32.
        q (Tensor): Candidates, shape (M, D), float32; ``q_i`` is the positive of ``k_i``.
        tau (float): Temperature.
        chunk_size (int, optional): Anchors per row chunk; None or <= 0 for one chunk.
        en (Tensor, optional): Unit teacher features, shape (M, E), no gradient; needed by a
            transform that uses similarity and by balancing.
        transform (optional): Logit transform (see the module doc).
        balancing (optional): Anchor weighting (see the module doc).
        rows (tuple[int, int], optional): Only the anchors ``rows[0]:rows[1]`` (against every
            candidate); all anchors when None.
        diagnostics (ContrastiveDiagnostics, optional): Collects the teacher similarity of
            every chunk (with ``en``), the masked negatives of the transform and the plain
            InfoNCE (with a transform), without gradient.

    Returns:
        tuple: losses of those anchors (R,) float32, and their votes (R,) or None.
    """
    needs_s = balancing is not None or (transform is not None and transform.needs_similarity)
    if needs_s and en is None:
        raise ValueError('teacher similarity is needed: pass the teacher features')
    diagnose_s = diagnostics is not None and en is not None
    start, stop = (0, k.shape[0]) if rows is None else rows
    votes, chunks = [], []
    with autocast_off(k.device):
        distribution = batch_distribution(en, chunk_size, transform, balancing)
        threshold = None if balancing is None else balancing.batch_threshold(distribution)
        for a, b in row_chunks(stop - start, chunk_size):
            a, b = a + start, b + start
            context: tuple = ()
            if needs_s or transform is not None or diagnostics is not None:
                with torch.no_grad():
                    s = teacher_similarity(en[a:b], en) if needs_s or diagnose_s else None
                    if diagnose_s:
                        diagnostics.add_similarity(s, a)
                    if balancing is not None:
                        votes.append(balancing.votes(s, threshold))
                    if transform is not None:  # last: it may overwrite s
                        context = transform.chunk_context(s, None if en is None else en[a:b],
                                                          en, a, distribution)
                        if diagnostics is not None:
                            diagnostics.add_masked(transform.masked_counts(
                                context, None if en is None else en[a:b], en, a))
                            diagnostics.add_plain(k[a:b], q[a:b], q, tau)
            chunks.append(run_chunk(_infonce_chunk, k[a:b], q[a:b], q, tau, transform, a,
                                    *context))
    losses = torch.cat(chunks) if chunks else k.new_zeros((0, ))
    if balancing is None:
        return losses, None
    return losses, torch.cat(votes) if votes else k.new_zeros((0, ))


def infonce_anchor_losses(k: Tensor,
                          q: Tensor,
                          tau: float,
                          chunk_size: Optional[int] = 4096,
                          en: Optional[Tensor] = None,
                          transform: Any = None,
                          balancing: Any = None) -> Tuple[Tensor, Optional[Tensor]]:
    """Per-anchor InfoNCE losses of every anchor and, with balancing, per-anchor weights.

    Args:
        k (Tensor): Anchors, shape (M, D), float32.
        q (Tensor): Candidates, shape (M, D), float32; ``q_i`` is the positive of ``k_i``.
        tau (float): Temperature.
        chunk_size (int, optional): Anchors per row chunk; None or <= 0 for one chunk.
        en (Tensor, optional): Unit teacher features, shape (M, E), no gradient; needed by a
            transform that uses similarity and by balancing.
        transform (optional): Logit transform (see the module doc), e.g. the semantic
            tolerance.
        balancing (optional): Anchor weighting (see the module doc).

    Returns:
        tuple: losses (M,) float32 and weights (M,) or None.
    """
    losses, votes = infonce_anchor_terms(k, q, tau, chunk_size, en, transform, balancing)
    weights = None if votes is None else balancing.weights_from_votes(votes)
    return losses, weights
