"""MinkUNet student: mmdet3d's MinkUNetBackbone with per-point projected features."""
import copy

from mmdet3d.registry import MODELS
from mmdet3d.utils import ConfigType, OptMultiConfig
from torch import Tensor

from .base_point_student import BasePointStudent


@MODELS.register_module()
class MinkUNetStudent(BasePointStudent):
    """3D student built on mmdet3d's ``MinkUNetBackbone`` (spconv backend).

    Takes the 'minkunet' (cartesian) voxels of :class:`PointVoxelDataPreprocessor`; see
    :class:`BasePointStudent` for the per-point output.

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
        super().__init__(backbone.get('decoder_channels', [256, 128, 96, 96])[-1],
                         out_channels, normalize, init_cfg)
        # MinkUNetBackbone inserts into its list arguments: build from a copy
        self.backbone = MODELS.build(copy.deepcopy(backbone))

    def extract_feat(self, voxel_dict: dict) -> Tensor:
        """Backbone features per voxel, shape (M_total, C)."""
        return self.backbone(voxel_dict['voxels'], voxel_dict['coors'])
