"""Packing a pretraining sample into model inputs and a data sample."""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures import Det3DDataSample, PointData

META_KEYS = ('sample_idx', 'token', 'lidar_path', 'img_paths', 'sp_paths', 'cam_names', 'cam2img',
             'lidar2cam', 'img_shape', 'img_aug', 'pcd_aug_matrix', 'point_ids', 'num_superpixels')


@TRANSFORMS.register_module()
class PackImageLidarInputs(BaseTransform):
    """Pack points, images, superpixels and pairs for the distillation model.

    Superpixel ids are made unique across the images of the sample: image c's ids are shifted
    by the sum of (max id + 1) of the full (uncropped) maps of images 0..c-1, in the maps and
    in the pairs alike;
    ``num_superpixels`` in the metainfo is the sample's id range, so the model shifts whole
    samples the same way when it batches them.

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
            sizes = results['superpixel_sizes']
            offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            sps = np.stack([
                sp.astype(np.int64) + o for sp, o in zip(results['superpixels'], offsets)
            ])
            sample.superpixels = torch.from_numpy(sps)
            fields['superpixel'] = torch.from_numpy(pairs['superpixel'] + offsets[pairs['cam']])
            results['num_superpixels'] = int(sum(sizes))
        sample.pairs = PointData(**fields)
        sample.set_metainfo({k: results[k] for k in META_KEYS if k in results})
        points = torch.from_numpy(np.ascontiguousarray(results['points'], dtype=np.float32))
        return dict(inputs=dict(points=points, img=img), data_samples=sample)
