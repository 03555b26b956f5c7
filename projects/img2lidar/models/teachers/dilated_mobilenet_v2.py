"""mmdet's MobileNetV2 with per-stage strides and dilations, for dense teacher features.

mmdet's ``MobileNetV2`` (the maintained implementation, whose layers match torchvision's) has a
fixed output stride of 32: 7 x 13 cells for a 224x416 crop, too coarse for superpixel pooling.
:class:`DilatedMobileNetV2` builds exactly that network and then, as mmseg's ``MobileNetV2``
(``strides``, ``dilations``) and DeepLab do, replaces the stride of chosen stages by a dilation
of their 3x3 depthwise convolutions: the same weights, the same parameter names (so a checkpoint
of mmdet's ``MobileNetV2`` loads strictly), a finer output.

Stages (mmdet's ``out_indices``): 0..6 are the seven inverted-residual stages (16, 24, 32, 64,
96, 160, 320 channels; strides 1, 2, 2, 2, 1, 2, 1 after the stride-2 stem), 7 is the final
1x1 convolution to 1280 channels (``conv2``, the features ImageNet's linear classifier reads).
"""
from typing import Sequence

from mmdet.models.backbones import MobileNetV2
from mmdet3d.registry import MODELS

#: the strides of the seven stages in MobileNetV2's architecture (mmdet's ``arch_settings``)
ARCH_STRIDES = tuple(int(s[3]) for s in MobileNetV2.arch_settings)


@MODELS.register_module()
class DilatedMobileNetV2(MobileNetV2):
    """mmdet's ``MobileNetV2`` with mmseg's ``strides`` and ``dilations`` per stage.

    Every block of stage ``i`` gets dilation ``dilations[i]`` in its 3x3 depthwise convolution
    (padding equal to the dilation, so sizes are kept), and the first block of stage ``i``
    strides by ``strides[i]``, which may be the architecture's stride or 1 (mmseg's rule; the
    DeepLab-v3 MobileNetV2 of mmseg uses ``strides=(1, 2, 2, 1, 1, 1, 1)``,
    ``dilations=(1, 1, 1, 2, 2, 4, 4)`` for stride 8). The blocks whose stride is removed all
    change their channel count, so none of them gains a residual shortcut: the network computes
    the pretrained function at stride 32 and a dilated version of it otherwise.

    Output stride = 2 (stem) x the product of ``strides``. For stride 16 (a 224x416 crop gives
    14 x 26 cells): ``strides=(1, 2, 2, 2, 1, 1, 1)``, ``dilations=(1, 1, 1, 1, 1, 2, 2)``.

    Args:
        strides (Sequence[int]): Stride of the first block of each of the 7 stages; each is
            the architecture's (1, 2, 2, 2, 1, 2, 1) or 1. Defaults to the architecture's.
        dilations (Sequence[int]): Dilation of the depthwise convolutions of each stage.
            Defaults to 1 everywhere.
        **kwargs: mmdet ``MobileNetV2``'s arguments (``out_indices``, ``norm_eval``,
            ``widen_factor``, ...).
    """

    def __init__(self, strides: Sequence[int] = ARCH_STRIDES,
                 dilations: Sequence[int] = (1, ) * 7, **kwargs) -> None:
        super().__init__(**kwargs)
        self.strides = tuple(int(s) for s in strides)
        self.dilations = tuple(int(d) for d in dilations)
        check_strides_and_dilations(self.strides, self.dilations)
        for name, stride, dilation in zip(self.layers, self.strides, self.dilations):
            set_stage_stride_and_dilation(getattr(self, name), stride, dilation)

    @property
    def output_stride(self) -> int:
        """Input pixels per output cell: 2 (stem) times the stage strides."""
        stride = 2
        for s in self.strides:
            stride *= s
        return stride


def check_strides_and_dilations(strides: Sequence[int], dilations: Sequence[int]) -> None:
    """Validate per-stage ``strides`` and ``dilations``.

    Raises:
        ValueError: Not 7 of each, a stride that is neither the architecture's nor 1, or a
            dilation below 1.
    """
    if len(strides) != len(ARCH_STRIDES) or len(dilations) != len(ARCH_STRIDES):
        raise ValueError(f'DilatedMobileNetV2 needs {len(ARCH_STRIDES)} strides and dilations '
                         f'(one per stage), got {tuple(strides)} and {tuple(dilations)}')
    for i, (stride, arch) in enumerate(zip(strides, ARCH_STRIDES)):
        if stride not in (1, arch):
            raise ValueError(f'DilatedMobileNetV2: stage {i} strides by {arch} in MobileNetV2; '
                             f'it can only keep that stride or use 1, got {stride}')
    if min(dilations) < 1:
        raise ValueError(f'DilatedMobileNetV2: dilations must be >= 1, got {tuple(dilations)}')


def set_stage_stride_and_dilation(stage, stride: int, dilation: int) -> None:
    """Set the first block's depthwise stride and every block's depthwise dilation in place.

    Args:
        stage (nn.Sequential): One stage of mmdet's MobileNetV2 (``InvertedResidual`` blocks).
        stride (int): Stride of the first block (1 or the one it was built with).
        dilation (int): Dilation (and padding) of every block's 3x3 depthwise convolution.
    """
    for i, block in enumerate(stage):
        conv = block.depthwise_conv.conv
        if i == 0:  # built with stride 2, so without a shortcut; it keeps none at stride 1
            conv.stride = (stride, stride)
        pad = dilation * (conv.kernel_size[0] - 1) // 2
        conv.dilation = (dilation, dilation)
        conv.padding = (pad, pad)
