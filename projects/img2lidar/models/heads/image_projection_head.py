"""The trainable 2D head on top of the frozen teacher."""
from typing import Optional

from mmdet3d.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..pixel_features import PixelFeatures


@MODELS.register_module()
class ImageProjectionHead(BaseModule):
    """1x1 convolution to D, bilinear upsampling, L2 norm per pixel.

    The upsampling goes to the input size (default), or by a fixed ``scale_factor`` (the
    teacher's stride: 4 for the dilated ResNet-50, the patch size for a ViT), which must then
    give the input size; ``align_corners`` is ``F.interpolate``'s (SLidR's head:
    ``nn.Upsample(scale_factor=4, mode='bilinear', align_corners=True)``).

    Args:
        in_channels (int): Teacher channels E. Defaults to 2048.
        out_channels (int): Feature size D. Defaults to 64.
        project (bool): Learn the 1x1 convolution. False keeps the teacher's own space
            (``out_channels`` must equal ``in_channels``): the setting for a language-aligned
            teacher (CLIP), so that the distilled student lives in the text space and can be
            used zero-shot. Defaults to True.
        scale_factor (int, optional): Upsample by this factor; None: to the input size.
            Defaults to None.
        align_corners (bool): ``F.interpolate``'s ``align_corners``. Defaults to False.
        chunk_elements (int): Elements per block when the pixels of whole images are pooled
            from :meth:`pixel_features` (memory of the pooling). Defaults to 2**24.
    """

    def __init__(self, in_channels: int = 2048, out_channels: int = 64, project: bool = True,
                 scale_factor: Optional[int] = None, align_corners: bool = False,
                 chunk_elements: int = 1 << 24, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.scale_factor = scale_factor
        self.align_corners = bool(align_corners)
        self.chunk_elements = int(chunk_elements)
        if not project and in_channels != out_channels:
            raise ValueError(f'project=False keeps the teacher space: out_channels '
                             f'({out_channels}) must equal in_channels ({in_channels})')
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size=1) if project else None

    def low_res(self, feats: Tensor) -> Tensor:
        """The features before upsampling: the 1x1 projection (or the teacher's own).

        Args:
            feats (Tensor): Teacher features, shape (N, E, h, w).

        Returns:
            Tensor: Shape (N, D, h, w).
        """
        return self.proj(feats) if self.proj is not None else feats

    def _check_size(self, low: Tensor, size) -> None:
        if self.scale_factor is not None:
            out = tuple(s * self.scale_factor for s in low.shape[-2:])
            if out != tuple(size):
                raise ValueError(f'upsampling {low.shape[-2]}x{low.shape[-1]} features by '
                                 f'{self.scale_factor} gives {out[0]}x{out[1]}, not the input '
                                 f'size {size[0]}x{size[1]}')

    def forward(self, feats: Tensor, size) -> Tensor:
        """Per-pixel features as one full-resolution map (pictures, tests; the training step
        reads them through :meth:`pixel_features` instead).

        Args:
            feats (Tensor): Teacher features, shape (N, E, h, w).
            size (tuple[int, int]): Input image size (H, W).

        Returns:
            Tensor: Unit-norm features, shape (N, D, H, W).
        """
        return self.pixel_features(feats, size).dense()

    def pixel_features(self, feats: Tensor, size) -> PixelFeatures:
        """The same per-pixel features, computed only at the pixels asked for.

        Args:
            feats (Tensor): Teacher features, shape (N, E, h, w).
            size (tuple[int, int]): Input image size (H, W).

        Returns:
            PixelFeatures: Its :meth:`~PixelFeatures.at` equals :meth:`forward` at any pixel.
        """
        low = self.low_res(feats)
        self._check_size(low, size)
        return PixelFeatures(low, size, self.scale_factor, self.align_corners,
                             self.chunk_elements)
