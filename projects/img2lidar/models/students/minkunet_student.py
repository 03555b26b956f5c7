"""MinkUNet student: mmdet3d's MinkUNetBackbone with per-point projected features."""
import copy
from typing import Optional

from mmdet3d.registry import MODELS
from mmdet3d.utils import ConfigType, OptMultiConfig
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

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
        bn_momentum (float, optional): Momentum of the BatchNorms outside the residual blocks
            (the stem, the strided and transposed convolutions, the residual shortcuts), as
            SLidR's ``bn_momentum`` sets them (0.05); the blocks' own BatchNorms keep torch's
            0.1, as in SLidR's Res16UNet. None keeps mmdet3d's 0.1 everywhere.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 out_channels: int = 64,
                 normalize: bool = True,
                 bn_momentum: Optional[float] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(backbone.get('decoder_channels', [256, 128, 96, 96])[-1],
                         out_channels, normalize, init_cfg)
        # MinkUNetBackbone inserts into its list arguments: build from a copy
        self.backbone = MODELS.build(copy.deepcopy(backbone))
        if bn_momentum is not None:
            set_momentum_outside_blocks(self.backbone, bn_momentum)

    def extract_feat(self, voxel_dict: dict) -> Tensor:
        """Backbone features per voxel, shape (M_total, C)."""
        return self.backbone(voxel_dict['voxels'], voxel_dict['coors'])


def set_momentum_outside_blocks(backbone: nn.Module, momentum: float) -> None:
    """Set the momentum of every BatchNorm of ``backbone`` that is not in a residual block's
    main branch (a block is a module with ``conv1`` and ``downsample``; its shortcut's
    BatchNorm counts as outside)."""
    in_blocks = set()
    for module in backbone.modules():
        if hasattr(module, 'conv1') and hasattr(module, 'downsample'):
            shortcut = set(module.downsample.modules()) if module.downsample is not None else set()
            in_blocks |= {m for m in module.modules()
                          if isinstance(m, _BatchNorm) and m not in shortcut}
    for module in backbone.modules():
        if isinstance(module, _BatchNorm) and module not in in_blocks:
            module.momentum = momentum
