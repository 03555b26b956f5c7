"""What the loss heads of one training step may consume: one typed structure.

:class:`ImageLidarDistiller` builds one :class:`DistillationFeatures` per step, with only the
levels that its configured losses declare (:attr:`DistillationLoss.levels`) and the pooled
teacher features only when a loss reads them. With ``gather_features=True`` every field of
every level is gathered across processes (:meth:`DistillationFeatures.gather`), indices and ids
shifted so that they stay unique in the global batch: a loss sees exactly what one process
holding the whole global batch would see.

Levels:

- ``superpixel`` (:class:`PooledFeatures`): one row per superpixel that holds at least one
  point-pixel pair (docs/methods.md section 3), sorted by batch-unique id; the rows of sample ``b``
  are ``sample_offsets[b]:sample_offsets[b + 1]``.
- ``pair`` (:class:`PairFeatures`): one row per point-pixel pair; the rows of sample ``b``
  are ``sample_offsets[b]:sample_offsets[b + 1]``.
"""
from dataclasses import dataclass, fields, replace
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .gather_features import gather_bases, gather_rows

LEVELS = ('superpixel', 'pair')


def _global_offsets(local_offsets: Tensor, row_base: int, last: bool) -> Tensor:
    """This process's sample offsets in the global rows (its final offset only on the last
    rank, so that concatenating every rank's part gives (B_global + 1,))."""
    out = local_offsets + row_base
    return out if last else out[:-1]


@dataclass
class PooledFeatures:
    """Superpixel level: pooled features of the M superpixels that hold a pair.

    Attributes:
        k (Tensor): Mean normalised student feature of the pairs in s, shape (M, D).
        q (Tensor): Mean normalised 2D-head feature of the pixels of s, shape (M, D).
        e (Tensor | None): Mean raw teacher feature over s at the teacher's resolution (zero
            when no teacher cell is pooled into s, which only the 'nearest' pooling allows),
            shape (M, E); None when no loss reads it.
        ids (Tensor): Batch-unique superpixel id of each row, increasing, shape (M,).
        num_pairs (Tensor): Pairs pooled into each row, shape (M,).
        sample_offsets (Tensor): Row ranges of the samples, shape (B + 1,).
        num_ids (int): Size of the id range of the batch (sum of the id ranges of its
            images, including superpixels without pairs).
        num_without_e (Tensor | None): How many rows got no teacher cell (``e`` all zero;
            only with ``teacher_pooling='nearest'``), a 0-d tensor of this process's rows;
            None when ``e`` is not pooled.
        local_rows (tuple[int, int] | None): After a gather, the rows that came from this
            process (its anchors in the local-anchor form of the contrastive losses); None
            when nothing was gathered.
    """
    k: Tensor
    q: Tensor
    e: Optional[Tensor]
    ids: Tensor
    num_pairs: Tensor
    sample_offsets: Tensor
    num_ids: int
    num_without_e: Optional[Tensor] = None
    local_rows: Optional[Tuple[int, int]] = None

    def sample_rows(self, b: int) -> slice:
        """The rows of sample ``b``."""
        return slice(int(self.sample_offsets[b]), int(self.sample_offsets[b + 1]))

    def gather(self) -> 'PooledFeatures':
        """Every field of every process, ids shifted by the id ranges of the previous ranks."""
        (row_base, id_base), (_, num_ids), last = gather_bases(
            [self.k.shape[0], self.num_ids], self.k.device)
        return PooledFeatures(
            k=gather_rows(self.k), q=gather_rows(self.q),
            e=None if self.e is None else gather_rows(self.e),
            ids=gather_rows(self.ids + id_base), num_pairs=gather_rows(self.num_pairs),
            sample_offsets=gather_rows(_global_offsets(self.sample_offsets, row_base, last)),
            num_ids=num_ids, num_without_e=self.num_without_e,
            local_rows=(row_base, row_base + self.k.shape[0]))


@dataclass
class PairFeatures:
    """Pair level: one row per point-pixel pair.

    Attributes:
        k (Tensor): Student feature of each pair's point, shape (P, D).
        q (Tensor): 2D-head feature at each pair's pixel, shape (P, D).
        point (Tensor): Batch index of the pair's point, shape (P,).
        image (Tensor): Batch index of the pair's image, shape (P,).
        pixel (Tensor): The pair's pixel (x, y) in its image, shape (P, 2).
        superpixel (Tensor): Batch-unique superpixel id under the pixel (-1: an ignored pixel
            or no superpixel map), shape (P,).
        sample_offsets (Tensor): Row ranges of the samples, shape (B + 1,).
        num_points (int): Points of the batch (range of ``point``).
        num_images (int): Images of the batch (range of ``image``).
        num_ids (int): Size of the superpixel id range of the batch.
        local_rows (tuple[int, int] | None): After a gather, the rows that came from this
            process; None when nothing was gathered.
    """
    k: Tensor
    q: Tensor
    point: Tensor
    image: Tensor
    pixel: Tensor
    superpixel: Tensor
    sample_offsets: Tensor
    num_points: int
    num_images: int
    num_ids: int
    local_rows: Optional[Tuple[int, int]] = None

    def sample_rows(self, b: int) -> slice:
        """The rows of sample ``b``."""
        return slice(int(self.sample_offsets[b]), int(self.sample_offsets[b + 1]))

    def gather(self) -> 'PairFeatures':
        """Every field of every process, indices shifted by the previous ranks' ranges."""
        base, total, last = gather_bases(
            [self.k.shape[0], self.num_points, self.num_images, self.num_ids], self.k.device)
        sp = torch.where(self.superpixel >= 0, self.superpixel + base[3], self.superpixel)
        return PairFeatures(
            k=gather_rows(self.k), q=gather_rows(self.q), point=gather_rows(self.point + base[1]),
            image=gather_rows(self.image + base[2]), pixel=gather_rows(self.pixel),
            superpixel=gather_rows(sp),
            sample_offsets=gather_rows(_global_offsets(self.sample_offsets, base[0], last)),
            num_points=total[1], num_images=total[2], num_ids=total[3],
            local_rows=(base[0], base[0] + self.k.shape[0]))


@dataclass
class DistillationFeatures:
    """Everything the loss heads of one step may read.

    Attributes:
        superpixel (PooledFeatures | None): Superpixel level, when a loss consumes it.
        pair (PairFeatures | None): Pair level, when a loss consumes it.
        gathered (bool): Whether the fields span every process's batch.
    """
    superpixel: Optional[PooledFeatures] = None
    pair: Optional[PairFeatures] = None
    gathered: bool = False

    def level(self, name: str):
        """The features of level ``name`` (``'superpixel'`` or ``'pair'``)."""
        if name not in LEVELS:
            raise KeyError(f'unknown feature level {name!r}; levels: {LEVELS}')
        feats = getattr(self, name)
        if feats is None:
            raise KeyError(f'the {name!r} level was not built for this step (no configured '
                           'loss declares it)')
        return feats

    @property
    def levels(self) -> List[str]:
        """The levels present."""
        return [f.name for f in fields(self) if f.name in LEVELS and getattr(self, f.name)
                is not None]

    def gather(self) -> 'DistillationFeatures':
        """All fields of all levels gathered across processes (a no-op in one process)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
                or torch.distributed.get_world_size() == 1:
            return replace(self, gathered=True)
        return DistillationFeatures(
            superpixel=None if self.superpixel is None else self.superpixel.gather(),
            pair=None if self.pair is None else self.pair.gather(), gathered=True)
