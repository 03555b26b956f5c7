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
    """

    def __init__(self, in_channels: int = 2048, out_channels: int = 64, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, feats: Tensor, size) -> Tensor:
        """Per-pixel features.

        Args:
            feats (Tensor): Teacher features, shape (N, E, h, w).
            size (tuple[int, int]): Input image size (H, W).

        Returns:
            Tensor: Unit-norm features, shape (N, D, H, W).
        """
        x = F.interpolate(self.proj(feats), size=tuple(size), mode='bilinear',
                          align_corners=False)
        return F.normalize(x, dim=1)
