"""Pooling point, pixel and teacher features over the superpixels that hold paired points.

One call pools a whole batch (docs/methods.md section 3), with every sum and count in float32
whatever the autocast dtype of the inputs, and no full-resolution copy of any feature map:

- the rows: the superpixels that hold a pair, in increasing batch-unique id
  (:func:`pooled_rows`); only they get a row, so everything below has the width of the
  regions present, whatever the range of the ids (a map holding ids {0, 4000} costs what one
  holding {0, 1} costs);
- ``k``: the mean student feature of the pairs of each superpixel (index_add over the pairs);
- ``q``: the mean 2D-head feature of its pixels, a scatter of every pixel's feature into its
  row, block by block from the head's low-resolution map (:meth:`PixelFeatures.pool`);
- ``e``: the mean raw teacher feature over the superpixel, at the teacher's resolution: a
  scatter of the pixels (or cells) into a per-image (pooled row x cell) weight matrix, whose
  product with the image's (cell x E) features gives the sums, a few images at a time
  (:func:`pool_teacher`). Two weightings (``teacher_pooling``):

  - ``'area'`` (the default): each cell weighs by the number of the superpixel's pixels it
    covers, i.e. the mean over the superpixel's pixels of the cell that holds each pixel's
    centre (the grid spans the image as the head's upsampling spans it); every superpixel that
    holds a pair gets a teacher feature;
  - ``'nearest'`` (ST-SLidR's code): the map is resized to the teacher's grid by PyTorch's
    'nearest' (cell i reads pixel floor(i * H / h), as torchvision's ``Resize(NEAREST)`` that
    ST-SLidR calls) and each cell counts for the one superpixel it reads; a superpixel that
    no cell reads (small ones, at coarse strides) gets ``e = 0``, which the tolerant and
    balanced losses drop. :attr:`PooledFeatures.num_without_e` counts them.

The only host synchronisation is one read in :func:`pooled_rows`: the number of rows M and the
first row of every image (a sort of the pairs' ids replaces ``torch.unique``, so that both come
in the one read that ``unique`` made for M alone).
"""
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from .distillation_features import PooledFeatures
from .losses.utils import autocast_off
from .pixel_features import PixelFeatures
from .point_pixel_pairs import BatchPairs

TEACHER_POOLING = ('area', 'nearest')


def nearest_resize_labels(labels: Tensor, size) -> Tensor:
    """Resize integer label maps by nearest neighbour without passing labels through a float.

    The source row and column of every output pixel are those of
    ``F.interpolate(mode='nearest')`` (obtained by interpolating the float row and column
    indices, which are exact below 2**24), and the labels are gathered as integers, so ids of
    any size survive unchanged.

    Args:
        labels (Tensor): Integer maps, shape (I, H, W).
        size (tuple[int, int]): Output (h, w).

    Returns:
        Tensor: Shape (I, h, w), same dtype as ``labels``.
    """
    h_in, w_in = labels.shape[-2:]
    h, w = int(size[0]), int(size[1])
    dev = labels.device
    rows = F.interpolate(torch.arange(h_in, dtype=torch.float32, device=dev)[None, None, :, None],
                         size=(h, 1), mode='nearest').reshape(h).long()
    cols = F.interpolate(torch.arange(w_in, dtype=torch.float32, device=dev)[None, None, None, :],
                         size=(1, w), mode='nearest').reshape(w).long()
    return labels.index_select(-2, rows).index_select(-1, cols)


def count(index: Tensor, size: int) -> Tensor:
    """How often each of ``0..size-1`` occurs in ``index``, (size,) int64. ``torch.bincount``
    would do, but on CUDA it reads the largest value back to the host; this never does."""
    return torch.zeros(size, dtype=torch.long, device=index.device).scatter_add_(
        0, index.reshape(-1).long(), torch.ones_like(index.reshape(-1), dtype=torch.long))


def _mean(sums: Tensor, counts: Tensor) -> Tensor:
    return sums / counts.clamp(min=1).to(sums.dtype)[:, None]


