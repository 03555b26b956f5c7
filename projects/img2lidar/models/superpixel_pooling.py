"""Pooling point, pixel and teacher features over the superpixels that hold paired points.

One call pools a whole batch (docs/methods.md section 3), with every sum and count in float32
whatever the autocast dtype of the inputs, and no full-resolution copy of any feature map:

- ``k``: the mean student feature of the pairs of each superpixel (index_add over the pairs);
- ``q``: the mean 2D-head feature of its pixels, read block by block from the head's
  low-resolution map (:meth:`PixelFeatures.pool`);
- ``e``: the mean raw teacher feature over the superpixel, at the teacher's resolution, as a
  product of a per-image (superpixel x cell) weight matrix with the teacher's map, computed for
  a few images at a time. Two weightings (``teacher_pooling``):

  - ``'area'`` (the default): each cell weighs by the number of the superpixel's pixels it
    covers, i.e. the mean over the superpixel's pixels of the cell that holds each pixel's
    centre (the grid spans the image as the head's upsampling spans it); every superpixel that
    holds a pair gets a teacher feature;
  - ``'nearest'`` (ST-SLidR's code): the map is resized to the teacher's grid by PyTorch's
    'nearest' (cell i reads pixel floor(i * H / h), as torchvision's ``Resize(NEAREST)`` that
    ST-SLidR calls) and each cell counts for the one superpixel it reads; a superpixel that
    no cell reads (small ones, at coarse strides) gets ``e = 0``, which the tolerant and
    balanced losses drop. :attr:`PooledFeatures.num_without_e` counts them.

The only host synchronisation is the ``unique`` that finds which superpixels hold a pair (the
number of rows M).
"""
from typing import Optional

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


