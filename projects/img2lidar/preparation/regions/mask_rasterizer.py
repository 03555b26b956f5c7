"""Turn overlapping binary masks (a mask generator's output) into one region map.

The rule: masks smaller than ``min_area`` pixels are dropped; of the rest the ``max_regions``
largest are kept; they are painted largest first, so that every smaller mask lies on top of the
larger ones it overlaps (a part on top of its whole, an object on top of the background);
equal areas are painted in decreasing score, then in their input order, so the map never
depends on anything but the masks. Masks left with no visible pixel are dropped, and the ids of
the rest are ``0..n-1`` in painting order (0 = the largest). Pixels no mask covers are -1.
"""
from typing import Optional, Sequence

import numpy as np

from .base import UNASSIGNED


def paint_order(areas: np.ndarray, scores: Optional[np.ndarray] = None,
                max_regions: Optional[int] = None, min_area: int = 0) -> np.ndarray:
    """The masks to paint, in painting order (see the module doc).

    Args:
        areas (np.ndarray): Pixels of each mask, (M,).
        scores (np.ndarray, optional): Each mask's score, (M,); breaks ties of area (higher
            first). None: input order only.
        max_regions (int, optional): Keep at most this many masks (the largest). None: all.
        min_area (int): Drop masks with fewer pixels. Defaults to 0.

    Returns:
        np.ndarray: Indices into the masks, (P,) int64, P <= max_regions.
    """
    areas = np.asarray(areas, dtype=np.int64)
    scores = (np.zeros(len(areas)) if scores is None else
              np.asarray(scores, dtype=np.float64).reshape(len(areas)))
    index = np.arange(len(areas))
    # lexsort: the last key is the primary one; decreasing area, decreasing score, index
    order = np.lexsort((index, -scores, -areas))
    order = order[areas[order] >= max(min_area, 1)]
    if max_regions is not None:
        order = order[:max(int(max_regions), 0)]
    return order


def rasterize_masks(masks: Sequence[np.ndarray], areas: Optional[np.ndarray] = None,
                    scores: Optional[np.ndarray] = None, max_regions: Optional[int] = None,
                    min_area: int = 0, shape: Optional[tuple] = None) -> np.ndarray:
    """One region map from overlapping masks (see the module doc).

    Args:
        masks (Sequence[np.ndarray]): Binary masks, each (H, W) bool; any sequence (a lazily
            decoded one is read only for the masks painted).
        areas (np.ndarray, optional): Each mask's pixel count, (M,); counted when None.
        scores (np.ndarray, optional): Each mask's score, (M,) (ties of area).
        max_regions (int, optional): The cap K on regions. None: no cap.
        min_area (int): Smallest mask kept, in pixels. Defaults to 0.
        shape (tuple, optional): (H, W), needed when there is no mask.

    Returns:
        np.ndarray: Region ids ``0..n-1`` (0 = the largest mask), -1 where no mask is,
        (H, W) int32.
    """
    if areas is None:
        areas = np.array([int(np.count_nonzero(m)) for m in masks], dtype=np.int64)
    if shape is None:
        if len(masks) == 0:
            raise ValueError('rasterize_masks: no mask, so the shape must be given')
        shape = masks[0].shape
    painted = np.full(shape, UNASSIGNED, dtype=np.int32)
    order = paint_order(areas, scores, max_regions, min_area)
    for rank, i in enumerate(order):
        painted[np.asarray(masks[i], dtype=bool)] = rank
    return compact_ids(painted)


def compact_ids(labels: np.ndarray) -> np.ndarray:
    """Renumber the non-negative ids of a map to ``0..n-1`` in increasing order (negative ids
    become -1), (H, W) int32."""
    out = np.full(labels.shape, UNASSIGNED, dtype=np.int32)
    valid = labels >= 0
    if valid.any():
        ids = labels[valid]
        present = np.bincount(ids, minlength=int(ids.max()) + 1) > 0
        lut = (np.cumsum(present) - 1).astype(np.int32)
        out[valid] = lut[ids]
    return out
