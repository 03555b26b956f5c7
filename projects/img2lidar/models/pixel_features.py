"""The 2D head's per-pixel features, computed only at the pixels that are asked for.

The head's output is a bilinear upsampling of a low-resolution map (the teacher's grid) to the
image size, L2-normalised per pixel. Materialising it costs (I, D, H, W) floats, several times
over once autograd and pooling copies are counted: for 48 images of 224x448 and a 1024-channel
teacher (ScaLR) that is about 20 GB per copy. :class:`PixelFeatures` keeps only the
low-resolution map, and gives

- the value of any P pixels (:meth:`PixelFeatures.at`: the pair level), from the four taps of
  each pixel; the taps are read from ``F.interpolate`` itself (interpolating identity matrices
  with the head's own call), so the values follow whatever convention the head uses (``size``
  or ``scale_factor``, ``align_corners``); only the order of each pixel's four products can
  differ from the kernel's, a relative difference of a few float32 roundings;
- the sum of every pixel's feature per superpixel (:meth:`PixelFeatures.pool`: the
  superpixel level), a few whole images at a time with the head's own ``F.interpolate`` call
  (bit for bit the head's map), or pixel blocks through :meth:`at` when one image's map alone
  is over the memory bound, with activation checkpointing, so that memory is one block's.
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from .host_to_device import host_to_device
from .losses.utils import autocast_off


@lru_cache(maxsize=64)
def _taps_cpu(in_size: int, out_size: int, scale_factor: Optional[float],
              align_corners: bool) -> Tuple[Tensor, Tensor]:
    """Source indices (out, 2) int64 and weights (out, 2) float32 of 1-D bilinear resizing
    from ``in_size`` to ``out_size`` as ``F.interpolate`` computes them."""
    probe = torch.eye(in_size).reshape(1, in_size, in_size, 1)
    if scale_factor is None:
        out = F.interpolate(probe, size=(out_size, 1), mode='bilinear',
                            align_corners=align_corners)
    else:
        out = F.interpolate(probe, scale_factor=scale_factor, mode='bilinear',
                            align_corners=align_corners)
    weights = out[0, :, :, 0].T  # (out, in): row Y holds the weight of each source index
    if weights.shape[0] != out_size:
        raise ValueError(f'resizing {in_size} by {scale_factor} gives {weights.shape[0]}, not '
                         f'{out_size}')
    first = (weights > 0).int().argmax(1)
    second = (first + 1).clamp(max=in_size - 1)
    w0 = weights.gather(1, first[:, None])[:, 0]
    w1 = torch.where(second > first, weights.gather(1, second[:, None])[:, 0],
                     torch.zeros_like(w0))
    return torch.stack((first, second), 1).long(), torch.stack((w0, w1), 1)


def bilinear_taps(in_size: int, out_size: int, scale_factor: Optional[float],
                  align_corners: bool, device) -> Tuple[Tensor, Tensor]:
    """The two source indices and weights of every output index of 1-D bilinear resizing.

    Args:
        in_size (int): Input length.
        out_size (int): Output length.
        scale_factor (float, optional): The ``scale_factor`` the head passes to
            ``F.interpolate``; None when it passes ``size``.
        align_corners (bool): ``F.interpolate``'s ``align_corners``.
        device: Where the taps go.

    Returns:
        tuple[Tensor]: indices (out_size, 2) int64 and weights (out_size, 2) float32; at a
        border both taps of ``F.interpolate`` land on one index, whose weight then holds both.
    """
    return _taps_on(int(in_size), int(out_size), scale_factor, bool(align_corners),
                    torch.device(device))


@lru_cache(maxsize=64)
def _taps_on(in_size: int, out_size: int, scale_factor: Optional[float], align_corners: bool,
             device: torch.device) -> Tuple[Tensor, Tensor]:
    """:func:`_taps_cpu` on ``device``, kept per device: copied once (without blocking the
    host), not in every block of the pooling loop."""
    index, weight = _taps_cpu(in_size, out_size, scale_factor, align_corners)
    return host_to_device(index, device), host_to_device(weight, device)


@dataclass
class PixelFeatures:
    """Unit-norm per-pixel features of a batch of images, computed on demand.

    Attributes:
        low (Tensor): The low-resolution map before upsampling, (I, D, h, w) float32.
        size (tuple[int, int]): The image size (H, W) the map is upsampled to.
        scale_factor (float, optional): The head's ``scale_factor`` (None: it resizes to
            ``size``).
        align_corners (bool): The head's ``align_corners``.
        chunk_elements (int): Bound on the elements of one block when pooling all pixels.
    """
    low: Tensor
    size: Tuple[int, int]
    scale_factor: Optional[float] = None
    align_corners: bool = False
    chunk_elements: int = 1 << 24

    def __post_init__(self) -> None:
        self.low = self.low.float()
        self.size = (int(self.size[0]), int(self.size[1]))
        self._flat = None

    @property
    def num_images(self) -> int:
        return self.low.shape[0]

    @property
    def channels(self) -> int:
        return self.low.shape[1]

    def upsample(self, low: Tensor) -> Tensor:
        """The head's full map of some images, (c, D, H, W): ``F.interpolate`` then
        ``F.normalize``, exactly the head's own call, in float32 whatever the autocast."""
        with autocast_off(low.device):
            if self.scale_factor is None:
                x = F.interpolate(low.float(), size=self.size, mode='bilinear',
                                  align_corners=self.align_corners)
            else:
                x = F.interpolate(low.float(), scale_factor=self.scale_factor, mode='bilinear',
                                  align_corners=self.align_corners)
            return F.normalize(x, dim=1)

    def dense(self) -> Tensor:
        """The full map of all images, (I, D, H, W) (for pictures and tests)."""
        return self.upsample(self.low)

    def channels_last(self) -> Tensor:
        """The low-resolution map with channels last, (I * h * w, D), so that each bilinear
        tap is one contiguous row. Made once per object (the pair level and the pixel blocks
        of :meth:`pool` share it), with the map's graph when the map needs gradients."""
        if self._flat is None or (torch.is_grad_enabled() and self.low.requires_grad and
                                  not self._flat.requires_grad):
            self._flat = self.low.permute(0, 2, 3, 1).reshape(-1, self.channels)
        return self._flat

    def at(self, image: Tensor, y: Tensor, x: Tensor) -> Tensor:
        """The unit-norm feature of pixel (x, y) of image ``image``, for P pixels.

        Args:
            image (Tensor): Image index of each pixel, (P,) int.
            y (Tensor): Row, (P,) int.
            x (Tensor): Column, (P,) int.

        Returns:
            Tensor: Shape (P, D) float32, equal to the head's full map at those pixels.
        """
        with autocast_off(self.low.device):
            return self._sample(self.channels_last(), image, y, x)

    def _sample(self, flat: Tensor, image: Tensor, y: Tensor, x: Tensor) -> Tensor:
        """:meth:`at` from the channels-last map ``flat`` (:meth:`channels_last`)."""
        h, w = self.low.shape[-2:]
        row_index, row_weight = bilinear_taps(h, self.size[0], self.scale_factor,
                                              self.align_corners, self.low.device)
        col_index, col_weight = bilinear_taps(w, self.size[1], self.scale_factor,
                                              self.align_corners, self.low.device)
        image, y, x = image.long(), y.long(), x.long()
        rows, a = row_index[y], row_weight[y]
        cols, b = col_index[x], col_weight[x]
        base = image * (h * w)
        out = None
        for r in (0, 1):
            inner = None
            for c in (0, 1):
                term = b[:, c, None] * flat.index_select(0, base + rows[:, r] * w + cols[:, c])
                inner = term if inner is None else inner + term
            term = a[:, r, None] * inner
            out = term if out is None else out + term
        return F.normalize(out, dim=1)

    def _pool_images(self, low: Tensor, rows: Tensor, start: int, end: int,
                     num_rows: int) -> Tensor:
        """Sums over the rows of every pixel of images ``start:end``."""
        feats = self.upsample(low[start:end])
        d = feats.shape[1]
        pixels = self.size[0] * self.size[1]
        return feats.new_zeros((num_rows, d)).index_add_(
            0, rows[start * pixels:end * pixels], feats.permute(0, 2, 3, 1).reshape(-1, d))

    def _pool_pixels(self, flat: Tensor, rows: Tensor, start: int, end: int,
                     num_rows: int) -> Tensor:
        """Sums over the rows of the pixels ``start:end`` (flat over (I, H, W)), sampled from
        the channels-last map ``flat`` (made once, not per block)."""
        big_h, big_w = self.size
        idx = torch.arange(start, end, device=rows.device)
        image = idx // (big_h * big_w)
        rem = idx - image * (big_h * big_w)
        y = rem // big_w
        with autocast_off(flat.device):
            feats = self._sample(flat, image, y, rem - y * big_w)
        return feats.new_zeros((num_rows, feats.shape[1])).index_add_(0, rows[start:end], feats)

    def pool(self, rows: Tensor, num_rows: int) -> Tensor:
        """Sum of the features of every pixel into its row, a block at a time.

        A block is as many whole images as fit ``chunk_elements`` (upsampled with the head's
        own ``F.interpolate`` call), or, when one image does not fit, as many pixels (sampled
        as :meth:`at` samples them, from the one channels-last copy of the map that
        :meth:`channels_last` keeps: neither a block nor its recomputation copies the map).
        Each block is summed into its rows and freed; with gradients, its forward is
        recomputed in the backward (activation checkpointing), so memory stays at one block
        whatever the number of images.

        Args:
            rows (Tensor): Row of every pixel, flat over (I, H, W), shape (I * H * W,), in
                ``[0, num_rows)``.
            num_rows (int): Number of rows.

        Returns:
            Tensor: Shape (num_rows, D) float32.
        """
        per_image = self.channels * self.size[0] * self.size[1]
        if per_image <= self.chunk_elements:
            fn, source, total = self._pool_images, self.low, self.num_images
            block = self.chunk_elements // per_image
        else:  # pixel blocks, all sampled from one channels-last copy of the map
            fn, source, total = self._pool_pixels, self.channels_last(), rows.numel()
            block = max(1024, self.chunk_elements // max(self.channels, 1))
        grad = torch.is_grad_enabled() and self.low.requires_grad
        sums = self.low.new_zeros((num_rows, self.channels))
        for start in range(0, total, block):
            end = min(start + block, total)
            if grad:
                part = checkpoint(fn, source, rows, start, end, num_rows, use_reentrant=False)
            else:
                part = fn(source, rows, start, end, num_rows)
            sums = sums + part
        return sums
