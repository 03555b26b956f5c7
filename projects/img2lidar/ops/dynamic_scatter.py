"""mmcv's ``dynamic_point_to_voxel`` kernels in plain torch (CPU and any device).

mmcv 2.1.0 has no CPU kernel for them (used by ``DynamicScatter``, Cylinder3D's ``SegVFE`` and
mmdet3d's ``dynamic_scatter_3d``), and an mmcv built with CPU ops only has no CUDA one. These
functions have mmcv's exact semantics on any device: voxels sorted lexicographically, points
with a negative coordinate dropped, max/sum/mean reductions and their gradients.
:mod:`projects.img2lidar.compat` dispatches here the tensors of every device that mmcv has no
kernel for; ``tests/test_compat.py`` checks them against a Python loop, ``tests/test_cuda.py``
on CUDA against the CPU results and, where it exists, mmcv's CUDA kernel.
"""
from typing import Tuple

import torch


def dynamic_point_to_voxel_forward(
        feats: torch.Tensor, coors: torch.Tensor,
        reduce_type: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Torch version of mmcv's ``dynamic_point_to_voxel_forward`` kernel.

    Args:
        feats (Tensor): Point features, shape (N, C).
        coors (Tensor): Integer voxel coordinates, shape (N, ndim); a point with any negative
            coordinate belongs to no voxel.
        reduce_type (str): 'max', 'sum' or 'mean'.

    Returns:
        tuple: voxel features (M, C), voxel coordinates (M, ndim) sorted lexicographically
        (as ``torch.unique(dim=0)``), the point-to-voxel map (N,) int32 with -1 for dropped
        points, and the number of points per voxel (M,) int32.
    """
    if reduce_type not in ('max', 'sum', 'mean'):
        raise ValueError(f'reduce_type must be max, sum or mean, got {reduce_type!r}')
    invalid = (coors < 0).any(dim=-1, keepdim=True)
    coors_clean = coors.masked_fill(invalid, -1)
    out_coors, coors_map, counts = torch.unique(
        coors_clean, dim=0, sorted=True, return_inverse=True, return_counts=True)
    if out_coors.shape[0] > 0 and bool(out_coors[0, 0] < 0):
        out_coors, counts, coors_map = out_coors[1:], counts[1:], coors_map - 1
    num_voxels, num_feats = out_coors.shape[0], feats.shape[1]
    valid = coors_map >= 0
    idx = coors_map[valid].long()
    src = feats[valid]
    if reduce_type == 'max':
        reduced = feats.new_full((num_voxels, num_feats), float('-inf'))
        reduced = reduced.scatter_reduce(0, idx[:, None].expand_as(src), src, 'amax',
                                         include_self=True)
    else:
        reduced = feats.new_zeros((num_voxels, num_feats)).index_add(0, idx, src)
        if reduce_type == 'mean':
            reduced = reduced / counts.to(feats.dtype)[:, None]
    return reduced, out_coors.to(coors.dtype), coors_map.int(), counts.int()


def dynamic_point_to_voxel_backward(grad_feats: torch.Tensor, grad_reduced: torch.Tensor,
                                    feats: torch.Tensor, reduced: torch.Tensor,
                                    coors_map: torch.Tensor, counts: torch.Tensor,
                                    reduce_type: str) -> None:
    """Torch version of mmcv's ``dynamic_point_to_voxel_backward``; fills ``grad_feats``.

    For 'max' the gradient of a voxel channel goes to the lowest-index point that attains the
    maximum (mmcv's rule); for 'sum' and 'mean' to every point of the voxel.
    """
    valid = coors_map >= 0
    idx = coors_map.long().clamp(min=0)
    if reduce_type in ('sum', 'mean'):
        g = grad_reduced[idx]
        if reduce_type == 'mean':
            g = g / counts.to(g.dtype)[idx][:, None]
        grad_feats.copy_(torch.where(valid[:, None], g, torch.zeros_like(g)))
        return
    n = feats.shape[0]
    is_max = (feats == reduced[idx]) & valid[:, None]
    point_ids = torch.arange(n, device=feats.device)[:, None].expand_as(feats)
    big = torch.full_like(point_ids, n)
    cand = torch.where(is_max, point_ids, big)
    first = torch.full_like(reduced, n, dtype=torch.long).scatter_reduce(
        0, idx[:, None].expand_as(cand), cand, 'amin', include_self=True)
    winner = (point_ids == first[idx]) & is_max
    grad_feats.copy_(torch.where(winner, grad_reduced[idx], torch.zeros_like(feats)))
