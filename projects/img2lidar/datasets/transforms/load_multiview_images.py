"""Loading the camera images of a sample and their superpixel maps."""
import os
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS


def read_superpixels(path: str) -> np.ndarray:
    """Read an integer superpixel map (PNG of 8 or 16 bits, or ``.npy``), (H, W) int64."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'superpixel map not found: {path} (run tools/create_superpixels.py)')
    if path.endswith('.npy'):
        try:
            sp = np.load(path)
        except Exception as e:  # noqa: BLE001 - name the file whatever numpy says
            raise ValueError(f'{path}: unreadable superpixel map ({e})') from e
    else:
        sp = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if sp is None:
            raise ValueError(f'{path}: unreadable superpixel map')
    if sp.ndim != 2 or not np.issubdtype(sp.dtype, np.integer):
        raise ValueError(f'{path}: a superpixel map must be a 2D integer image, got '
                         f'{sp.dtype} of shape {sp.shape}')
    return sp.astype(np.int64)


@TRANSFORMS.register_module()
class LoadMultiViewImagesAndSuperpixels(BaseTransform):
    """Load every camera image of the sample and, optionally, its superpixel map.

    Required keys: ``img_paths`` and, with superpixels, ``sp_paths`` (one per camera).
    Added keys: ``img`` (list of (H, W, 3) uint8, BGR as OpenCV reads), ``img_shape`` (list of
    (H, W)), ``superpixels`` (list of (H, W) int64) and ``superpixel_sizes`` (max id + 1 of
    each map).

    Args:
        with_superpixels (bool): Load the maps. Defaults to True.

    Raises:
        FileNotFoundError: An image or map is missing.
        ValueError: An image or map is unreadable, or a map's size differs from its image's.
    """

    def __init__(self, with_superpixels: bool = True) -> None:
        self.with_superpixels = with_superpixels

    @staticmethod
    def _read_image(path: str) -> np.ndarray:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'image not found: {path}')
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f'{path}: unreadable image')
        return img

    def transform(self, results: dict) -> Optional[dict]:
        imgs = [self._read_image(p) for p in results['img_paths']]
        results['img'] = imgs
        results['img_shape'] = [im.shape[:2] for im in imgs]
        if self.with_superpixels:
            sps = []
            for img, ipath, spath in zip(imgs, results['img_paths'], results['sp_paths']):
                sp = read_superpixels(spath)
                if sp.shape != img.shape[:2]:
                    raise ValueError(f'{spath}: superpixel map is {sp.shape[1]}x{sp.shape[0]} but '
                                     f'its image {ipath} is {img.shape[1]}x{img.shape[0]}')
                sps.append(sp)
            results['superpixels'] = sps
            # id range of each full map, fixed before any crop so that ids stay unique
            results['superpixel_sizes'] = [int(sp.max()) + 1 for sp in sps]
        return results