def _cell_of_pixels(size, grid, device) -> Tensor:
    """The teacher cell (flat over the grid) that holds the centre of each image pixel,
    shape (H, W).

    The h cells span the image's H pixels as the 2D head's upsampling spans them (cell c covers
    [c * H / h, (c + 1) * H / h)); pixel r covers [r, r + 1) and counts for the cell that holds
    its centre r + 1/2, floor((2r + 1) * h / (2H)) in integers: the cell that covers the larger
    part of it. With H a multiple of h (stride s) that is r // s.
    """
    big_h, big_w = size
    h, w = grid
    rows = (2 * torch.arange(big_h, device=device) + 1) * h // (2 * big_h)
    cols = (2 * torch.arange(big_w, device=device) + 1) * w // (2 * big_w)
    return rows[:, None] * w + cols[None, :]


@dataclass
class PooledRows:
    """Which superpixels are pooled, and the row of each pair and each id.

    Attributes:
        ids (Tensor): Batch-unique ids of the superpixels that hold a pair, increasing,
            shape (M,) int64; row r pools superpixel ``ids[r]``.
        pair_row (Tensor): Row of each pair, M for a pair on an ignored pixel, shape (P,).
        image_rows (list[int]): First row of every image and M last, (I + 1,) on the host:
            the rows of image i are ``image_rows[i]:image_rows[i + 1]``.
        first_row (Tensor): ``image_rows`` on the device, shape (I + 1,) int64.
    """
    ids: Tensor
    pair_row: Tensor
    image_rows: List[int]
    first_row: Tensor

    @property
    def num_rows(self) -> int:
        """M, the number of pooled superpixels (row M collects what is not pooled)."""
        return self.image_rows[-1]

    def rows_of(self, ids: Tensor) -> Tensor:
        """The row of each batch-unique id (M for an id that is not pooled or -1), any shape.

        A binary search in the M pooled ids: no table over the id range."""
        m = self.num_rows
        ids = ids.long()
        if m == 0:
            return torch.zeros_like(ids)
        pos = torch.searchsorted(self.ids, ids).clamp_(max=m - 1)
        return torch.where(self.ids[pos] == ids, pos, m)


def pooled_rows(pairs: BatchPairs) -> PooledRows:
    """The superpixels that hold a pair, the row of each pair and each image's first row.

    The pairs' ids (and one "no superpixel" id, ``num_ids``, so that the last group always
    exists) are sorted and numbered by group; the group of each image's first id is the
    image's first row. M and those rows are read in one host read, the step's only one in the
    pooling (``torch.unique`` would read M alone).

    Args:
        pairs (BatchPairs): The batch (its pairs' ids and each image's first id).

    Returns:
        PooledRows: The rows.
    """
    none = pairs.num_ids  # the id of "no superpixel" (ignored pixels), after every real id
    keys = pairs.superpixel
    keys = torch.cat([torch.where(keys >= 0, keys, none), keys.new_full((1, ), none)])
    sorted_keys, order = torch.sort(keys)
    new = torch.ones_like(sorted_keys, dtype=torch.bool)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group = new.cumsum(0) - 1  # row of each sorted id; "none" is the last group, row M
    # the first key >= an image's first id starts the group of that image's first row
    first_row = group[torch.searchsorted(sorted_keys, pairs.image_id_offsets)]
    image_rows = first_row.tolist()  # the one read: every image's first row, and M last
    m = image_rows[-1]
    ids = sorted_keys.new_empty((m + 1, )).scatter_(0, group, sorted_keys)[:m]
    pair_row = torch.empty_like(group).scatter_(0, order, group)[:-1]
    return PooledRows(ids=ids, pair_row=pair_row, image_rows=image_rows, first_row=first_row)


def _image_chunks(widths: List[int], per_row: int, chunk_elements: int):
    """Consecutive image ranges (start, end, width) whose (images x width x per_row) stays
    within ``chunk_elements`` (at least one image each), width the largest of the range."""
    start, n = 0, len(widths)
    while start < n:
        end, width = start + 1, widths[start]
        while end < n and (end + 1 - start) * max(width, widths[end]) * per_row <= \
                chunk_elements:
            width = max(width, widths[end])
            end += 1
        yield start, end, width
        start = end


