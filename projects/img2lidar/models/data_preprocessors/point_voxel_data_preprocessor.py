"""Device-agnostic voxelization for sparse students and mmdet3d segmentors."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor
from mmdet3d.registry import MODELS
from mmdet3d.structures.det3d_data_sample import SampleList
from torch import Tensor

from ..host_to_device import host_to_device


#: bits of the flat voxel key per axis (the batch index takes the rest)
_AXIS_BITS = 17


def unique_voxels(coors: Tensor, batch: Tensor,
                  files: Optional[Sequence[str]] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Unique voxels of a whole batch, sorted by (cloud, cell) lexicographically.

    One ``unique`` over a flat int64 key of (cloud, x, y, z), so that the batch costs one
    sort whatever its size. Coordinates must lie in ``[0, 2**17)``. The check has no
    synchronisation of its own: it rides on the one the ``unique`` makes anyway (the host
    reads the number of voxels). When a coordinate is out of range, every point gets a key of
    its own and ``c + 1`` keys that no valid batch holds are added, ``c`` the first bad cloud:
    the count then exceeds the number of points, which a valid batch's never does.

    Args:
        coors (Tensor): Integer cell of every point, non-negative, shape (N, 3).
        batch (Tensor): Cloud index of every point, shape (N,).
        files (Sequence[str], optional): The clouds' files, named in the error.

    Returns:
        tuple[Tensor]: The unique (cloud, x, y, z) (M, 4) int64, the point-to-voxel map
        (N,) int64 (an index into the batch's voxels) and, for each voxel, the index of its
        first point in the batch (M,) int64.

    Raises:
        ValueError: When a coordinate is out of range (points far outside the expected range,
            or not finite), naming the first such cloud and its file.
    """
    limit = 1 << _AXIS_BITS
    n = coors.shape[0]
    key = batch.long()
    for axis in range(3):
        key = (key << _AXIS_BITS) | coors[:, axis].long()
    if n:
        key = _flag_out_of_range(key, coors, batch, limit, len(files) if files else 1)
    uniq, point2voxel = torch.unique(key, sorted=True, return_inverse=True)
    if uniq.shape[0] > n:  # known from the unique's own synchronisation
        bad = uniq.shape[0] - n - 1
        where = f'cloud {bad} ({files[bad]})' if files else 'a cloud of the batch'
        raise ValueError(f'{where} has a voxel coordinate {limit} or more cells from the '
                         "cloud's smallest one: points far outside the expected range, or not "
                         'finite')
    point2voxel = point2voxel[:n]
    mask = limit - 1
    voxel = torch.stack([uniq >> (3 * _AXIS_BITS)] + [
        (uniq >> (_AXIS_BITS * (2 - axis))) & mask for axis in range(3)], dim=1)
    first = torch.full((uniq.shape[0], ), n, dtype=torch.long, device=coors.device)
    first = first.scatter_reduce(0, point2voxel, torch.arange(n, device=coors.device), 'amin')
    return voxel, point2voxel, first


def _flag_out_of_range(key: Tensor, coors: Tensor, batch: Tensor, limit: int,
                       num_clouds: int) -> Tensor:
    """The N keys and ``num_clouds`` more, changed on the device (no synchronisation) so that
    their unique count tells whether a coordinate is out of range (see
    :func:`unique_voxels`). Valid: the added keys repeat the first one, the count stays at
    most N. Out of range: the N keys are made distinct and ``c + 1`` negative keys are added
    (``c``: the first bad cloud, at most ``num_clouds - 1``), the count is ``N + c + 1``."""
    n = key.shape[0]
    bad_point = ((coors < 0) | (coors >= limit)).any(1)
    any_bad = bad_point.any()
    first_bad = batch.long().index_select(0, bad_point.long().argmax().view(1))
    first_bad = first_bad.clamp(0, num_clouds - 1)
    key = torch.where(any_bad, torch.arange(n, device=key.device), key)
    slots = torch.arange(num_clouds, device=key.device)
    added = torch.where(any_bad & (slots <= first_bad), -1 - slots, key[0])  # else a repeat
    return torch.cat([key, added])


