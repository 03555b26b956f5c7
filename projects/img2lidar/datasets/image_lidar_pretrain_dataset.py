"""The image-to-lidar pretraining dataset: lidar sweeps, camera images and superpixels."""
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmdet3d.registry import DATASETS
from mmengine.dataset import BaseDataset
from mmengine.logging import MMLogger

from .bad_sample import BadSampleError
from .info_file_checks import CheckedInfoFile


@DATASETS.register_module()
class ImageLidarPretrainDataset(CheckedInfoFile, BaseDataset):
    """Samples of one lidar sweep and the images of the cameras around it.

    Reads mmdet3d v1.1 info files (``data_list`` entries with ``lidar_points.lidar_path`` and
    ``images.<CAM>.{img_path, cam2img, lidar2cam}``); nothing below the info layer is
    dataset-specific, so nuScenes (6 cameras) and KITTI (``CAM2``) load the same way. Each
    ``data_info`` handed to the pipeline has ``lidar_path``, ``cam_names``, ``img_paths``,
    ``sp_paths``, ``cam2img`` and ``lidar2cam`` (4x4 float64 each).

    Args:
        ann_file (str): Info file (.pkl).
        data_root (str): Root that relative prefixes are joined to.
        data_prefix (dict): ``pts`` (lidar files), ``img`` (images; a key per camera name
            overrides it, as in mmdet3d's nuScenes configs) and ``sp`` (superpixel maps, stored
            as ``<sp>/<camera>/<image stem><superpixel_suffix>``).
        cameras (Sequence[str], optional): Cameras to use; all cameras of the info that have
            an ``img_path`` when None.
        superpixel_suffix (str): '.npz' (what tools/create_superpixels.py writes), '.npy' or
            '.png' (8/16-bit). Defaults to '.npz'.
        skip_bad_samples (bool): Log, count and replace samples that raise
            :class:`BadSampleError` (NaN/inf point values or calibration, too few pairs)
            instead of failing. Defaults to False.
        superpixel_source (dict, optional): What must have made the maps: ``generator`` (a
            region generator's name: ``'slic'``, ``'sam'``, ``'teacher_kmeans'``,
            ``'precomputed'``) and any parameters that must have a given value (e.g.
            ``downscale=2.0``, ``checkpoint_sha256=...``). Checked against the sidecar
            ``superpixels.json`` of the maps' folder when the dataset is built (logged; a
            disagreement is an error; a folder without one is accepted with a warning).
            None: ``dict(generator='slic')``.
        **kwargs: Passed to :class:`mmengine.dataset.BaseDataset` (``pipeline``,
            ``test_mode``, ``indices``, ...).
    """

    METAINFO = dict(dataset='image_lidar_pretrain')

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix: dict = dict(pts='', img='', sp='superpixels'),
                 cameras: Optional[Sequence[str]] = None,
                 superpixel_suffix: str = '.npz',
                 skip_bad_samples: bool = False,
                 superpixel_source: Optional[dict] = None,
                 **kwargs) -> None:
        self.cameras = list(cameras) if cameras is not None else None
        self.superpixel_suffix = superpixel_suffix
        self.skip_bad_samples = skip_bad_samples
        self.superpixel_source = superpixel_source
        self.num_skipped = 0
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix, **kwargs)
        self.check_superpixel_source()

    def check_superpixel_source(self) -> None:
        """Log what made the maps (their folder's sidecar) and refuse maps of another source
        than ``superpixel_source``, or maps with unassigned pixels (-1) when the pipeline's
        loader reads negative ids as an error.

        Raises:
            SuperpixelSourceError: The sidecar disagrees with ``superpixel_source``, or its
                maps can hold -1 and the loader has ``negative_superpixels='error'``.
        """
        from ..preparation.regions.sidecar import (SuperpixelSourceError,
                                                   check_superpixel_source, sidecar_path)
        folder = self._prefix('sp')
        content = check_superpixel_source(folder, self.superpixel_source,
                                          MMLogger.get_current_instance())
        if content is None or not content.get('unassigned'):
            return
        strict = [t for t in getattr(self.pipeline, 'transforms', [])
                  if getattr(t, 'negative_superpixels', None) == 'error']
        if strict:
            raise SuperpixelSourceError(
                f'{sidecar_path(folder)}: these maps can hold unassigned pixels (-1), and '
                f'{type(strict[0]).__name__} reads a negative id as an error: set its '
                "negative_superpixels='ignore'")

    def _prefix(self, key: str, default: str = '') -> str:
        return self.data_prefix.get(key, self.data_prefix.get(default, ''))

    def image_prefix(self, cam: str) -> str:
        """The folder (data root joined) that ``cam``'s image paths are relative to."""
        return self._prefix(cam, 'img')

    def parse_data_info(self, info: dict) -> dict:
        """Resolve paths and calibration of one info entry."""
        images = info.get('images', {})
        cams: List[str] = self.cameras or [c for c, v in images.items() if 'img_path' in v]
        missing = [c for c in cams if c not in images or 'img_path' not in images[c]]
        if missing:
            raise KeyError(f'{self.ann_file}: sample {info.get("token", info.get("sample_idx"))} '
                           f'has no image for cameras {missing}')
        data = dict(
            info_file=self.ann_file,
            sample_idx=info.get('sample_idx'),
            token=info.get('token'),
            lidar_path=osp.join(self._prefix('pts'), info['lidar_points']['lidar_path']),
            num_pts_feats=info['lidar_points'].get('num_pts_feats'),
            cam_names=cams,
            img_paths=[], sp_paths=[], cam2img=[], lidar2cam=[])
        for cam in cams:
            img = images[cam]
            data['img_paths'].append(osp.join(self.image_prefix(cam), img['img_path']))
            stem = osp.splitext(osp.basename(img['img_path']))[0]
            data['sp_paths'].append(
                osp.join(self._prefix('sp'), cam, stem + self.superpixel_suffix))
            k = np.eye(4)
            cam2img = np.asarray(img['cam2img'], dtype=np.float64)
            k[:cam2img.shape[0], :cam2img.shape[1]] = cam2img
            data['cam2img'].append(k)
            data['lidar2cam'].append(np.asarray(img['lidar2cam'], dtype=np.float64))
        return data

    def prepare_data(self, idx: int):
        """Run the pipeline; with ``skip_bad_samples`` a :class:`BadSampleError` gives None,
        which makes mmengine draw another sample."""
        try:
            return super().prepare_data(idx)
        except BadSampleError as e:
            if not self.skip_bad_samples:
                raise
            self.num_skipped += 1
            MMLogger.get_current_instance().warning(
                f'skipped bad sample {idx} ({self.num_skipped} so far in this process): {e}')
            return None
