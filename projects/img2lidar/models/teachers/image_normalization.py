"""Each teacher normalises its input with the statistics it was trained with.

The data preprocessor only stacks the images, as RGB floats in [0, 255]; the teacher, which
knows what it was trained on, subtracts its own mean and divides by its own standard deviation.
Configs therefore never restate a teacher's statistics.
"""
from typing import Sequence

import torch
from torch import Tensor, nn

#: ImageNet statistics (times 255, RGB): ResNets, DINO, DINOv2, DINOv3
IMAGENET_MEAN_STD = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
#: OpenAI CLIP statistics (times 255, RGB)
CLIP_MEAN_STD = ((122.7709383, 116.7460125, 104.09373615), (68.5005327, 66.6321579, 70.32316305))


class ImageNormalization(nn.Module):
    """``(imgs - mean) / std`` per channel, with non-persistent buffers (checkpoints keep no
    copy of them).

    Args:
        mean (Sequence[float]): Per-channel mean of RGB values in [0, 255].
        std (Sequence[float]): Per-channel standard deviation.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, imgs: Tensor) -> Tensor:
        """Normalise (N, 3, H, W) RGB images in [0, 255]."""
        return (imgs - self.mean.to(imgs.dtype)) / self.std.to(imgs.dtype)

    def extra_repr(self) -> str:
        return f'mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}'
