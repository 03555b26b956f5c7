"""Point-pixel pairs: which lidar point lands on which pixel of which camera."""
from typing import Dict, List

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


def project_points(xyz: np.ndarray, cam2img, lidar2cam, img_hw, min_depth: float = 1.0):
    """Project lidar points into one image.

    Args:
        xyz (np.ndarray): Points in the lidar frame, (N, 3).
        cam2img: Intrinsics, 3x3 or 4x4.
        lidar2cam: Lidar to camera, 4x4 (nuScenes infos fold ego motion in).
        img_hw (tuple[int, int]): Image height and width.
        min_depth (float): Keep points deeper than this (metres). Defaults to 1.0.

    Returns:
        tuple[np.ndarray]: Indices of the kept points (K,) and their integer pixels (K, 2) as
        (x, y) = (floor(u), floor(v)), for ``depth > min_depth`` and ``0 <= u < W``,
        ``0 <= v < H``.
    """
    proj = to_homogeneous(cam2img) @ to_homogeneous(lidar2cam)
    pts = np.concatenate([xyz.astype(np.float64), np.ones((len(xyz), 1))], axis=1)
    cam = pts @ proj.T
    depth = cam[:, 2]
    front = depth > min_depth
    with np.errstate(divide='ignore', invalid='ignore'):
        u = cam[:, 0] / depth
        v = cam[:, 1] / depth
    h, w = img_hw
    keep = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    idx = np.flatnonzero(keep)
    pixels = np.stack([np.floor(u[idx]), np.floor(v[idx])], axis=1).astype(np.int64)
    return idx, pixels


@TRANSFORMS.register_module()
class PointPixelPairing(BaseTransform):
    """Pair every point with every camera pixel it projects onto.

    Required keys: ``points``, ``cam2img``, ``lidar2cam``, ``img_shape`` and optionally
    ``superpixels``. Added key ``pairs``: a dict of aligned arrays, one row per pair (a point
    seen by two cameras gives two pairs):

    - ``point`` (P,) int64: index of the point in ``points``;
    - ``cam`` (P,) int64: index of the camera;
    - ``pixel`` (P, 2) int64: pixel (x, y) in that image;
    - ``superpixel`` (P,) int64: the id under that pixel in the image's map (when loaded).
      It travels with the pair through every later transform.

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
        xyz = results['points'][:, :3]
        point, cam, pixel, superpixel = [], [], [], []
        sps: List[np.ndarray] = results.get('superpixels')
        for c, (k, e, hw) in enumerate(
                zip(results['cam2img'], results['lidar2cam'], results['img_shape'])):
            idx, px = project_points(xyz, k, e, hw, self.min_depth)
            point.append(idx)
            cam.append(np.full(len(idx), c, dtype=np.int64))
            pixel.append(px)
            if sps is not None:
                superpixel.append(sps[c][px[:, 1], px[:, 0]])
        pairs: Dict[str, np.ndarray] = dict(
            point=np.concatenate(point).astype(np.int64),
            cam=np.concatenate(cam),
            pixel=np.concatenate(pixel).reshape(-1, 2))
        if sps is not None:
            pairs['superpixel'] = np.concatenate(superpixel).astype(np.int64)
        results['pairs'] = pairs
        return results
