"""Device-agnostic voxelization for sparse students and mmdet3d segmentors."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor
from mmdet3d.registry import MODELS
from mmdet3d.structures.det3d_data_sample import SampleList
from torch import Tensor
from torch.nn import functional as F


def unique_voxels(coors: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Unique voxels of one cloud, sorted lexicographically.

    Args:
        coors (Tensor): Integer voxel coordinates of the points, shape (N, 3).

    Returns:
        tuple[Tensor]: The unique coordinates (M, 3), the point-to-voxel map (N,) int64 and,
        for each voxel, the index of its first point in the cloud (M,) int64.
    """
    voxel_coors, point2voxel = torch.unique(coors, dim=0, sorted=True, return_inverse=True)
    n = coors.shape[0]
    first = torch.full((voxel_coors.shape[0], ), n, dtype=torch.long, device=coors.device)
    first = first.scatter_reduce(0, point2voxel, torch.arange(n, device=coors.device), 'amin')
    return voxel_coors, point2voxel, first


@MODELS.register_module()
class PointVoxelDataPreprocessor(Det3DDataPreprocessor):
    """``Det3DDataPreprocessor`` whose sparse voxelizations run on any device.

    mmdet3d's ``voxel_type='minkunet'`` calls ``.cuda()``, and its ``'cylindrical'`` one needs
    point labels in training. This subclass re-implements both with torch ops on the points'
    device, and always stores ``data_sample.point2voxel_map`` (N_points,) so that per-voxel
    features can be read back per point. Every other voxel type and the image path are
    mmdet3d's.

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
        super().__init__(**kwargs)
        self.feature_columns = None if feature_columns is None else list(feature_columns)

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
            return torch.round(xyz / xyz.new_tensor(voxel_size)).long()
        xyz = xyz.double()  # float64: cell edges do not depend on float32 rounding
        rho = torch.sqrt(xyz[:, 0]**2 + xyz[:, 1]**2)
        phi = torch.atan2(xyz[:, 1], xyz[:, 0]) * (180.0 / math.pi)
        cyl = torch.stack((rho, phi, xyz[:, 2]), dim=1)
        return torch.floor(cyl / cyl.new_tensor(voxel_size)).long()

    def _voxelize_sparse(self, points: List[Tensor],
                         data_samples: SampleList) -> Dict[str, Tensor]:
        if self.max_voxels is not None:
            raise ValueError('PointVoxelDataPreprocessor keeps every voxel so that each point '
                             'has a feature; set max_voxels=None')
        voxels, coors, num_voxels = [], [], []
        for i, (res, data_sample) in enumerate(zip(points, data_samples)):
            res_coors = self._sparse_coors(res[:, :3])
            res_coors -= res_coors.min(0)[0]
            voxel_coors, point2voxel, first = unique_voxels(res_coors)
            pad = (1, 0) if self.batch_first else (0, 1)
            voxel_coors = F.pad(voxel_coors, pad, mode='constant', value=i).int()
            data_sample.point2voxel_map = point2voxel
            data_sample.batch_idx = voxel_coors[:, 0 if self.batch_first else -1]
            gt = data_sample.get('gt_pts_seg', None)
            if gt is not None and 'pts_semantic_mask' in gt:
                gt.voxel_semantic_mask = gt.pts_semantic_mask[first]
            feats = res[first]
            voxels.append(feats if self.feature_columns is None else
                          feats[:, self.feature_columns])
            coors.append(voxel_coors)
            num_voxels.append(voxel_coors.shape[0])
        return dict(
            voxels=torch.cat(voxels),
            coors=torch.cat(coors),
            num_voxels=torch.tensor(num_voxels, device=points[0].device))

    def _voxelize_cylindrical(self, points: List[Tensor],
                              data_samples: SampleList) -> Dict[str, Tensor]:
        pcr = self.voxel_layer.point_cloud_range
        voxels, coors, num_voxels = [], [], []
        for i, (res, data_sample) in enumerate(zip(points, data_samples)):
            rho = torch.sqrt(res[:, 0]**2 + res[:, 1]**2)
            phi = torch.atan2(res[:, 1], res[:, 0])
            polar = torch.stack((rho, phi, res[:, 2]), dim=-1)
            min_bound = polar.new_tensor(pcr[:3])
            max_bound = polar.new_tensor(pcr[3:])
            clamped = torch.clamp(polar, min_bound, max_bound)
            res_coors = torch.floor(
                (clamped - min_bound) / polar.new_tensor(self.voxel_layer.voxel_size)).long()
            voxel_coors, point2voxel, _ = unique_voxels(res_coors)
            data_sample.point2voxel_map = point2voxel
            gt = data_sample.get('gt_pts_seg', None)
            if gt is not None and 'pts_semantic_mask' in gt:
                labels = gt.pts_semantic_mask.long()
                votes = torch.zeros(voxel_coors.shape[0], int(labels.max()) + 1,
                                    device=labels.device)
                votes.index_put_((point2voxel, labels), torch.ones_like(labels, dtype=votes.dtype),
                                 accumulate=True)
                gt.voxel_semantic_mask = votes.argmax(dim=-1)
            voxels.append(torch.cat((polar, res[:, :2], res[:, 3:]), dim=-1))
            coors.append(F.pad(res_coors, (1, 0), mode='constant', value=i).int())
            num_voxels.append(voxel_coors.shape[0])
        return dict(
            voxels=torch.cat(voxels),
            coors=torch.cat(coors),
            num_voxels=torch.tensor(num_voxels, device=points[0].device))