def pool_teacher(teacher_feats: Tensor, pairs: BatchPairs, rows: PooledRows,
                 pixel_rows: Optional[Tensor] = None, mode: str = 'area',
                 chunk_elements: int = 1 << 24):
    """Sum the teacher features into the rows of their superpixels, a few images at a time.

    Per image, a scatter builds the (pooled row x cell) weight matrix (``'area'``: over the
    pixels, each into the cell that holds its centre; ``'nearest'``: over the cells, each
    into the row of the superpixel at the pixel that PyTorch's 'nearest' resize reads,
    floor(i * H / h)), whose product with the image's (cell x E) features gives the sums
    (``bmm``, the features in the teacher's own layout). The matrix has a row per pooled
    superpixel of the image plus one for the rest, so the cost is O(pixels) for the scatter
    and O(rows x cells x E) for the product, whatever the id range; no host synchronisation.

    Args:
        teacher_feats (Tensor): The teacher's maps, (I, E, h, w).
        pairs (BatchPairs): The batch (its per-image maps and first ids).
        rows (PooledRows): The pooled rows (:func:`pooled_rows`).
        pixel_rows (Tensor, optional): Row of every pixel, flat over (I, H, W) ('area'
            computes it when None).
        mode (str): ``'area'`` or ``'nearest'`` (see the module doc).
        chunk_elements (int): Bound on the elements of one chunk's weight matrix and product.

    Returns:
        tuple[Tensor]: Sums (M + 1, E) and weights (M + 1,), float32; row M holds what no
        pooled superpixel takes.
    """
    if mode not in TEACHER_POOLING:
        raise ValueError(f'teacher_pooling must be one of {TEACHER_POOLING}, got {mode!r}')
    n_img, e_dim, h, w = teacher_feats.shape
    m, cells, dev = rows.num_rows, h * w, teacher_feats.device
    sums = teacher_feats.new_zeros((m + 1, e_dim), dtype=torch.float32)
    weights = teacher_feats.new_zeros((m + 1, ), dtype=torch.float32)
    if mode == 'area':
        if pixel_rows is None:
            pixel_rows = rows.rows_of(pairs.id_map())
        sources = pixel_rows.reshape(n_img, -1)
        cell = _cell_of_pixels(pairs.superpixels.shape[-2:], (h, w), dev).reshape(1, -1)
    else:
        cell = torch.arange(cells, device=dev)[None]
    # each image's pooled rows, plus a last column for everything else
    widths = [b - a + 1 for a, b in zip(rows.image_rows[:-1], rows.image_rows[1:])]
    for start, end, width in _image_chunks(widths, max(cells, e_dim), chunk_elements):
        if mode == 'area':
            src = sources[start:end]
        else:
            local = nearest_resize_labels(pairs.superpixels[start:end], (h, w)).long()
            first = pairs.image_id_offsets[start:end].view(-1, 1, 1)
            src = rows.rows_of(torch.where(local >= 0, local + first, -1)).reshape(end - start,
                                                                                  -1)
        feats = teacher_feats[start:end].to(torch.float32).reshape(end - start, e_dim, cells)
        _pool_images(feats, src, cell, rows, start, width, sums, weights)
    return sums, weights


def _pool_images(feats: Tensor, src_rows: Tensor, src_cell: Tensor, rows: PooledRows,
                 start: int, width: int, sums: Tensor, weights: Tensor) -> None:
    """Add images ``start:start + c`` into ``sums`` and ``weights``.

    Args:
        feats (Tensor): Their teacher features, (c, E, cells) float32.
        src_rows (Tensor): Row of every source (pixel or cell) of each image, (c, S).
        src_cell (Tensor): Cell of every source, (1, S).
        rows (PooledRows): The pooled rows.
        start (int): The first image.
        width (int): Columns of the weight matrix: the most pooled rows of one of the images,
            plus one.
        sums (Tensor): (M + 1, E), added to.
        weights (Tensor): (M + 1,), added to.
    """
    c, e_dim, cells = feats.shape
    m, dev = rows.num_rows, feats.device
    first = rows.first_row[start:start + c, None]
    local = torch.where(src_rows < m, src_rows - first, width - 1)  # column within the image
    slot = (torch.arange(c, device=dev)[:, None] * width + local) * cells + src_cell
    # float32 counts are exact (at most H * W per entry, far below 2**24)
    weight = feats.new_zeros((c * width * cells, )).index_add_(
        0, slot.reshape(-1), feats.new_ones(()).expand(slot.numel())).view(c, width, cells)
    pooled = torch.bmm(weight, feats.transpose(1, 2))  # (c, width, E)
    # column j of image i is row first_i + j while that is one of the image's rows, else M
    j = torch.arange(width, device=dev)[None, :]
    out_rows = torch.where(j < rows.first_row[start + 1:start + c + 1, None] - first, first + j,
                           m).reshape(-1)
    sums.index_add_(0, out_rows, pooled.reshape(-1, e_dim))
    weights.index_add_(0, out_rows, weight.sum(-1).reshape(-1))


