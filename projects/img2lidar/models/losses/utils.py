"""Helpers shared by the loss heads: row chunks, activation checkpointing, float32 compute,
an in-place log-sum-exp, the teacher similarity, a torch-exact row quantile and packed masks.

Every (M, M) matrix of a batch (M ~ 14,000 superpixels: about 0.8 GB in float32) is handled
in row chunks of ``chunk_size`` rows; :func:`run_chunk` checkpoints a chunk so that backward
recomputes one chunk's (chunk_size, M) intermediates at a time.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


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
    # the rank in x's precision, as torch.quantile computes it, on the host (no device sync)
    host = np.float64 if x.dtype == torch.float64 else np.float32
    rank = host(q) * host(n - 1)
    below = int(np.floor(rank))
    above = int(np.ceil(rank))
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


def pack_bool(mask: Tensor) -> Tensor:
    """Pack a boolean matrix into bits, 8 columns per byte (8x less memory than ``bool``).

    Args:
        mask (Tensor): Shape (C, N), bool.

    Returns:
        Tensor: Shape (C, ceil(N / 8)), uint8; :func:`unpack_bool` inverts it.
    """
    c, n = mask.shape
    pad = (-n) % 8
    if pad:
        mask = torch.cat([mask, mask.new_zeros((c, pad))], dim=1)
    # the bit weights 1, 2, ..., 128 made on the device (no copy from the host)
    shifts = torch.arange(8, dtype=torch.uint8, device=mask.device)
    return (mask.view(c, -1, 8).to(torch.uint8) << shifts).sum(dim=-1, dtype=torch.uint8)


def unpack_bool(packed: Tensor, n: int) -> Tensor:
    """The boolean matrix that :func:`pack_bool` packed.

    Args:
        packed (Tensor): Shape (C, ceil(n / 8)), uint8.
        n (int): Columns of the original matrix.

    Returns:
        Tensor: Shape (C, n), bool.
    """
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = (packed[..., None] >> shifts) & 1
    return bits.view(packed.shape[0], -1)[:, :n].bool()
