"""Pooling point, pixel and teacher features over the superpixels that hold paired points."""
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F


@dataclass
class PooledFeatures:
    """Per-superpixel features of a batch (M superpixels with at least one paired point).

    Attributes:
        k (Tensor): Mean normalised student feature of the pairs in s, shape (M, D).
        q (Tensor): Mean normalised 2D-head feature of the pixels of s, shape (M, D).
        e (Tensor): Mean raw teacher feature over s at the teacher's resolution (zero when s
            vanishes at that resolution), shape (M, E).
        ids (Tensor): Batch-unique superpixel id of each row, shape (M,).
        num_pairs (Tensor): Pairs pooled into each row, shape (M,).
    """
    k: Tensor
    q: Tensor
    e: Tensor
    ids: Tensor
    num_pairs: Tensor


def _scatter_mean(values: Tensor, index: Tensor, size: int) -> Tensor:
    """Mean of the rows of ``values`` (N, C) per ``index`` (N,) into ``size`` rows; empty rows
    are 0."""
    sums = values.new_zeros((size, values.shape[1])).index_add(0, index, values)
    counts = torch.bincount(index, minlength=size).clamp(min=1).to(values.dtype)
    return sums / counts[:, None]


def superpixel_pooling(point_feats: Tensor, pixel_feats: Tensor, teacher_feats: Tensor,
                       superpixels: Tensor, pair_points: Tensor, pair_superpixels: Tensor
                       ) -> PooledFeatures:
    """Pool k_s, q_s and e_s (METHODS.md section 3) for a whole batch at once.

    Args:
        point_feats (Tensor): Student features of all points of the batch, (N, D).
        pixel_feats (Tensor): 2D-head features of all images of the batch, (I, D, H, W).
        teacher_feats (Tensor): Raw teacher features, (I, E, h, w).
        superpixels (Tensor): Superpixel maps with batch-unique ids >= 0, (I, H, W).
        pair_points (Tensor): Batch index of the point of each pair, (P,).
        pair_superpixels (Tensor): Batch-unique superpixel id under each pair's pixel, (P,).

    Returns:
        PooledFeatures: Rows for the M superpixels that contain at least one pair, in
        increasing id order. Superpixels without pairs are dropped.
    """
    ids, pair_row = torch.unique(pair_superpixels, return_inverse=True)
    m = ids.shape[0]
    k = _scatter_mean(point_feats.index_select(0, pair_points), pair_row, m)
    # id -> row (or -1) lookup, for every pixel of the maps
    size = max(int(superpixels.max()), int(ids.max()) if m else 0) + 1
    table = torch.full((size, ), -1, dtype=torch.long,
                       device=superpixels.device)
    table[ids] = torch.arange(m, device=ids.device)
    rows = table[superpixels.reshape(-1)]
    valid = rows >= 0
    d = pixel_feats.shape[1]
    q = _scatter_mean(pixel_feats.permute(0, 2, 3, 1).reshape(-1, d)[valid], rows[valid], m)
    small = F.interpolate(superpixels[:, None].float(), size=teacher_feats.shape[-2:],
                          mode='nearest')[:, 0].long()
    rows_t = table[small.reshape(-1)]
    valid_t = rows_t >= 0
    e_dim = teacher_feats.shape[1]
    e = _scatter_mean(teacher_feats.permute(0, 2, 3, 1).reshape(-1, e_dim)[valid_t],
                      rows_t[valid_t], m)
    return PooledFeatures(k=k, q=q, e=e, ids=ids,
                          num_pairs=torch.bincount(pair_row, minlength=m))