def pool_teacher(teacher_feats: Tensor, pairs: BatchPairs, row_of_id: Tensor, num_rows: int,
                 mode: str = 'area', chunk_elements: int = 1 << 24):
    """Sum the teacher features into the rows of their superpixels, a few images at a time.

    ``'nearest'``: each cell reads the map at the pixel that PyTorch's 'nearest' resize picks
    (floor(i * H / h)) and is added to that superpixel's row (``index_add`` over the cells:
    O(cells x E) per image). ``'area'``: each image's (superpixel x cell) matrix of covered
    pixel counts (each pixel in the cell that holds its centre) times its (cell x E) features
    (``bmm``): every superpixel that holds a pixel gets a teacher feature, exactly, without a
    host synchronisation, at O(id range x cells x E) per image (a few ms per batch on a GPU;
    about 0.1 s per image on a CPU at the ResNet-50 recipe's sizes).

    Args:
        teacher_feats (Tensor): The teacher's maps, (I, E, h, w).
        pairs (BatchPairs): The batch (its per-image maps and id ranges).
        row_of_id (Tensor): Row of every batch-unique id, ``num_rows - 1`` for ids without
            a row, shape (num_ids + 1,) (the last entry for "no id").
        num_rows (int): Rows of the output (M + 1: the last row collects what is dropped).
        mode (str): ``'area'`` or ``'nearest'`` (see the module doc).
        chunk_elements (int): Bound on the elements of one chunk's temporaries.

    Returns:
        tuple[Tensor]: Sums (num_rows, E) and weights (num_rows,), float32.
    """
    if mode not in TEACHER_POOLING:
        raise ValueError(f'teacher_pooling must be one of {TEACHER_POOLING}, got {mode!r}')
    n_img, e_dim, h, w = teacher_feats.shape
    sums = teacher_feats.new_zeros((num_rows, e_dim), dtype=torch.float32)
    weights = teacher_feats.new_zeros((num_rows, ), dtype=torch.float32)
    width = int(pairs.max_image_ids) + 1  # local ids, plus one column for ignored pixels
    cells = h * w
    if mode == 'nearest':
        step = max(1, chunk_elements // max(cells * e_dim, 1))
    else:
        step = max(1, chunk_elements // (width * max(cells, e_dim)))
    for start in range(0, n_img, step):
        end = min(start + step, n_img)
        feats = teacher_feats[start:end].to(torch.float32).reshape(end - start, e_dim, cells)
        if mode == 'nearest':
            _pool_nearest(feats, (h, w), pairs, row_of_id, start, end, sums, weights)
        else:
            _pool_area(feats, (h, w), pairs, row_of_id, start, end, width, sums, weights)
    return sums, weights


def _pool_nearest(feats: Tensor, grid, pairs: BatchPairs, row_of_id: Tensor, start: int,
                  end: int, sums: Tensor, weights: Tensor) -> None:
    """Images ``start:end`` (features (c, E, cells)): each cell into the row of the superpixel
    at the pixel it reads (:func:`nearest_resize_labels`)."""
    ids = nearest_resize_labels(pairs.id_map(start, end), grid).reshape(-1)
    rows = row_of_id[torch.where(ids >= 0, ids, row_of_id.numel() - 1)]
    sums.index_add_(0, rows, feats.transpose(1, 2).reshape(-1, feats.shape[1]))
    weights.index_add_(0, rows, torch.ones_like(rows, dtype=weights.dtype))


def _pool_area(feats: Tensor, grid, pairs: BatchPairs, row_of_id: Tensor, start: int, end: int,
               width: int, sums: Tensor, weights: Tensor) -> None:
    """Images ``start:end`` (features (c, E, cells)): per image, the (local id x cell) matrix
    of pixel counts times the cells' features."""
    c, e_dim, cells = feats.shape
    dev = feats.device
    cell = _cell_of_pixels(pairs.superpixels.shape[-2:], grid, dev).reshape(-1)
    local = pairs.superpixels[start:end].long()
    local = torch.where(local >= 0, local, width - 1).reshape(c, -1)
    image = torch.arange(c, device=dev)[:, None]
    slot = (image * width + local) * cells + cell[None, :]
    weight = count(slot, c * width * cells).view(c, width, cells).to(torch.float32)
    pooled = torch.bmm(weight, feats.transpose(1, 2))  # (c, width, E)
    # (image, local id) -> row; local ids beyond an image's range hold nothing
    first_ids = pairs.image_id_offsets
    ids = first_ids[start:end, None] + torch.arange(width, device=dev)[None, :]
    in_range = ids < first_ids[start + 1:end + 1, None]
    rows = torch.where(in_range, row_of_id[ids.clamp(max=row_of_id.numel() - 1)],
                       row_of_id.new_full((), sums.shape[0] - 1)).reshape(-1)
    sums.index_add_(0, rows, pooled.reshape(-1, e_dim))
    weights.index_add_(0, rows, weight.sum(-1).reshape(-1))


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
            for one chunk of images.

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
    dev = point_feats.device
    none = pairs.num_ids  # the id of "no superpixel" (ignored pixels)
    pair_ids = pairs.superpixel
    pair_ids = torch.where(pair_ids >= 0, pair_ids, none)
    # the rows: the ids that hold a pair, plus "none" last (always present, so that M is the
    # output's size minus one without looking at the values)
    ids, inverse = torch.unique(torch.cat([pair_ids, pair_ids.new_full((1, ), none)]),
                                return_inverse=True)
    m = ids.shape[0] - 1
    ids, pair_row = ids[:m], inverse[:-1]
    k_sums = point_feats.new_zeros((m + 1, point_feats.shape[1]), dtype=torch.float32)
    k_sums = k_sums.index_add(0, pair_row,
                              point_feats.index_select(0, pairs.point.long()).float())
    num_pairs = count(pair_row, m + 1)
    # every pixel's row (m for pixels of superpixels without pairs and ignored pixels)
    row_of_id = torch.full((none + 1, ), m, dtype=torch.long, device=dev)
    row_of_id[ids] = torch.arange(m, device=dev)
    id_map = pairs.id_map()
    pixel_rows = row_of_id[torch.where(id_map >= 0, id_map, none)].reshape(-1)
    num_pixels = count(pixel_rows, m + 1)
    q_sums = pixel_feats.pool(pixel_rows, m + 1)
    e = num_without_e = None
    if teacher_feats is not None:
        with torch.no_grad():
            e_sums, e_weights = pool_teacher(teacher_feats.detach(), pairs, row_of_id, m + 1,
                                             teacher_pooling, chunk_elements)
        e = _mean(e_sums[:m], e_weights[:m])
        num_without_e = (e_weights[:m] == 0).sum()
    return PooledFeatures(k=_mean(k_sums[:m], num_pairs[:m]), q=_mean(q_sums[:m], num_pixels[:m]),
                          e=e, ids=ids, num_pairs=num_pairs[:m],
                          sample_offsets=torch.searchsorted(ids, pairs.id_offsets),
                          num_ids=pairs.num_ids, num_without_e=num_without_e)
