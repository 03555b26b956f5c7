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
from itertools import accumulate
from typing import Iterable, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .gather_features import RankCounts, exchange_counts, gather_fields, gather_rows
from .host_to_device import host_to_device

LEVELS = ('superpixel', 'pair')


def _global_offsets(local_offsets: Tensor, row_base: int, last: bool) -> Tensor:
    """This process's sample offsets in the global rows (its final offset only on the last
    rank, so that concatenating every rank's part gives (B_global + 1,))."""
    out = local_offsets + row_base
    return out if last else out[:-1]


def _gather_offsets(local_offsets: Tensor, counts: RankCounts, rows: int, samples: int) -> Tensor:
    """Every process's sample offsets in the global rows, (B_global + 1,).

    Args:
        local_offsets (Tensor): This process's, (B + 1,).
        counts (RankCounts): The step's counts.
        rows (int): The column of ``counts`` that holds the rows.
        samples (int): The column that holds the samples B.
    """
    sizes = [b + (r == counts.world_size - 1) for r, b in enumerate(counts.sizes(samples))]
    return gather_rows(_global_offsets(local_offsets, counts.base(rows), counts.is_last), sizes)


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

    def counts(self) -> List[int]:
        """The sizes every process tells the others before a gather: rows, id range,
        samples."""
        return [self.k.shape[0], self.num_ids, self.sample_offsets.shape[0] - 1]

    def gather(self, counts: Optional[RankCounts] = None) -> 'PooledFeatures':
        """Every field of every process, ids shifted by the id ranges of the previous ranks.

        Args:
            counts (RankCounts, optional): Every process's :meth:`counts` (from the step's one
                exchange); exchanged here when None.
        """
        if counts is None:
            counts = exchange_counts(self.counts(), self.k.device)
        rows = counts.sizes(0)
        out = gather_fields(dict(k=self.k, q=self.q, e=self.e,
                                 index=torch.stack([self.ids.long() + counts.base(1),
                                                    self.num_pairs.long()], 1)), rows)
        row_base = counts.base(0)
        return PooledFeatures(
            k=out['k'], q=out['q'], e=out['e'], ids=out['index'][:, 0],
            num_pairs=out['index'][:, 1],
            sample_offsets=_gather_offsets(self.sample_offsets, counts, 0, 2),
            num_ids=counts.total(1), num_without_e=self.num_without_e,
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
        rank_rows (tuple[int, ...] | None): On a level kept local in a gathered step
            (:meth:`keep_local`), the rows of every process; None otherwise.
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
    rank_rows: Optional[Tuple[int, ...]] = None

    def sample_rows(self, b: int) -> slice:
        """The rows of sample ``b``."""
        return slice(int(self.sample_offsets[b]), int(self.sample_offsets[b + 1]))

    def counts(self) -> List[int]:
        """The sizes every process tells the others before a gather: rows, points, images,
        id range, samples."""
        return [self.k.shape[0], self.num_points, self.num_images, self.num_ids,
                self.sample_offsets.shape[0] - 1]

    def gather(self, counts: Optional[RankCounts] = None) -> 'PairFeatures':
        """Every field of every process, indices shifted by the previous ranks' ranges.

        Args:
            counts (RankCounts, optional): Every process's :meth:`counts` (from the step's one
                exchange); exchanged here when None.
        """
        if counts is None:
            counts = exchange_counts(self.counts(), self.k.device)
        sp = self.superpixel.long()
        sp = torch.where(sp >= 0, sp + counts.base(3), sp)
        index = torch.cat([(self.point.long() + counts.base(1))[:, None],
                           (self.image.long() + counts.base(2))[:, None], self.pixel.long(),
                           sp[:, None]], 1)
        out = gather_fields(dict(k=self.k, q=self.q, index=index), counts.sizes(0))
        index = out['index']
        base = counts.base(0)
        return PairFeatures(
            k=out['k'], q=out['q'], point=index[:, 0], image=index[:, 1], pixel=index[:, 2:4],
            superpixel=index[:, 4], sample_offsets=_gather_offsets(self.sample_offsets, counts,
                                                                   0, 4),
            num_points=counts.total(1), num_images=counts.total(2), num_ids=counts.total(3),
            local_rows=(base, base + self.k.shape[0]))

    def keep_local(self, counts: RankCounts) -> 'PairFeatures':
        """This level as it is, with every process's row count (:attr:`rank_rows`), for a
        loss that gathers only the rows it draws (:meth:`gather_at`)."""
        base = counts.base(0)
        return replace(self, local_rows=(base, base + self.k.shape[0]),
                       rank_rows=tuple(counts.sizes(0)))

    def gather_at(self, index: Tensor) -> Tuple[Tensor, Tensor, Tuple[int, int]]:
        """``k`` and ``q`` of the rows ``index`` of the global batch, gathered from the
        processes that hold them: each process sends only its own drawn rows.

        Every process must call it with the same ``index`` (a draw from a generator that
        every process seeds alike), on a level kept local (:meth:`keep_local`).

        Args:
            index (Tensor): Increasing global row indices, on the host, (R,) int64.

        Returns:
            tuple: ``k`` and ``q`` of those rows, (R, D) each, in the order of ``index``, and
            the range of them that are this process's rows.
        """
        if self.rank_rows is None:
            raise ValueError('gather_at needs a level kept local with every process\'s row '
                             'count (DistillationFeatures.gather(local_levels=...))')
        bounds = list(accumulate(self.rank_rows, initial=0))
        rank = dist.get_rank() if len(self.rank_rows) > 1 else 0
        # host work only: the draw and the counts are on the host
        cuts = torch.searchsorted(index, torch.tensor(bounds)).tolist()
        lo, hi = cuts[rank], cuts[rank + 1]
        local = host_to_device(index[lo:hi] - bounds[rank], self.k.device)
        out = gather_fields(dict(k=self.k.index_select(0, local),
                                 q=self.q.index_select(0, local)),
                            [b - a for a, b in zip(cuts[:-1], cuts[1:])])
        return out['k'], out['q'], (lo, hi)


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

    def gather(self, local_levels: Iterable[str] = ()) -> 'DistillationFeatures':
        """All fields of all levels gathered across processes (a no-op in one process), after
        one exchange of every level's sizes.

        Args:
            local_levels (Iterable[str]): Levels to keep local, with every process's row
                count, because each of their losses gathers only the rows it draws
                (``'pair'`` for PPKT; :meth:`PairFeatures.gather_at`).
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return replace(self, gathered=True)
        local_levels = tuple(local_levels)
        if 'superpixel' in local_levels:
            raise ValueError('only the pair level can stay local (its losses draw their rows)')
        present = [getattr(self, name) for name in LEVELS if getattr(self, name) is not None]
        sizes = [f.counts() for f in present]
        counts = exchange_counts([v for s in sizes for v in s], present[0].k.device) \
            if present else None
        split, start = {}, 0
        for name in LEVELS:
            feats = getattr(self, name)
            if feats is not None:
                n = len(feats.counts())
                split[name] = counts.columns(start, start + n)
                start += n
        sp, pair = self.superpixel, self.pair
        return DistillationFeatures(
            superpixel=None if sp is None else sp.gather(split['superpixel']),
            pair=None if pair is None else pair.keep_local(split['pair'])
            if 'pair' in local_levels else pair.gather(split['pair']), gathered=True)
