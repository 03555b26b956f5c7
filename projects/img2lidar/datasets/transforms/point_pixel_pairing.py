"""Point-pixel pairs: which lidar point lands on which pixel of which camera."""
from typing import Dict

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from ..bad_sample import BadSampleError


def to_homogeneous(mat) -> np.ndarray:
    """A 3x3 or 4x4 (or 3x4) matrix as 4x4 float64."""
    m = np.asarray(mat, dtype=np.float64)
    out = np.eye(4)
    out[:m.shape[0], :m.shape[1]] = m
    return out


def project_to_cameras(xyz: np.ndarray, cam2imgs, lidar2cams, img_hws,
                       min_depth: float = 1.0):
    """Project lidar points into several images at once.

    Args:
        xyz (np.ndarray): Points in the lidar frame, (N, 3).
        cam2imgs: Intrinsics of each camera, 3x3 or 4x4.
        lidar2cams: Lidar to each camera, 4x4 (nuScenes infos fold ego motion in).
        img_hws: Each image's height and width.
        min_depth (float): Keep points deeper than this (metres). Defaults to 1.0.

    Returns:
        tuple[np.ndarray]: For every kept (camera, point): the camera (K,), the point's index
        (K,) and its integer pixel (K, 2) as (x, y) = (floor(u), floor(v)), for
        ``depth > min_depth``, ``0 <= u < W`` and ``0 <= v < H``; ordered by camera, then point.
    """
    proj = np.stack([to_homogeneous(k) @ to_homogeneous(e)
                     for k, e in zip(cam2imgs, lidar2cams)])[:, :3]  # (C, 3, 4)
    if len(proj) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 2), dtype=np.int64)
    # the points as a C-ordered (3, N) float64 copy (4x faster than astype's strided copy);
    # then camera by camera, so that its (3, N) rows (u z, v z, z) stay in cache
    points = np.array(xyz.T, dtype=np.float64, order='C')
    cams, kept, pixels = [], [], []
    for c, (h, w) in enumerate(img_hws):
        cam = proj[c, :, :3] @ points
        cam += proj[c, :, 3:]
        depth = cam[2]
        # u and v of points behind the camera (inf or NaN) are never kept: the depth test
        # comes first
        with np.errstate(divide='ignore', invalid='ignore'):
            u = cam[0] / depth
            v = cam[1] / depth
        inside = depth > min_depth
        inside &= u >= 0
        inside &= u < w
        inside &= v >= 0
        inside &= v < h
        index = np.flatnonzero(inside)
        kept.append(index)
        cams.append(np.full(len(index), c, dtype=np.int64))
        pixel = np.empty((len(index), 2), dtype=np.int64)
        pixel[:, 0] = np.floor(u[index])
        pixel[:, 1] = np.floor(v[index])
        pixels.append(pixel)
    return np.concatenate(cams), np.concatenate(kept), np.concatenate(pixels)


def project_points(xyz: np.ndarray, cam2img, lidar2cam, img_hw, min_depth: float = 1.0):
    """Project lidar points into one image (see :func:`project_to_cameras`).

    Returns:
        tuple[np.ndarray]: Indices of the kept points (K,) and their integer pixels (K, 2).
    """
    _, idx, pixels = project_to_cameras(xyz, [cam2img], [lidar2cam], [img_hw], min_depth)
    return idx, pixels


@TRANSFORMS.register_module()
class PointPixelPairing(BaseTransform):
    """Pair every point with every camera pixel it projects onto.

    Required keys: ``points``, ``cam2img``, ``lidar2cam`` and ``img_shape``. Added key
    ``pairs``: a dict of aligned arrays, one row per pair (a point seen by two cameras gives
    two pairs):

    - ``point`` (P,) int64: index of the point in ``points``;
    - ``cam`` (P,) int64: index of the camera;
    - ``pixel`` (P, 2) int64: pixel (x, y) in that image.

    Later transforms move the pixel with the image; the superpixel of a pair is read from the
    final map at the final pixel by the model (as SLidR does), so that a superpixel that holds a
    pair always keeps at least that pixel.

    Args:
        min_depth (float): Minimum depth in metres. Defaults to 1.0.

    Raises:
        BadSampleError: A camera's calibration is not finite (skippable by the dataset).
    """

    def __init__(self, min_depth: float = 1.0) -> None:
        self.min_depth = min_depth

    @staticmethod
    def check_calibration(results: dict) -> None:
        """Raise :class:`BadSampleError` when a camera's ``cam2img`` or ``lidar2cam`` is not
        finite (a NaN matrix would silently drop every pair of that camera)."""
        names = results.get('cam_names') or [str(c) for c in range(len(results['cam2img']))]
        for cam, k, e in zip(names, results['cam2img'], results['lidar2cam']):
            for what, mat in (('cam2img', k), ('lidar2cam', e)):
                mat = np.asarray(mat, dtype=np.float64)
                if not np.isfinite(mat).all():
                    raise BadSampleError(
                        f"{results.get('info_file', '<info>')}: sample "
                        f"{results.get('token', results.get('sample_idx'))} "
                        f"({results.get('lidar_path')}): camera {cam} has a non-finite {what} "
                        f'({int((~np.isfinite(mat)).sum())} of {mat.size} entries)')

    def transform(self, results: dict) -> dict:
        self.check_calibration(results)
        cam, point, pixel = project_to_cameras(results['points'][:, :3], results['cam2img'],
                                               results['lidar2cam'], results['img_shape'],
                                               self.min_depth)
        pairs: Dict[str, np.ndarray] = dict(point=point, cam=cam, pixel=pixel)
        results['pairs'] = pairs
        return results
