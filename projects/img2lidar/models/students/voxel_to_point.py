"""Reading per-voxel features back per point."""
from typing import Sequence

import torch
from torch import Tensor


def voxel_to_point(voxel_feats: Tensor, point2voxel_maps: Sequence[Tensor],
                   num_voxels: Tensor) -> Tensor:
    """Give every point of the batch the feature of its voxel.

    Args:
        voxel_feats (Tensor): Features of the voxels of all clouds, concatenated cloud by
            cloud, shape (M_total, C).
        point2voxel_maps (Sequence[Tensor]): Per cloud, the index of each point's voxel
            within that cloud, shapes (N_i,).
        num_voxels (Tensor): Number of voxels of each cloud, shape (B,).

    Returns:
        Tensor: Point features, shape (sum N_i, C), clouds concatenated in batch order.
    """
    if int(num_voxels.sum()) != voxel_feats.shape[0]:
        raise ValueError(f'the network returned {voxel_feats.shape[0]} voxel features for '
                         f'{int(num_voxels.sum())} voxels')
    offsets = torch.cumsum(num_voxels, 0) - num_voxels
    index = torch.cat([m.long() + o for m, o in zip(point2voxel_maps, offsets)])
    return voxel_feats.index_select(0, index)
