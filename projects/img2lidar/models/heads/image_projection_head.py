"""The trainable 2D head on top of the frozen teacher."""
from mmdet3d.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn import functional as F


@MODELS.register_module()
class ImageProjectionHead(BaseModule):
    """1x1 convolution to D, bilinear upsampling to the input size, L2 norm per pixel.

    Args:
        in_channels (int): Teacher channels E. Defaults to 2048.
        out_channels (int): Feature size D. Defaults to 64.
        project (bool): Learn the 1x1 convolution. False keeps the teacher's own space
            (``out_channels`` must equal ``in_channels``): the setting for a language-aligned
            teacher (CLIP), so that the distilled student lives in the text space and can be
            used zero-shot. Defaults to True.
    """

    def __init__(self, in_channels: int = 2048, out_channels: int = 64, project: bool = True,
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        if not project and in_channels != out_channels:
            raise ValueError(f'project=False keeps the teacher space: out_channels '
                             f'({out_channels}) must equal in_channels ({in_channels})')
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size=1) if project else None

    def forward(self, feats: Tensor, size) -> Tensor:
        """Per-pixel features.

        Args:
            feats (Tensor): Teacher features, shape (N, E, h, w).
            size (tuple[int, int]): Input image size (H, W).

        Returns:
            Tensor: Unit-norm features, shape (N, D, H, W).
        """
        x = self.proj(feats) if self.proj is not None else feats
        x = F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)
        return F.normalize(x, dim=1)
