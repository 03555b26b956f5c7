"""What every 3D student shares: voxel features read back per point, projected, normalised."""
from typing import Optional, Sequence

from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn import functional as F

from .voxel_to_point import voxel_to_point


class BasePointStudent(BaseModule):
    """Base of the students: subclasses build their networks and implement
    :meth:`extract_feat` (per-voxel features); this class turns them into per-point features:
    read back through ``point2voxel_map``, projected linearly to ``out_channels`` and
    L2-normalised.

    Args:
        feat_channels (int): Channels of the per-voxel features.
        out_channels (int): Output feature size D. Defaults to 64.
        normalize (bool): L2-normalise each point feature. Defaults to True.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self, feat_channels: int, out_channels: int = 64, normalize: bool = True,
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.projection = nn.Linear(feat_channels, out_channels)
        self.normalize = normalize

    def extract_feat(self, voxel_dict: dict) -> Tensor:
        """Per-voxel features of the batch, (M_total, feat_channels)."""
        raise NotImplementedError

    def forward(self, voxel_dict: dict,
                point2voxel_maps: Optional[Sequence[Tensor]] = None) -> Tensor:
        """Per-point features.

        Args:
            voxel_dict (dict): ``voxels``, ``coors``, ``num_voxels`` (B,) and ``point2voxel``
                (sum N_i,), the batch index of every point's voxel, from
                :class:`PointVoxelDataPreprocessor`.
            point2voxel_maps (Sequence[Tensor], optional): Per cloud, (N_i,) voxel index of
                each point within its cloud; only read when ``voxel_dict`` has no
                ``point2voxel``.

        Returns:
            Tensor: Point features, shape (sum N_i, out_channels), unit norm if ``normalize``.
        """
        voxel_feats = self.extract_feat(voxel_dict)
        if 'point2voxel' in voxel_dict:
            point_feats = voxel_feats.index_select(0, voxel_dict['point2voxel'])
        else:
            point_feats = voxel_to_point(voxel_feats, point2voxel_maps, voxel_dict['num_voxels'])
        feats = self.projection(point_feats)
        return F.normalize(feats, dim=1) if self.normalize else feats
