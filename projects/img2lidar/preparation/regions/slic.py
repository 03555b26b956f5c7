"""SLIC superpixels (SLidR's), as a region generator."""
from typing import Optional

import cv2
import numpy as np

from ..superpixels import slic_superpixels
from .base import RegionGenerator
from .registry import REGION_GENERATORS


@REGION_GENERATORS.register_module(name='slic')
class SlicRegions(RegionGenerator):
    """SLIC on the whole image: :func:`~projects.img2lidar.preparation.superpixels.slic_superpixels`
    with these parameters (the same maps as before the generators existed).

    Args:
        n_segments (int): About how many segments. Defaults to 150 (SLidR's).
        compactness (float): Colour against space. Defaults to 6.0.
        sigma (float): Gaussian blur before clustering. Defaults to 3.0.
        downscale (float): Compute at 1 / downscale resolution. Defaults to 1.0.
        preprocess (str): ``'opencv'`` (default) or ``'skimage'``.
    """

    name = 'slic'
    packages = ('numpy', 'cv2', 'skimage')

    def __init__(self, n_segments: int = 150, compactness: float = 6.0, sigma: float = 3.0,
                 downscale: float = 1.0, preprocess: str = 'opencv') -> None:
        if preprocess not in ('opencv', 'skimage'):
            raise ValueError(f"preprocess must be 'opencv' or 'skimage', got {preprocess!r}")
        self.n_segments = int(n_segments)
        self.compactness = float(compactness)
        self.sigma = float(sigma)
        self.downscale = float(downscale)
        self.preprocess = preprocess

    def parameters(self) -> dict:
        return dict(n_segments=self.n_segments, compactness=self.compactness, sigma=self.sigma,
                    downscale=self.downscale, preprocess=self.preprocess)

    def generate(self, image: np.ndarray, source: Optional[dict] = None) -> np.ndarray:
        """SLIC ids from 0, (H, W) int32 (no pixel unassigned)."""
        return slic_superpixels(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), **self.parameters())