def superpixel_pooling(point_feats: Tensor,
                       pixel_feats: PixelFeatures,
                       teacher_feats: Optional[Tensor],
                       pairs: BatchPairs,
                       teacher_pooling: str = 'area',
                       chunk_elements: int = 1 << 24) -> PooledFeatures:
    """Pool k_s, q_s and (optionally) e_s for a whole batch at once (see the module doc).

    Args:
        point_feats (Tensor): Student features of all points of the batch, (N, D).
        pixel_feats (PixelFeatures): The 2D head's features (read block by block).
        teacher_feats (Tensor, optional): Raw teacher features, (I, E, h, w); None skips
            ``e`` (no loss reads it).
        pairs (BatchPairs): The batch's pairs and maps (pairs on ignored pixels are not
            pooled).
        teacher_pooling (str): ``'area'`` (default) or ``'nearest'``.
        chunk_elements (int): Bound on the elements of the teacher pooling's weight matrix
            and product for one chunk of images.

    Returns:
        PooledFeatures: Rows for the M superpixels that hold at least one pair, in increasing
        id order, float32.
    """
    with autocast_off(point_feats.device):  # every sum and count in float32
        return _pool(point_feats, pixel_feats, teacher_feats, pairs, teacher_pooling,
                     chunk_elements)


def _pool(point_feats: Tensor, pixel_feats: PixelFeatures, teacher_feats: Optional[Tensor],
          pairs: BatchPairs, teacher_pooling: str, chunk_elements: int) -> PooledFeatures:
    if pairs.superpixels is None:
        raise ValueError('superpixel pooling needs superpixel maps: load them with '
                         'LoadMultiViewImagesAndSuperpixels(with_superpixels=True)')
    if teacher_pooling not in TEACHER_POOLING:
        raise ValueError(f'teacher_pooling must be one of {TEACHER_POOLING}, got '
                         f'{teacher_pooling!r}')
    rows = pooled_rows(pairs)
    m = rows.num_rows
    k_sums = point_feats.new_zeros((m + 1, point_feats.shape[1]), dtype=torch.float32)
    k_sums = k_sums.index_add(0, rows.pair_row,
                              point_feats.index_select(0, pairs.point.long()).float())
    num_pairs = count(rows.pair_row, m + 1)
    # every pixel's row (m for pixels of superpixels without pairs and ignored pixels)
    pixel_rows = rows.rows_of(pairs.id_map()).reshape(-1)
    num_pixels = count(pixel_rows, m + 1)
    q_sums = pixel_feats.pool(pixel_rows, m + 1)
    e = num_without_e = None
    if teacher_feats is not None:
        with torch.no_grad():
            e_sums, e_weights = pool_teacher(teacher_feats.detach(), pairs, rows, pixel_rows,
                                             teacher_pooling, chunk_elements)
        e = _mean(e_sums[:m], e_weights[:m])
        num_without_e = (e_weights[:m] == 0).sum()
    return PooledFeatures(k=_mean(k_sums[:m], num_pairs[:m]), q=_mean(q_sums[:m], num_pixels[:m]),
                          e=e, ids=rows.ids, num_pairs=num_pairs[:m],
                          sample_offsets=rows.first_row[pairs.image_offsets],
                          num_ids=pairs.num_ids, num_without_e=num_without_e)
