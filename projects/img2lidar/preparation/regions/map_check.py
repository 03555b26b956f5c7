"""What a stored region map looks like, and the two traps of downloaded maps.

- **uint8 wrap**: a generator that writes more than 255 masks into a uint8 image wraps
  around (mask 256 gets id 0, ...), so unrelated masks share ids. Such a map uses all 256
  values (:func:`saturated_id_range`), which a map of fewer masks cannot.
- **0 as unassigned**: a generator that starts from a zero image and paints masks from id 0
  gives the first mask and the pixels no mask covers the same id. Those pixels lie scattered
  between the masks, so id 0 falls into far more separate pieces than any other id
  (:func:`zero_looks_unassigned`).
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
from skimage.measure import label as connected_components

#: id 0 is flagged when it has at least this many pieces ...
ZERO_MIN_PIECES = 10
#: ... and this many times the 90th percentile of the other ids' pieces
ZERO_PIECES_RATIO = 4.0


def saturated_id_range(labels: np.ndarray) -> bool:
    """Whether an unsigned 8-bit map uses all 256 of its values (the signature of ids that
    wrapped around)."""
    return labels.dtype == np.uint8 and labels.size >= 256 and \
        bool((np.bincount(labels.ravel(), minlength=256) > 0).all())


def pieces_per_id(labels: np.ndarray) -> np.ndarray:
    """How many 4-connected pieces each id's pixels form, (max id + 1,) int64 (0 for ids no
    pixel has); negative ids are not counted."""
    shifted = labels.astype(np.int64) - min(int(labels.min()), 0) + 1  # all >= 1
    pieces = connected_components(shifted, background=0, connectivity=1)
    first = np.zeros(int(pieces.max()) + 1, dtype=np.int64) - 1
    first[pieces.ravel()] = labels.ravel()  # any pixel of a piece gives its id
    ids = first[1:]
    ids = ids[ids >= 0]
    top = int(labels.max()) + 1 if labels.size else 0
    return np.bincount(ids, minlength=max(top, 0))


def zero_looks_unassigned(pieces: np.ndarray) -> bool:
    """Whether id 0 falls into many more pieces than the other ids (see the module doc).

    Args:
        pieces (np.ndarray): :func:`pieces_per_id` of the map.
    """
    if len(pieces) < 2 or pieces[0] < ZERO_MIN_PIECES:
        return False
    others = pieces[1:][pieces[1:] > 0]
    typical = float(np.percentile(others, 90)) if len(others) else 1.0
    return pieces[0] >= ZERO_PIECES_RATIO * max(typical, 1.0)


@dataclass
class MapSummary:
    """One stored map.

    Attributes:
        path (str): The file.
        shape (tuple): (H, W).
        dtype (str): Its stored integer type.
        regions (int): Distinct non-negative ids.
        unassigned (float): Share of pixels with a negative id.
        id_min (int): Smallest id.
        id_max (int): Largest id.
        median_pieces (float): Median pieces per id.
        zero_share (float): Share of pixels with id 0.
        zero_pieces (int): Pieces of id 0.
        saturated (bool): :func:`saturated_id_range`.
        zero_unassigned (bool): :func:`zero_looks_unassigned`.
        image_shape (tuple, optional): Its image's (H, W), when known.
    """
    path: str
    shape: tuple
    dtype: str
    regions: int
    unassigned: float
    id_min: int
    id_max: int
    median_pieces: float
    zero_share: float
    zero_pieces: int
    saturated: bool
    zero_unassigned: bool
    image_shape: Optional[tuple] = None

    @property
    def size_ok(self) -> Optional[bool]:
        """bool | None: The map has its image's size (None: image unknown)."""
        return None if self.image_shape is None else tuple(self.shape) == tuple(self.image_shape)


def summarize_map(labels: np.ndarray, path: str = '<array>',
                  image_shape: Optional[tuple] = None) -> MapSummary:
    """The summary of one map, (H, W) integer."""
    counts = np.bincount(labels[labels >= 0].ravel().astype(np.int64)) if labels.size else \
        np.zeros(0, dtype=np.int64)
    pieces = pieces_per_id(labels)
    present = pieces[counts > 0] if len(counts) else pieces[:0]
    return MapSummary(
        path=path, shape=tuple(labels.shape), dtype=str(labels.dtype),
        regions=int((counts > 0).sum()), unassigned=float((labels < 0).mean()),
        id_min=int(labels.min()), id_max=int(labels.max()),
        median_pieces=float(np.median(present)) if len(present) else 0.0,
        zero_share=float(counts[0] / labels.size) if len(counts) else 0.0,
        zero_pieces=int(pieces[0]) if len(pieces) else 0,
        saturated=saturated_id_range(labels), zero_unassigned=zero_looks_unassigned(pieces),
        image_shape=None if image_shape is None else tuple(image_shape))
