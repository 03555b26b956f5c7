"""MinkUNet student: mmdet3d's MinkUNetBackbone with per-point projected features."""
import copy
from typing import Sequence

from mmdet3d.registry import MODELS
from mmdet3d.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn import functional as F

from .voxel_to_point import voxel_to_point


@MODELS.register_module()
class MinkUNetStudent(BaseModule):
    """3D student built on mmdet3d's ``MinkUNetBackbone`` (spconv backend).

    Voxel features from the backbone are read back per point through the
    ``point2voxel_map`` of :class:`PointVoxelDataPreprocessor` ('minkunet' voxels), projected
    linearly to ``out_channels`` and L2-normalised.

    Args:
        backbone (dict): Config of the backbone, e.g. ``dict(type='MinkUNetBackbone',
            sparseconv_backend='spconv', encoder_blocks=[2, 3, 4, 6], ...)``.
        out_channels (int): Output feature size D. Defaults to 64.
        normalize (bool): L2-normalise each point feature. Defaults to True.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 out_channels: int = 64,
                 normalize: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        # MinkUNetBackbone inserts into its list arguments: build from a copy
        self.backbone = MODELS.build(copy.deepcopy(backbone))
        feat_channels = backbone.get('decoder_channels', [256, 128, 96, 96])[-1]
        self.projection = nn.Linear(feat_channels, out_channels)
        self.normalize = normalize

    def extract_feat(self, voxel_dict: dict) -> Tensor:
        """Backbone features per voxel, shape (M_total, C)."""
        return self.backbone(voxel_dict['voxels'], voxel_dict['coors'])

    def forward(self, voxel_dict: dict, point2voxel_maps: Sequence[Tensor]) -> Tensor:
        """Per-point features.

        Args:
            voxel_dict (dict): ``voxels`` (M_total, C_in), ``coors`` (M_total, 4) batch first,
                ``num_voxels`` (B,), from the data preprocessor.
            point2voxel_maps (Sequence[Tensor]): Per cloud, (N_i,) voxel index of each point.

        Returns:
            Tensor: Point features, shape (sum N_i, out_channels), unit norm if ``normalize``.
        """
        voxel_feats = self.extract_feat(voxel_dict)
        feats = self.projection(voxel_to_point(voxel_feats, point2voxel_maps,
                                               voxel_dict['num_voxels']))
        return F.normalize(feats, dim=1) if self.normalize else feats
