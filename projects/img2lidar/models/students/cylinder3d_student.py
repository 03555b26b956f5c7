"""Cylinder3D student: mmdet3d's SegVFE + Asymm3DSpconv with per-point projected features."""
from mmdet3d.registry import MODELS
from mmdet3d.utils import ConfigType, OptMultiConfig
from torch import Tensor

from .base_point_student import BasePointStudent


@MODELS.register_module()
class Cylinder3DStudent(BasePointStudent):
    """3D student built on mmdet3d's Cylinder3D parts (``SegVFE`` + ``Asymm3DSpconv``).

    The voxel encoder scatters the per-point cylindrical inputs of
    :class:`PointVoxelDataPreprocessor` ('cylindrical') into voxels; the asymmetric backbone
    returns one feature per voxel, in the encoder's sorted voxel order, which is the order of
    the point-to-voxel maps. The sparse convolutions are spconv 2 on every device (see
    :mod:`projects.img2lidar.compat`); see :class:`BasePointStudent` for the output.

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
        super().__init__(4 * backbone.get('base_channels', 16), out_channels, normalize,
                         init_cfg)
        self.voxel_encoder = MODELS.build(voxel_encoder)
        self.backbone = MODELS.build(backbone)

    def extract_feat(self, voxel_dict: dict) -> Tensor:
        """Backbone features per voxel, shape (M_total, C)."""
        voxel_feats, voxel_coors = self.voxel_encoder(voxel_dict['voxels'], voxel_dict['coors'])
        batch_size = int(voxel_dict['num_voxels'].shape[0])
        return self.backbone(voxel_feats, voxel_coors, batch_size).features
