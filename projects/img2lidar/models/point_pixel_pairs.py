"""The point-pixel pairs of a batch, with batch-wide indices, and their pair-level features.

This is the one place where ids become unique across the batch: every sample carries its
pairs with indices into its own points and images and its superpixel maps with per-image ids
``0..n_c-1`` (:class:`PackImageLidarInputs`); :func:`collate_pairs` shifts point indices by the
points of the previous samples, image indices by their images, and superpixel ids by the
superpixel counts of all previous images of the batch.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from mmdet3d.structures.det3d_data_sample import SampleList
from torch import Tensor

from .distillation_features import PairFeatures


@dataclass
class BatchPairs:
    """Point-pixel pairs and superpixel maps of a batch, with batch-wide indices.

    Attributes:
        point (Tensor): Batch index of each pair's point, shape (P,).
        image (Tensor): Batch index of each pair's image, shape (P,).
        pixel (Tensor): The pair's pixel (x, y), shape (P, 2).
        superpixel (Tensor): Batch-unique superpixel id under the pixel, -1 for an ignored
            pixel or when the samples carry no maps, shape (P,).
        superpixels (Tensor | None): Maps with batch-unique ids (-1 ignored), shape (I, H, W).
        pair_offsets (Tensor): Pair rows of each sample, shape (B + 1,).
        id_offsets (Tensor): Superpixel id range of each sample, shape (B + 1,).
        num_points (int): Points of the batch.
        num_images (int): Images of the batch.
    """
    point: Tensor
    image: Tensor
    pixel: Tensor
    superpixel: Tensor
    superpixels: Optional[Tensor]
    pair_offsets: Tensor
    id_offsets: Tensor
    num_points: int
    num_images: int

    @property
    def num_ids(self) -> int:
        """Size of the superpixel id range of the batch."""
        return int(self.id_offsets[-1])


def _offsets(sizes: List[int], device) -> Tensor:
    return torch.tensor([0] + sizes, device=device).cumsum(0)


def collate_pairs(points: Sequence[Tensor], data_samples: SampleList) -> BatchPairs:
    """Concatenate the pairs and maps of the samples with batch-wide indices.

    Args:
        points (Sequence[Tensor]): The clouds, (N_b, C) each.
        data_samples (list[:obj:`Det3DDataSample`]): With ``pairs`` (``point``, ``cam``,
            ``pixel`` and optionally ``superpixel``) and, with maps, ``superpixels``
            (N_cam, H, W) and the metainfo ``superpixel_sizes`` (one count per image).

    Returns:
        BatchPairs: The batch's pairs.
    """
    device = points[0].device
    with_maps = all('superpixels' in s for s in data_samples)
    point, image, pixel, superpixel, maps = [], [], [], [], []
    point_base = image_base = id_base = 0
    pair_sizes, id_sizes = [], []
    for pts, sample in zip(points, data_samples):
        pairs = sample.pairs
        point.append(pairs.point + point_base)
        image.append(pairs.cam + image_base)
        pixel.append(pairs.pixel)
        pair_sizes.append(int(pairs.point.shape[0]))
        n_img = len(sample.metainfo['cam_names'])
        if with_maps:
            sizes = [int(n) for n in sample.metainfo['superpixel_sizes']]
            image_ids = (_offsets(sizes, device)[:-1] + id_base)  # first id of each image
            sp = sample.superpixels
            maps.append(torch.where(sp >= 0, sp + image_ids[:, None, None], sp))
            pair_sp = pairs.superpixel
            superpixel.append(torch.where(pair_sp >= 0, pair_sp + image_ids[pairs.cam], pair_sp))
            id_sizes.append(sum(sizes))
            id_base += sum(sizes)
        else:
            superpixel.append(torch.full_like(pairs.point, -1))
            id_sizes.append(0)
        point_base += int(pts.shape[0])
        image_base += n_img
    return BatchPairs(
        point=torch.cat(point), image=torch.cat(image), pixel=torch.cat(pixel),
        superpixel=torch.cat(superpixel), superpixels=torch.cat(maps) if with_maps else None,
        pair_offsets=_offsets(pair_sizes, device), id_offsets=_offsets(id_sizes, device),
        num_points=point_base, num_images=image_base)


def pair_features(point_feats: Tensor, pixel_feats: Tensor, pairs: BatchPairs) -> PairFeatures:
    """The student feature of each pair's point and the 2D-head feature at its pixel.

    Args:
        point_feats (Tensor): Student features of all points of the batch, (N, D).
        pixel_feats (Tensor): 2D-head features of all images of the batch, (I, D, H, W).
        pairs (BatchPairs): The batch's pairs.

    Returns:
        PairFeatures: One row per pair.
    """
    k = point_feats.index_select(0, pairs.point)
    q = pixel_feats[pairs.image, :, pairs.pixel[:, 1], pairs.pixel[:, 0]]
    return PairFeatures(k=k, q=q, point=pairs.point, image=pairs.image, pixel=pairs.pixel,
                        superpixel=pairs.superpixel, sample_offsets=pairs.pair_offsets,
                        num_points=pairs.num_points, num_images=pairs.num_images,
                        num_ids=pairs.num_ids)
