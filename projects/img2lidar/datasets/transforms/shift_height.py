"""Bringing a dataset's points to the common height reference, cameras and all."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures.points import BasePoints


@TRANSFORMS.register_module()
class ShiftHeight(BaseTransform):
    """Move the point cloud by a fixed height, without moving any point in any image.

    z is an input of the students (x, y, z, intensity), and datasets store their points in
    frames whose origin lies at different heights above the road (nuScenes at its roof lidar,
    PandaSet near the road). ``configs/_base_/datasets/sensor_heights.py`` states each
    dataset's height and the reference frame; a dataset's pipelines apply this transform with
    ``z_offset`` = its origin's height minus the reference's: in pretraining right after
    :class:`PointPixelPairing`, so that the pairs are exactly those of the stored points, in
    segmentation right after loading.

    Every ``lidar2cam`` and ``lidar2img`` of the sample is composed with the inverse shift,
    so that each shifted point still projects onto its pixel for whatever reads them later.
    (Pairing after the shift gives the same pairs up to the float32 rounding of the shifted z:
    on the nuScenes sample 1 of its 22,152 pairs, 4e-6 px from a pixel border, moves by one
    pixel at a shift of -1.62 m; hence the shift after the pairing.)

    Required keys: ``points`` ((N, C) float array or mmdet3d ``BasePoints``; x, y, z first).
    Modified keys: ``points`` (z + ``z_offset``); where present, ``lidar2cam`` /
    ``lidar2img`` (lists of matrices, as the pretraining datasets give them) and
    ``images.<cam>.lidar2cam`` / ``lidar2img`` (mmdet3d's info layout).

    Args:
        z_offset (float): Metres added to every point's z.
    """

    #: the point-to-camera matrices kept consistent with the shifted points
    CALIBRATION_KEYS = ('lidar2cam', 'lidar2img')

    def __init__(self, z_offset: float) -> None:
        if not np.isfinite(z_offset):
            raise ValueError(f'ShiftHeight: z_offset must be a finite number, got {z_offset!r}')
        self.z_offset = float(z_offset)

    def _compensate(self, lidar2x) -> np.ndarray:
        """``lidar2x @ T(0, 0, -z_offset)`` ((3 or 4) x 4): a shifted point lands where the
        point did."""
        shift_back = np.eye(4)
        shift_back[2, 3] = -self.z_offset
        return np.asarray(lidar2x, dtype=np.float64) @ shift_back

    def transform(self, results: dict) -> dict:
        points = results['points']
        if isinstance(points, BasePoints):
            points.translate([0.0, 0.0, self.z_offset])
        else:
            points = np.array(points, copy=True)
            points[:, 2] += np.asarray(self.z_offset, dtype=points.dtype)
            results['points'] = points
        for key in self.CALIBRATION_KEYS:
            if key in results:  # one matrix, or one per camera
                value = results[key]
                results[key] = (self._compensate(value) if np.ndim(value) == 2 else
                                [self._compensate(m) for m in value])
        if isinstance(results.get('images'), dict):
            results['images'] = {cam: self._compensate_info(img)
                                 for cam, img in results['images'].items()}
        return results

    def _compensate_info(self, img):
        """One camera of mmdet3d's ``images`` dict, its matrices compensated (as lists)."""
        if not isinstance(img, dict):
            return img
        return dict(img, **{key: self._compensate(img[key]).tolist()
                            for key in self.CALIBRATION_KEYS if key in img})

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(z_offset={self.z_offset})'
