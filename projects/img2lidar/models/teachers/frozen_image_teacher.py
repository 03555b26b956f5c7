"""The frozen 2D teacher: any mm image backbone, always in eval mode, never trained."""
import os.path as osp
from typing import Optional, Sequence

import torch
from mmdet3d.registry import MODELS
from mmdet3d.utils import ConfigType
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.runner import load_checkpoint
from torch import Tensor, nn

from ...file_integrity import check_checkpoint_file
from .image_normalization import IMAGENET_MEAN_STD, ImageNormalization


@MODELS.register_module()
class FrozenImageTeacher(BaseModule):
    """Wrap an image backbone built from config as a frozen feature extractor.

    The backbone's weights come from a local checkpoint (see tools/convert_teacher_checkpoint.py
    for self-supervised ResNet-50 releases) when :meth:`init_weights` runs, i.e. when the
    Runner starts. Its parameters never require gradients and it stays in eval mode (BatchNorm
    statistics frozen) even when the surrounding model is put in train mode.

    Args:
        backbone (dict): Backbone config, e.g. mmdet's ResNet-50 with ``strides=(1, 1, 1, 1)``,
            ``dilations=(1, 2, 4, 8)`` and ``out_indices=(3, )`` (output stride 4, 2048 ch), or
            :class:`DilatedMobileNetV2` (mmdet's MobileNetV2) with ``strides=(1, 2, 2, 2, 1, 1,
            1)``, ``dilations=(1, 1, 1, 1, 1, 2, 2)`` and ``out_indices=(7, )`` (output stride
            16, 1280 ch).
        checkpoint (str, optional): Local checkpoint of the backbone (keys of the backbone,
            optionally under ``state_dict``). None keeps a random initialisation and logs a
            warning: only for demos and tests.
        out_index (int): Which backbone output to return when it returns several.
            Defaults to -1.
        mean (Sequence[float]): Per-channel mean of the RGB [0, 255] images the backbone was
            trained on. Defaults to ImageNet's.
        std (Sequence[float]): Their standard deviation. Defaults to ImageNet's.
        dilation_style (str): How a ResNet's dilated stages are dilated. ``'mmdet'`` (default):
            every block of a stage gets the stage's dilation, as mmdet's ``ResNet`` builds it.
            ``'torchvision'``: the first block of each dilated stage keeps the previous stage's
            dilation (torchvision's ``replace_stride_with_dilation``, what SLidR's teacher
            uses: conv2 dilations 1 / 2 / 4 in the first blocks of stages 2-4). Same weights,
            different features.
    """

    def __init__(self, backbone: ConfigType, checkpoint: Optional[str] = None,
                 out_index: int = -1, mean: Sequence[float] = IMAGENET_MEAN_STD[0],
                 std: Sequence[float] = IMAGENET_MEAN_STD[1],
                 dilation_style: str = 'mmdet') -> None:
        super().__init__(init_cfg=None)
        if dilation_style not in ('mmdet', 'torchvision'):
            raise ValueError(f"dilation_style must be 'mmdet' or 'torchvision', got "
                             f'{dilation_style!r}')
        self.normalize = ImageNormalization(mean, std)
        self.backbone = MODELS.build(backbone)
        if dilation_style == 'torchvision':
            first_blocks_keep_previous_dilation(self.backbone)
        self.checkpoint = checkpoint
        self.out_index = out_index
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()

    def init_weights(self) -> None:
        """Load the teacher's weights from its local checkpoint (strictly), after checking the
        local file against its CRC-32s: a damaged or truncated checkpoint is a
        :class:`~projects.img2lidar.file_integrity.DamagedFileError` naming it."""
        logger = MMLogger.get_current_instance()
        if self.checkpoint is None:
            logger.warning('FrozenImageTeacher: no checkpoint given, the teacher keeps its '
                           'RANDOM initialisation (fine for demos and tests only)')
            return
        if osp.isfile(self.checkpoint):  # a local file (mmengine also reads URLs, unchecked)
            check_checkpoint_file(self.checkpoint)  # torch.load checks no CRC
        load_checkpoint(self.backbone, self.checkpoint, map_location='cpu', strict=True,
                        logger=logger)
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> 'FrozenImageTeacher':
        """Keep the backbone in eval mode whatever ``mode`` is."""
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def forward(self, imgs: Tensor) -> Tensor:
        """Teacher features.

        Args:
            imgs (Tensor): RGB images in [0, 255], shape (N, 3, H, W); normalised here.

        Returns:
            Tensor: Feature map, shape (N, E, H / s, W / s) (E = 2048, s = 4 for the dilated
            ResNet-50; E = 1280, s = 16 for the dilated MobileNetV2).
        """
        out = self.backbone(self.normalize(imgs))
        if isinstance(out, (list, tuple)):
            out = out[self.out_index]
        return out


def first_blocks_keep_previous_dilation(resnet: nn.Module) -> None:
    """Give the first block of each dilated stage of an mmdet ``ResNet`` the previous stage's
    dilation (its 3x3 ``conv2``'s dilation and padding), as torchvision's
    ``replace_stride_with_dilation`` does.

    Raises:
        ValueError: ``resnet`` is not an mmdet ResNet (no ``res_layers`` and ``dilations``).
    """
    if not hasattr(resnet, 'res_layers') or not hasattr(resnet, 'dilations'):
        raise ValueError(f"dilation_style='torchvision' needs an mmdet ResNet, got "
                         f'{type(resnet).__name__}')
    previous = 1
    for name, dilation in zip(resnet.res_layers, resnet.dilations):
        conv2 = getattr(resnet, name)[0].conv2
        if dilation != previous:
            conv2.dilation = (previous, previous)
            conv2.padding = (previous, previous)
        previous = dilation
