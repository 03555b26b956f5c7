"""Loading a lidar sweep with checks that name the file."""
import os
from typing import List, Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from ..bad_sample import BadSampleError


@TRANSFORMS.register_module()
class LoadLidarPoints(BaseTransform):
    """Load a binary float32 sweep (``.bin`` / ``.pcd.bin``).

    Required keys: ``lidar_path``. Added keys: ``points`` (N, len(use_dim)) float32.

    Args:
        load_dim (int): Floats per point in the file (nuScenes 5: x, y, z, intensity, ring;
            KITTI 4). Defaults to 5.
        use_dim (list[int], optional): Columns to keep; all when None. Defaults to None.
        max_range (float, optional): Keep only the points within this horizontal distance of
            the sensor, in metres (sqrt(x^2 + y^2)); all points when None. Defaults to None.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file size is not a whole number of points, or the info file says the
            points have another number of floats (``num_pts_feats``) than ``load_dim``.
        BadSampleError: A value of a used column (coordinates, intensity, ...) is NaN or
            infinite (skippable by the dataset).
    """

    def __init__(self, load_dim: int = 5, use_dim: Optional[List[int]] = None,
                 max_range: Optional[float] = None) -> None:
        self.load_dim = load_dim
        self.use_dim = use_dim
        self.max_range = max_range

    def transform(self, results: dict) -> dict:
        path = results['lidar_path']
        if not os.path.isfile(path):
            raise FileNotFoundError(f'lidar file not found: {path}')
        stored = results.get('num_pts_feats')
        if stored is not None and int(stored) != self.load_dim:
            raise ValueError(f'{path}: the info file says {stored} floats per point, the '
                             f'pipeline reads {self.load_dim} (LoadLidarPoints.load_dim)')
        size = os.path.getsize(path)
        point_bytes = 4 * self.load_dim
        if size % point_bytes:
            raise ValueError(f'{path}: size {size} bytes is not a whole number of points of '
                             f'{self.load_dim} float32 ({point_bytes} bytes)')
        points = np.fromfile(path, dtype=np.float32).reshape(-1, self.load_dim)
        if self.use_dim is not None:
            # a C-ordered copy (indexing with a list gives a Fortran-ordered one, twice as slow
            # to make contiguous)
            points = points.take(self.use_dim, axis=1)
        finite = np.isfinite(points)
        if not finite.all():
            # every used column counts: a non-finite intensity is as bad as a coordinate
            bad = int((~finite).any(1).sum())
            cols = sorted(set(np.nonzero(~finite)[1].tolist()))
            raise BadSampleError(f'{path}: {bad} points have NaN or infinite values (in used '
                                 f'column(s) {cols} of {points.shape[1]})')
        if self.max_range is not None:
            points = points[np.hypot(points[:, 0], points[:, 1]) <= self.max_range]
        results['points'] = np.ascontiguousarray(points)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(load_dim={self.load_dim}, use_dim={self.use_dim}, '
                f'max_range={self.max_range})')
