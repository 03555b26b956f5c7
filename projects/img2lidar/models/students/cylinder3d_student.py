"""Cylinder3D student: mmdet3d's SegVFE + Asymm3DSpconv with per-point projected features."""
from typing import Sequence

from mmdet3d.registry import MODELS
from mmdet3d.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn import functional as F

from .voxel_to_point import voxel_to_point


@MODELS.register_module()
class Cylinder3DStudent(BaseModule):
    """3D student built on mmdet3d's Cylinder3D parts (``SegVFE`` + ``Asymm3DSpconv``).

    The voxel encoder scatters the per-point cylindrical inputs of
    :class:`PointVoxelDataPreprocessor` ('cylindrical') into voxels; the asymmetric backbone
    returns one feature per voxel (in the encoder's sorted voxel order), which is read back per
    point, projected linearly to ``out_channels`` and L2-normalised. The sparse convolutions
    are spconv 2 on every device (see :mod:`projects.img2lidar.compat`).

    Args:
        voxel_encoder (dict): Config of the voxel encoder (``SegVFE``).
        backbone (dict): Config of the backbone (``Asymm3DSpconv``).
        out_channels (int): Output feature size D. Defaults to 64.
        normalize (bool): L2-normalise each point feature. Defaults to True.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 voxel_encoder: ConfigType,
                 backbone: ConfigType,
                 out_channels: int = 64,
                 normalize: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        self.voxel_encoder = MODELS.build(voxel_encoder)
        self.backbone = MODELS.build(backbone)
        feat_channels = 4 * backbone.get('base_channels', 16)
        self.projection = nn.Linear(feat_channels, out_channels)
        self.normalize = normalize

    def extract_feat(self, voxel_dict: dict) -> Tensor:
        """Backbone features per voxel, shape (M_total, C)."""
        voxel_feats, voxel_coors = self.voxel_encoder(voxel_dict['voxels'], voxel_dict['coors'])
        batch_size = int(voxel_dict['num_voxels'].shape[0])
        return self.backbone(voxel_feats, voxel_coors, batch_size).features

    def forward(self, voxel_dict: dict, point2voxel_maps: Sequence[Tensor]) -> Tensor:
        """Per-point features.

        Args:
            voxel_dict (dict): ``voxels`` (N_total, C_in) and ``coors`` (N_total, 4) per point,
                ``num_voxels`` (B,), from the data preprocessor.
            point2voxel_maps (Sequence[Tensor]): Per cloud, (N_i,) voxel index of each point.

        Returns:
            Tensor: Point features, shape (sum N_i, out_channels), unit norm if ``normalize``.
        """
        voxel_feats = self.extract_feat(voxel_dict)
        feats = self.projection(voxel_to_point(voxel_feats, point2voxel_maps,
                                               voxel_dict['num_voxels']))
        return F.normalize(feats, dim=1) if self.normalize else feats
