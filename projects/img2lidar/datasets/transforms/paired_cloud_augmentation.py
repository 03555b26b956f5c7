"""Cloud augmentation that keeps every point-pixel pair exact."""
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PairedCloudAugmentation(BaseTransform):
    """Rotate the cloud about z, flip x and y, and optionally drop random cuboids.

    Pairs refer to points by index, so rotation and flips leave them valid; a cuboid drop
    removes the points strictly inside a cuboid centred on a random point and re-indexes the
    pairs (pairs of removed points are dropped). A cuboid is only dropped when every camera
    keeps at least ``min_pairs_per_image`` pairs (or all it had, if fewer and
    ``relax_for_small_images``); otherwise it is redrawn, up to ``max_tries`` times.

    Required keys: ``points`` and ``pairs``. Adds ``pcd_aug_matrix`` (3, 3) with
    ``new_xyz = old_xyz @ pcd_aug_matrix.T`` and ``point_ids`` (N',): the original index of
    each remaining point.

    Args:
        rotation (bool): Rotate by an angle uniform in [0, 2 pi). Defaults to True.
        flip_x_prob (float): Probability of x -> -x. Defaults to 0.5.
        flip_y_prob (float): Probability of y -> -y. Defaults to 0.5.
        cuboid_drop (dict, optional): ``num`` cuboids (default 1); their edge lengths either
            uniform in the ``size`` range in metres (default (1.0, 5.0)) per axis, or, with
            ``extent_fraction=f``, the cloud's extent on each axis times one factor uniform in
            [0, f) (SLidR's DropCuboids: f = 0.2); ``max_tries`` per cuboid (default 10; SLidR
            1); ``min_pairs_per_image`` (default 256; SLidR 1024); ``relax_for_small_images``
            (default True: an image that had fewer pairs must keep them all; False, SLidR's
            rule: every image must keep ``min_pairs_per_image``, so a sample with a smaller
            image never drops). None disables it.
    """

    def __init__(self,
                 rotation: bool = True,
                 flip_x_prob: float = 0.5,
                 flip_y_prob: float = 0.5,
                 cuboid_drop: Optional[dict] = None) -> None:
        self.rotation = rotation
        self.flip_x_prob = flip_x_prob
        self.flip_y_prob = flip_y_prob
        self.cuboid_drop = None if cuboid_drop is None else dict(
            dict(num=1, size=(1.0, 5.0), extent_fraction=None, max_tries=10,
                 min_pairs_per_image=256, relax_for_small_images=True), **cuboid_drop)

    def _matrix(self) -> np.ndarray:
        mat = np.eye(3)
        if self.rotation:
            a = np.random.uniform(0, 2 * np.pi)
            mat = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        flip = np.diag([-1.0 if np.random.rand() < self.flip_x_prob else 1.0,
                        -1.0 if np.random.rand() < self.flip_y_prob else 1.0, 1.0])
        return flip @ mat

    def _drop_cuboids(self, xyz: np.ndarray, pairs: dict) -> np.ndarray:
        cfg = self.cuboid_drop
        keep = np.ones(len(xyz), dtype=bool)
        num_cams = int(pairs['cam'].max()) + 1 if len(pairs['cam']) else 0
        before = np.bincount(pairs['cam'], minlength=num_cams)
        need = np.full_like(before, cfg['min_pairs_per_image'])
        if cfg['relax_for_small_images']:
            need = np.minimum(before, need)
        extent = xyz.max(0) - xyz.min(0) if len(xyz) else np.zeros(3)
        for _ in range(cfg['num']):
            for _ in range(cfg['max_tries']):
                if cfg['extent_fraction'] is not None:
                    half = extent * np.random.uniform(0, cfg['extent_fraction']) / 2
                else:
                    half = np.random.uniform(*cfg['size'], size=3) / 2
                center = xyz[np.random.randint(len(xyz))]
                inside = (np.abs(xyz - center) < half).all(1)
                trial = keep & ~inside
                after = np.bincount(pairs['cam'][trial[pairs['point']]], minlength=num_cams)
                if (after >= need).all():
                    keep = trial
                    break
        return keep

    def transform(self, results: dict) -> dict:
        points = results['points']
        mat = self._matrix()
        # a new array: the float64 product is cast into its columns (no float32 temporary)
        out = np.empty_like(points)
        out[:, 3:] = points[:, 3:]
        # (3, 3) x (3, N) on a C-ordered float64 copy: 5x faster than (N, 3) x (3, 3) on the
        # strided columns, the same float64 values
        xyz = np.array(points[:, :3].T, dtype=np.float64, order='C')
        out[:, :3] = (mat @ xyz).T
        points = out
        point_ids = np.arange(len(points))
        if self.cuboid_drop is not None:
            keep = self._drop_cuboids(points[:, :3], results['pairs'])
            new_index = np.cumsum(keep) - 1
            pairs = results['pairs']
            kept_pairs = keep[pairs['point']]
            pairs = {k: v[kept_pairs] for k, v in pairs.items()}
            pairs['point'] = new_index[pairs['point']]
            results['pairs'] = pairs
            points, point_ids = points[keep], point_ids[keep]
        results['points'] = points
        results['point_ids'] = point_ids
        results['pcd_aug_matrix'] = mat
        return results
