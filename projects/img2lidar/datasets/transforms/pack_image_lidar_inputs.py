"""Packing a pretraining sample into model inputs and a data sample."""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures import Det3DDataSample, PointData

META_KEYS = ('sample_idx', 'token', 'info_file', 'lidar_path', 'img_paths', 'sp_paths',
             'cam_names', 'cam2img', 'lidar2cam', 'img_shape', 'img_aug', 'pcd_aug_matrix',
             'point_ids', 'superpixel_sizes')


@TRANSFORMS.register_module()
class PackImageLidarInputs(BaseTransform):
    """Pack points, images, superpixels and pairs for the distillation model.

    Superpixel ids stay per image (``0..n_c-1``, -1 for ignored pixels, as
    :class:`LoadMultiViewImagesAndSuperpixels` relabels them) in the maps and in the pairs;
    ``superpixel_sizes`` in the metainfo holds each image's count ``n_c`` of the full
    (uncropped) map. The model makes them unique across the batch in one place
    (:func:`projects.img2lidar.models.point_pixel_pairs.collate_pairs`).

    Returns:
        dict: ``inputs`` with ``points`` (N, C) float32 and ``img`` (N_cam, 3, H, W) uint8 (BGR);
        ``data_samples``: a :obj:`Det3DDataSample` with ``pairs`` (a :obj:`PointData` with
        ``point`` (P,), ``cam`` (P,), ``pixel`` (P, 2) as (x, y), ``superpixel`` (P,)) and
        ``superpixels`` (N_cam, H, W) int64, plus the metainfo keys in ``META_KEYS``.
    """

    def transform(self, results: dict) -> dict:
        imgs = results['img']
        shapes = {im.shape for im in imgs}
        if len(shapes) != 1:
            raise ValueError(f"{results.get('lidar_path')}: the images of a sample must share "
                             f'one size to be stacked, got {sorted(shapes)}; add a crop')
        img = torch.from_numpy(np.ascontiguousarray(np.stack(imgs).transpose(0, 3, 1, 2)))
        pairs = results['pairs']
        sample = Det3DDataSample()
        fields = dict(point=torch.from_numpy(pairs['point']), cam=torch.from_numpy(pairs['cam']),
                      pixel=torch.from_numpy(pairs['pixel']))
        if 'superpixels' in results:
            sample.superpixels = torch.from_numpy(
                np.stack([sp.astype(np.int64) for sp in results['superpixels']]))
            fields['superpixel'] = torch.from_numpy(pairs['superpixel'].astype(np.int64))
        sample.pairs = PointData(**fields)
        sample.set_metainfo({k: results[k] for k in META_KEYS if k in results})
        points = torch.from_numpy(np.ascontiguousarray(results['points'], dtype=np.float32))
        return dict(inputs=dict(points=points, img=img), data_samples=sample)
