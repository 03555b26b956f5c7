"""Loading the camera images of a sample and their superpixel maps."""
import os
import struct
from typing import Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from .superpixel_map import compact_superpixel_ids, read_scaled_superpixels


def _image_size(head: bytes, path: str) -> Tuple[int, int]:
    """(H, W) from the first bytes of a PNG or JPEG file."""
    if head[:8] == b'\x89PNG\r\n\x1a\n':
        w, h = struct.unpack('>II', head[16:24])
        return h, w
    if head[:2] == b'\xff\xd8':
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                i += 1
                continue
            marker = head[i + 1]
            length = struct.unpack('>H', head[i + 2:i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                          0xCF):
                h, w = struct.unpack('>HH', head[i + 5:i + 9])
                return h, w
            i += 2 + length
    raise ValueError(f'{path}: cannot read the image size from its header (PNG or JPEG expected)')


@TRANSFORMS.register_module()
class LoadMultiViewImagesAndSuperpixels(BaseTransform):
    """Load every camera image of the sample and, optionally, its superpixel map.

    Required keys: ``img_paths`` and, with superpixels, ``sp_paths`` (one per camera).
    Added keys: ``img`` (list of (H / s, W / s, 3) uint8, BGR as OpenCV reads), ``img_shape``
    (list of the full-resolution (H, W), the frame of every pixel coordinate),
    ``img_decode_scale`` (s), ``superpixels`` (list of integer maps as stored: (H, W), or
    (ceil(H / m), ceil(W / m)) for a map stored at scale m, see
    :mod:`~projects.img2lidar.datasets.transforms.superpixel_map`; ids below each map's id
    range, see :func:`compact_superpixel_ids`; -1 marks ignored pixels),
    ``superpixel_scales`` (m of each map) and ``superpixel_sizes`` (the id range of each map).
    Maps are never resized here: :class:`PairedRandomResizedCrop` reads full-resolution pixel
    (x, y) of a map at scale m at [y // m, x // m], and a map whose shape is not its image's
    at its recorded scale is an error.

    Args:
        with_superpixels (bool): Load the maps. Defaults to True.
        decode_scale (int): 1, 2, 4 or 8: decode each image at 1/s resolution (JPEG decodes
            in the DCT domain, about 3x faster at 2). Pairs and superpixels keep full
            resolution; :class:`PairedRandomResizedCrop` samples the reduced image at the exact
            full-resolution positions. Use it only when a crop-resize that shrinks by at least
            s follows (224x416 crops of >= 30% of a 1600x900 image shrink by >= 2.1).
            Defaults to 1.
        negative_superpixels (str): What a negative id in a map means: ``'error'`` (the
            default: a ``ValueError`` naming the file) or ``'ignore'`` (unassigned pixels, as
            mask generators leave them: they belong to no superpixel, and pairs on them are
            left out of superpixel pooling).

    Raises:
        FileNotFoundError: An image or map is missing.
        ValueError: An image or map is unreadable, or a map's size is not its image's at the
            map's scale.
    """

    _FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
              8: cv2.IMREAD_REDUCED_COLOR_8}

    def __init__(self, with_superpixels: bool = True, decode_scale: int = 1,
                 negative_superpixels: str = 'error') -> None:
        if decode_scale not in self._FLAGS:
            raise ValueError(
                f'decode_scale must be one of {sorted(self._FLAGS)}, got {decode_scale}')
        if negative_superpixels not in ('error', 'ignore'):
            raise ValueError("negative_superpixels must be 'error' or 'ignore', got "
                             f'{negative_superpixels!r}')
        self.with_superpixels = with_superpixels
        self.decode_scale = decode_scale
        self.negative_superpixels = negative_superpixels

    def read_image(self, path: str) -> Tuple[np.ndarray, Tuple[int, int]]:
        """The image decoded at 1/``decode_scale`` resolution and its full-resolution (H, W).

        Raises:
            FileNotFoundError: The image does not exist.
            ValueError: It does not decode, or its header gives no size.
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f'image not found: {path}')
        img = cv2.imread(path, self._FLAGS[self.decode_scale])
        if img is None:
            raise ValueError(f'{path}: unreadable image')
        if self.decode_scale == 1:
            return img, img.shape[:2]
        # JPEG/PNG headers give the full size without decoding again
        with open(path, 'rb') as f:
            full = _image_size(f.read(1 << 16), path)
        return img, full

    def read_map(self, path: str, image_hw: Tuple[int, int],
                 image_path: str) -> Tuple[np.ndarray, int, int]:
        """One superpixel map as stored, its ids brought into a small range.

        Returns:
            tuple: The map (see the class doc), its id range and its scale.
        """
        sp, scale = read_scaled_superpixels(path, image_hw, image_path)
        sp, n = compact_superpixel_ids(sp, path, self.negative_superpixels)
        return sp, n, scale

    def transform(self, results: dict) -> Optional[dict]:
        loaded = [self.read_image(p) for p in results['img_paths']]
        results['img'] = [im for im, _ in loaded]
        results['img_shape'] = [hw for _, hw in loaded]
        results['img_decode_scale'] = self.decode_scale
        if self.with_superpixels:
            maps = [self.read_map(spath, hw, ipath) for hw, ipath, spath in
                    zip(results['img_shape'], results['img_paths'], results['sp_paths'])]
            results['superpixels'] = [sp for sp, _, _ in maps]
            # id range of each full map, fixed before any crop so that ids stay unique
            results['superpixel_sizes'] = [n for _, n, _ in maps]
            results['superpixel_scales'] = [scale for _, _, scale in maps]
        return results