def batch_of_points(points: List[Tensor]) -> Tuple[Tensor, Tensor, List[int]]:
    """The clouds concatenated, the cloud index of every point and the clouds' sizes (host
    ints, from the shapes: no synchronisation)."""
    sizes = [int(p.shape[0]) for p in points]
    cat = torch.cat(points)
    batch = torch.repeat_interleave(torch.arange(len(points), device=cat.device),
                                    host_to_device(sizes, cat.device, torch.long),
                                    output_size=cat.shape[0])
    return cat, batch, sizes


def _files(data_samples: SampleList) -> List[str]:
    """The lidar file of every sample (for error messages)."""
    return [str(s.metainfo.get('lidar_path', f'sample {i}')) for i, s in enumerate(data_samples)]


def shift_to_zero(coors: Tensor, batch: Tensor, num_clouds: int) -> Tensor:
    """Shift each cloud's cells so that its smallest cell on every axis is 0."""
    low = coors.new_full((num_clouds, coors.shape[1]), torch.iinfo(coors.dtype).max)
    low = low.scatter_reduce(0, batch[:, None].expand_as(coors), coors, 'amin')
    return coors - low[batch]


@MODELS.register_module()
class PointVoxelDataPreprocessor(Det3DDataPreprocessor):
    """``Det3DDataPreprocessor`` whose sparse voxelizations run on any device.

    mmdet3d's ``voxel_type='minkunet'`` calls ``.cuda()``, and its ``'cylindrical'`` one needs
    point labels in training. This subclass re-implements both with torch ops on the points'
    device, for the whole batch at once (one ``unique`` over (cloud, cell) keys, no loop over
    the clouds), and returns ``voxels['point2voxel']`` (sum N_i,), the batch index of every
    point's voxel, so that per-voxel features are read back per point with one gather. Each
    sample also gets ``point2voxel_map`` (N_i,), an index into its own voxels, as mmdet3d's
    segmentors read it. Every other voxel type and the image path are mmdet3d's (the
    ``bgr_to_rgb`` swap is a ``flip`` here, with no index to copy to the device). For
    pretraining batches it also moves the batch's point-pixel pairs to the device
    (``inputs['pairs']``, see :func:`projects.img2lidar.datasets.collate_image_lidar`).

    Voxel types:

    - ``'minkunet'`` (cartesian, for MinkUNet): ``round(xyz / voxel_size)`` shifted to start at
      0 per cloud, one voxel per occupied cell, its input feature being the first point's
      (mmdet3d's semantics). ``voxels`` (M, C), ``coors`` (M, 4) with the batch index first
      (``batch_first=True``) or last.
    - ``'minkunet_cylindrical'`` (SLidR's voxels for MinkUNet): the cells
      ``floor(rho / s_rho)``, ``floor(phi_degrees / s_phi)``, ``floor(z / s_z)`` with
      ``voxel_layer.voxel_size = [s_rho (m), s_phi (degrees), s_z (m)]`` (SLidR: 0.1, 1, 0.1),
      computed in float64, shifted to start at 0 per cloud; otherwise as ``'minkunet'``.
    - ``'cylindrical'`` (for Cylinder3D): per point ``(rho, phi, z, x, y, rest...)`` clamped to
      ``point_cloud_range`` and floored by ``voxel_size``; ``voxels`` (N, C + 2) and ``coors``
      (N, 4) are per point (the voxel encoder scatters them).  With ``grid_shape`` given,
      mmdet3d sets ``voxel_size = range / (grid_shape - 1)``, so clamped points stay inside.

    When ``gt_pts_seg.pts_semantic_mask`` is present, ``gt_pts_seg.voxel_semantic_mask`` is set
    (first point's label for 'minkunet', majority label for 'cylindrical', as mmdet3d does).

    Args:
        feature_columns (Sequence[int], optional): Point columns that form the voxel features
            of the sparse voxel types (e.g. ``[3]``: the intensity only, as SLidR feeds its
            network); all columns when None (mmdet3d's behaviour). Coordinates are always read
            from columns 0-2.
        **kwargs: See ``Det3DDataPreprocessor``.
    """

    def __init__(self, feature_columns: Optional[Sequence[int]] = None, **kwargs) -> None:
        kwargs.setdefault('non_blocking', True)  # pinned batches copy while the host goes on
        super().__init__(**kwargs)
        self.feature_columns = None if feature_columns is None else list(feature_columns)
        self._training = False
        # the channel swap is done here (see collate_data), not by mmdet3d
        self._flip_channels, self._channel_conversion = self._channel_conversion, False

    def collate_data(self, data: dict) -> dict:
        """mmdet3d's, except that the images' channel order is swapped with ``flip`` on the
        device: mmdet3d indexes the channels with a Python list, whose copy to the device
        blocks the host in every step."""
        if not self._flip_channels:
            return super().collate_data(data)
        data = self.cast_data(data)
        img = data['inputs'].get('img')
        if isinstance(img, Tensor):
            data['inputs']['img'] = img.flip(-3)
        elif img is not None:
            data['inputs']['img'] = [im.flip(-3) for im in img]
        return super().collate_data(data)  # its cast_data has nothing left to move

    def simple_process(self, data: dict, training: bool = False) -> dict:
        """mmdet3d's processing (images to float RGB, voxelization), on a batch made by
        :func:`collate_image_lidar` (or finished here when it was ``pseudo_collate``-d), with
        the batch's pairs (``inputs['pairs']``) moved to the device alongside."""
        from ...datasets.collate_image_lidar import batch_image_lidar, is_per_sample
        if is_per_sample(data['inputs']) and 'pairs' in data['inputs']:
            data = batch_image_lidar(data)
        pairs = data['inputs'].pop('pairs', None)
        self._training = training
        out = super().simple_process(data, training)
        if pairs is not None:
            out['inputs']['pairs'] = self.cast_data(pairs)
        return out

    def voxelize(self, points: List[Tensor], data_samples: SampleList) -> Dict[str, Tensor]:
        """Voxelize a batch of clouds.

        Args:
            points (list[Tensor]): Clouds, each (N_i, C).
            data_samples (list[:obj:`Det3DDataSample`]): One per cloud; gets
                ``point2voxel_map`` (N_i,) and, with labels, ``voxel_semantic_mask``.

        Returns:
            dict: ``voxels``, ``coors`` and, per cloud, ``num_voxels`` (B,) int64.
        """
        if self.voxel_type in ('minkunet', 'minkunet_cylindrical'):
            return self._voxelize_sparse(points, data_samples)
        if self.voxel_type == 'cylindrical':
            return self._voxelize_cylindrical(points, data_samples)
        return super().voxelize(points, data_samples)

    def _sparse_coors(self, xyz: Tensor) -> Tensor:
        """Integer cells of the sparse voxel types, (N, 3), not yet shifted."""
        voxel_size = self.voxel_layer.voxel_size
        if self.voxel_type == 'minkunet':
            return torch.round(xyz / host_to_device(voxel_size, xyz.device, xyz.dtype)).long()
        xyz = xyz.double()  # float64: cell edges do not depend on float32 rounding
        rho = torch.sqrt(xyz[:, 0]**2 + xyz[:, 1]**2)
        phi = torch.atan2(xyz[:, 1], xyz[:, 0]) * (180.0 / math.pi)
        cyl = torch.stack((rho, phi, xyz[:, 2]), dim=1)
        return torch.floor(cyl / host_to_device(voxel_size, cyl.device, cyl.dtype)).long()

    def _set_point_maps(self, data_samples: SampleList, point2voxel: Tensor, batch: Tensor,
                        voxel_batch: Tensor, sizes: List[int]) -> Tensor:
        """Give every sample its ``point2voxel_map`` (an index into its own voxels, as mmdet3d's
        segmentors read it) and return the voxels of each cloud, (B,)."""
        num_voxels = torch.zeros(len(sizes), dtype=torch.long, device=voxel_batch.device)
        num_voxels.scatter_add_(0, voxel_batch, torch.ones_like(voxel_batch))
        first_voxel = torch.cumsum(num_voxels, 0) - num_voxels
        local = point2voxel - first_voxel[batch]
        for sample, part in zip(data_samples, torch.split(local, sizes)):
            sample.point2voxel_map = part
        return num_voxels

    def _voxelize_sparse(self, points: List[Tensor],
                         data_samples: SampleList) -> Dict[str, Tensor]:
        if self.max_voxels is not None:
            raise ValueError('PointVoxelDataPreprocessor keeps every voxel so that each point '
                             'has a feature; set max_voxels=None')
        cat, batch, sizes = batch_of_points(points)
        coors = shift_to_zero(self._sparse_coors(cat[:, :3]), batch, len(points))
        voxel, point2voxel, first = unique_voxels(coors, batch, _files(data_samples))
        voxel_batch = voxel[:, 0]
        num_voxels = self._set_point_maps(data_samples, point2voxel, batch, voxel_batch, sizes)
        coors_out = voxel if self.batch_first else torch.cat([voxel[:, 1:], voxel[:, :1]], 1)
        self._set_segmentor_fields(data_samples, first, voxel_batch, num_voxels)
        feats = cat[first]
        return dict(
            voxels=feats if self.feature_columns is None else feats[:, self.feature_columns],
            coors=coors_out.int(),
            num_voxels=num_voxels,
            point2voxel=point2voxel)

    def _set_segmentor_fields(self, data_samples: SampleList, first: Tensor,
                              voxel_batch: Tensor, num_voxels: Tensor) -> None:
        """What mmdet3d's MinkUNet segmentor reads per sample: ``batch_idx`` (the cloud of
        each voxel, for its ``predict``) and, with point labels, ``gt_pts_seg.
        voxel_semantic_mask`` (the first point's label of every voxel). They cost one
        synchronisation (the per-cloud voxel counts), so a training batch without labels (a
        pretraining step) skips them."""
        gts = [s.get('gt_pts_seg', None) for s in data_samples]
        labelled = bool(gts) and all(g is not None and 'pts_semantic_mask' in g for g in gts)
        if self._training and not labelled:
            return
        counts = num_voxels.tolist()
        for sample, part in zip(data_samples, torch.split(voxel_batch, counts)):
            sample.batch_idx = part
        if labelled:
            labels = torch.cat([g.pts_semantic_mask for g in gts])[first]
            for gt, part in zip(gts, torch.split(labels, counts)):
                gt.voxel_semantic_mask = part

    def _voxelize_cylindrical(self, points: List[Tensor],
                              data_samples: SampleList) -> Dict[str, Tensor]:
        pcr = self.voxel_layer.point_cloud_range
        cat, batch, sizes = batch_of_points(points)
        rho = torch.sqrt(cat[:, 0]**2 + cat[:, 1]**2)
        phi = torch.atan2(cat[:, 1], cat[:, 0])
        polar = torch.stack((rho, phi, cat[:, 2]), dim=-1)
        min_bound = host_to_device(pcr[:3], polar.device, polar.dtype)
        max_bound = host_to_device(pcr[3:], polar.device, polar.dtype)
        clamped = torch.clamp(polar, min_bound, max_bound)
        res_coors = torch.floor((clamped - min_bound) / host_to_device(
            self.voxel_layer.voxel_size, polar.device, polar.dtype)).long()
        voxel, point2voxel, _ = unique_voxels(res_coors, batch, _files(data_samples))
        num_voxels = self._set_point_maps(data_samples, point2voxel, batch, voxel[:, 0], sizes)
        gts = [s.get('gt_pts_seg', None) for s in data_samples]
        if gts and all(g is not None and 'pts_semantic_mask' in g for g in gts):
            labels = torch.cat([g.pts_semantic_mask for g in gts]).long()
            votes = torch.zeros(voxel.shape[0], int(labels.max()) + 1, device=labels.device)
            votes.index_put_((point2voxel, labels), torch.ones_like(labels, dtype=votes.dtype),
                             accumulate=True)
            majority = votes.argmax(dim=-1)
            for gt, part in zip(gts, torch.split(majority, num_voxels.tolist())):
                gt.voxel_semantic_mask = part
        return dict(
            voxels=torch.cat((polar, cat[:, :2], cat[:, 3:]), dim=-1),
            coors=torch.cat([batch[:, None], res_coors], 1).int(),
            num_voxels=num_voxels,
            point2voxel=point2voxel)
