"""Packing a pretraining sample into model inputs and a data sample."""
import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures import Det3DDataSample

META_KEYS = ('sample_idx', 'token', 'info_file', 'lidar_path', 'img_paths', 'sp_paths',
             'cam_names', 'cam2img', 'lidar2cam', 'img_shape', 'img_aug', 'pcd_aug_matrix',
             'point_ids', 'superpixel_sizes')


def map_dtype(id_range: int) -> np.dtype:
    """The smallest signed integer type of a superpixel map with ids ``< id_range`` (and -1)."""
    return np.int16 if id_range <= np.iinfo(np.int16).max else np.int32


@TRANSFORMS.register_module()
class PackImageLidarInputs(BaseTransform):
    """Pack points, images, superpixels and pairs for the distillation model.

    Superpixel ids stay per image (ids below the map's id range, -1 for ignored pixels, as
    :class:`LoadMultiViewImagesAndSuperpixels` reads them) and the maps travel in the smallest
    integer type that holds them (int16 below 32,768 ids, else int32);
    ``superpixel_sizes`` in the metainfo holds each image's id range, fixed on the full
    (uncropped) map. The loader's collate function
    (:func:`projects.img2lidar.datasets.collate_image_lidar`) makes the batch, with ids unique
    across it.

    Raises:
        ValueError: The images differ in size, or a map is not its image's size (a map stored
            below full resolution, or an image decoded at 1/s, needs
            :class:`PairedRandomResizedCrop` before packing).

    Returns:
        dict: ``inputs`` with ``points`` (N, C) float32, ``img`` (N_cam, 3, H, W) uint8 (BGR),
        ``pairs`` (``point`` (P,), ``cam`` (P,) and ``pixel`` (P, 2) as (x, y), int32) and, with
        maps, ``superpixels`` (N_cam, H, W) int16 or int32; ``data_samples``: a
        :obj:`Det3DDataSample` with the metainfo keys in ``META_KEYS``.
    """

    @staticmethod
    def stack_images(imgs) -> np.ndarray:
        """(V, 3, H, W) from V (H, W, 3) images of one type: OpenCV splits each image's
        channels straight into their places (one copy, much faster than numpy's stack and
        transposed copy); a plane OpenCV had to allocate itself is copied in."""
        h, w = imgs[0].shape[:2]
        out = np.empty((len(imgs), 3, h, w), dtype=imgs[0].dtype)
        for v, im in enumerate(imgs):
            planes = cv2.split(np.ascontiguousarray(im), [out[v, c] for c in range(3)])
            for c, plane in enumerate(planes):
                if plane.ctypes.data != out[v, c].ctypes.data:
                    out[v, c] = plane
        return out

    @staticmethod
    def set_metainfo(sample: Det3DDataSample, results: dict) -> None:
        """Put the ``META_KEYS`` of ``results`` into the sample's metainfo as they are:
        ``results`` is this sample's own (the dataset hands out a fresh copy of its info), so
        the deep copy that ``set_metainfo`` makes would only cost time (mostly
        ``point_ids``)."""
        for k in META_KEYS:
            if k in results:
                sample.set_field(results[k], k, field_type='metainfo')

    @staticmethod
    def check_map_sizes(results: dict) -> None:
        """Every superpixel map has its image's (H, W)."""
        for c, (im, sp) in enumerate(zip(results['img'], results['superpixels'])):
            if sp.shape != im.shape[:2]:
                raise ValueError(
                    f"{results.get('lidar_path')}: camera {c}'s superpixel map is "
                    f'{sp.shape[1]}x{sp.shape[0]} but its image is {im.shape[1]}x{im.shape[0]}; '
                    'a map stored below full resolution or an image decoded at 1/s needs a '
                    'PairedRandomResizedCrop before packing')

    def transform(self, results: dict) -> dict:
        imgs = results['img']
        shapes = {im.shape for im in imgs}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
            raise ValueError(f"{results.get('lidar_path')}: the images of a sample must share "
                             f'one (H, W, 3) size to be stacked, got {sorted(shapes)}; add a '
                             'crop')
        if 'superpixels' in results:
            self.check_map_sizes(results)
        img = torch.from_numpy(self.stack_images(imgs))
        pairs = results['pairs']
        inputs = dict(
            points=torch.from_numpy(np.ascontiguousarray(results['points'], dtype=np.float32)),
            img=img,
            pairs=dict(point=torch.from_numpy(pairs['point'].astype(np.int32)),
                       cam=torch.from_numpy(pairs['cam'].astype(np.int32)),
                       pixel=torch.from_numpy(
                           np.ascontiguousarray(pairs['pixel'], dtype=np.int32))))
        if 'superpixels' in results:
            dtype = map_dtype(max(results['superpixel_sizes'], default=0))
            maps = results['superpixels']
            stacked = np.empty((len(maps), ) + maps[0].shape, dtype=dtype)
            for v, sp in enumerate(maps):
                stacked[v] = sp  # cast in place: one copy
            inputs['superpixels'] = torch.from_numpy(stacked)
        sample = Det3DDataSample()
        self.set_metainfo(sample, results)
        return dict(inputs=inputs, data_samples=sample)
