"""Pooling point, pixel and teacher features over the superpixels that hold paired points."""
from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from .distillation_features import PooledFeatures
from .point_pixel_pairs import BatchPairs


def _scatter_mean(values: Tensor, index: Tensor, size: int) -> Tensor:
    """Mean of the rows of ``values`` (N, C) per ``index`` (N,) into ``size`` rows; empty rows
    are 0."""
    sums = values.new_zeros((size, values.shape[1])).index_add(0, index, values)
    counts = torch.bincount(index, minlength=size).clamp(min=1).to(values.dtype)
    return sums / counts[:, None]


def _lookup(table: Tensor, labels: Tensor) -> Tensor:
    """``table[labels]`` where ``labels >= 0``, -1 for ignored pixels (label -1)."""
    return torch.where(labels >= 0, table[labels.clamp(min=0)], labels.new_full((), -1))


def nearest_resize_labels(labels: Tensor, size) -> Tensor:
    """Resize integer label maps by nearest neighbour without passing labels through a float.

    The source row and column of every output pixel are those of
    ``F.interpolate(mode='nearest')`` (obtained by interpolating the float row and column
    indices, which are exact below 2**24), and the labels are gathered as integers, so ids of
    any size survive unchanged.

    Args:
        labels (Tensor): Integer maps, shape (I, H, W).
        size (tuple[int, int]): Output (h, w).

    Returns:
        Tensor: Shape (I, h, w), same dtype as ``labels``.
    """
    h_in, w_in = labels.shape[-2:]
    h, w = int(size[0]), int(size[1])
    dev = labels.device
    rows = F.interpolate(torch.arange(h_in, dtype=torch.float32, device=dev)[None, None, :, None],
                         size=(h, 1), mode='nearest').reshape(h).long()
    cols = F.interpolate(torch.arange(w_in, dtype=torch.float32, device=dev)[None, None, None, :],
                         size=(1, w), mode='nearest').reshape(w).long()
    return labels.index_select(-2, rows).index_select(-1, cols)


def superpixel_pooling(point_feats: Tensor, pixel_feats: Tensor,
                       teacher_feats: Optional[Tensor], pairs: BatchPairs) -> PooledFeatures:
    """Pool k_s, q_s and (optionally) e_s (docs/methods.md section 3) for a whole batch at once.

    Args:
        point_feats (Tensor): Student features of all points of the batch, (N, D).
        pixel_feats (Tensor): 2D-head features of all images of the batch, (I, D, H, W).
        teacher_feats (Tensor, optional): Raw teacher features, (I, E, h, w); None skips
            ``e`` (no loss reads it).
        pairs (BatchPairs): The batch's pairs and maps (batch-unique ids, -1 ignored pixels;
            pairs on ignored pixels are not pooled).

    Returns:
        PooledFeatures: Rows for the M superpixels that contain at least one pair, in
        increasing id order. Superpixels without pairs are dropped.
    """
    if pairs.superpixels is None:
        raise ValueError('superpixel pooling needs superpixel maps: load them with '
                         'LoadMultiViewImagesAndSuperpixels(with_superpixels=True)')
    superpixels = pairs.superpixels
    pair_points, pair_superpixels = pairs.point, pairs.superpixel
    paired = pair_superpixels >= 0
    if not bool(paired.all()):
        pair_points, pair_superpixels = pair_points[paired], pair_superpixels[paired]
    ids, pair_row = torch.unique(pair_superpixels, return_inverse=True)
    m = ids.shape[0]
    k = _scatter_mean(point_feats.index_select(0, pair_points), pair_row, m)
    # id -> row (or -1) lookup, for every pixel of the maps
    table = torch.full((max(pairs.num_ids, 1), ), -1, dtype=torch.long,
                       device=superpixels.device)
    table[ids] = torch.arange(m, device=ids.device)
    rows = _lookup(table, superpixels.reshape(-1))
    valid = rows >= 0
    d = pixel_feats.shape[1]
    q = _scatter_mean(pixel_feats.permute(0, 2, 3, 1).reshape(-1, d)[valid], rows[valid], m)
    e = None
    if teacher_feats is not None:
        small = nearest_resize_labels(superpixels, teacher_feats.shape[-2:])
        rows_t = _lookup(table, small.reshape(-1))
        valid_t = rows_t >= 0
        e_dim = teacher_feats.shape[1]
        e = _scatter_mean(teacher_feats.permute(0, 2, 3, 1).reshape(-1, e_dim)[valid_t],
                          rows_t[valid_t], m)
    return PooledFeatures(k=k, q=q, e=e, ids=ids,
                          num_pairs=torch.bincount(pair_row, minlength=m),
                          sample_offsets=torch.searchsorted(ids, pairs.id_offsets),
                          num_ids=pairs.num_ids)
