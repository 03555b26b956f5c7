"""The point-pixel pairs of a batch, with batch-wide indices, and their pair-level features.

A batch's pairs travel as one :class:`BatchPairs`: the data loader's collate function
(:func:`projects.img2lidar.datasets.collate_image_lidar`) concatenates the samples' pairs with
their point and image indices shifted by the previous samples' points and images, and stacks
the superpixel maps with per-image ids ``0..n_c-1``; the first batch-unique id of each image is
the sum of the id ranges of the images before it. Everything that depends on the tensors' values
(the batch-unique id under each pair's pixel, the maps with batch-unique ids) is computed here,
on the model's device, without a loop over samples or a host synchronisation.

The field names of :class:`BatchPairs` are the key layout of ``inputs['pairs']``; the collate
function builds the dict from this class, so the two cannot drift apart.
"""
from dataclasses import dataclass, fields
from typing import Optional

import torch
from torch import Tensor

from .distillation_features import PairFeatures
from .pixel_features import PixelFeatures


@dataclass
class BatchPairs:
    """Point-pixel pairs and superpixel maps of a batch, with batch-wide indices.

    Attributes:
        point (Tensor): Batch index of each pair's point, shape (P,) int32.
        image (Tensor): Batch index of each pair's image, shape (P,) int32.
        pixel (Tensor): The pair's pixel (x, y) in its (transformed) image, (P, 2) int32.
        pair_offsets (Tensor): Pair rows of each sample, shape (B + 1,) int64.
        image_offsets (Tensor): Images of each sample, shape (B + 1,) int64.
        superpixels (Tensor | None): Per-image superpixel maps with ids ``0..n_c-1`` (-1:
            ignored pixel), shape (I, H, W) int16 or int32; None without maps.
        image_id_offsets (Tensor | None): First batch-unique id of each image, and the id
            range of the batch last, shape (I + 1,) int64; None without maps.
        num_points (int): Points of the batch.
        num_images (int): Images of the batch.
        num_ids (int): Size of the superpixel id range of the batch (0 without maps).
        max_image_ids (int): The largest id range of one image (0 without maps).
    """
    point: Tensor
    image: Tensor
    pixel: Tensor
    pair_offsets: Tensor
    image_offsets: Tensor
    superpixels: Optional[Tensor]
    image_id_offsets: Optional[Tensor]
    num_points: int
    num_images: int
    num_ids: int
    max_image_ids: int

    @classmethod
    def keys(cls):
        """The keys of the ``inputs['pairs']`` dict."""
        return tuple(f.name for f in fields(cls))

    def as_dict(self) -> dict:
        """The ``inputs['pairs']`` dict (what the collate function returns)."""
        return {k: getattr(self, k) for k in self.keys()}

    @property
    def id_offsets(self) -> Tensor:
        """Superpixel id range of each sample, shape (B + 1,) int64."""
        if self.image_id_offsets is None:
            return torch.zeros_like(self.pair_offsets)
        return self.image_id_offsets[self.image_offsets]

    @property
    def superpixel(self) -> Tensor:
        """Batch-unique superpixel id under each pair's pixel, -1 for an ignored pixel or
        without maps, shape (P,) int64. It is read from the transformed map at the pair's
        final pixel, so every superpixel that holds a pair has at least that pixel."""
        if self.superpixels is None:
            return torch.full(self.point.shape, -1, dtype=torch.long, device=self.point.device)
        image = self.image.long()
        local = self.superpixels[image, self.pixel[:, 1].long(), self.pixel[:, 0].long()].long()
        return torch.where(local >= 0, local + self.image_id_offsets[image], -1)

    def id_map(self, start: int = 0, end: Optional[int] = None) -> Tensor:
        """The maps of images ``start:end`` (all by default) with batch-unique ids (-1
        ignored), shape (I', H, W) int64."""
        end = self.num_images if end is None else end
        local = self.superpixels[start:end].long()
        first = self.image_id_offsets[start:end].view(-1, 1, 1)
        return torch.where(local >= 0, local + first, -1)


def pair_features(point_feats: Tensor, pixel_feats: PixelFeatures,
                  pairs: BatchPairs) -> PairFeatures:
    """The student feature of each pair's point and the 2D-head feature at its pixel.

    Args:
        point_feats (Tensor): Student features of all points of the batch, (N, D).
        pixel_feats (PixelFeatures): The 2D head's features, sampled at the pairs' pixels
            only (no full-resolution map).
        pairs (BatchPairs): The batch's pairs.

    Returns:
        PairFeatures: One row per pair.
    """
    point = pairs.point.long()
    k = point_feats.index_select(0, point)
    q = pixel_feats.at(pairs.image, pairs.pixel[:, 1], pairs.pixel[:, 0])
    return PairFeatures(k=k, q=q, point=point, image=pairs.image.long(), pixel=pairs.pixel.long(),
                        superpixel=pairs.superpixel, sample_offsets=pairs.pair_offsets,
                        num_points=pairs.num_points, num_images=pairs.num_images,
                        num_ids=pairs.num_ids)
