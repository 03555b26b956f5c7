"""Give the unassigned pixels (-1) of a region map a region."""
import numpy as np
from scipy import ndimage

from .base import UNASSIGNED
from .mask_rasterizer import compact_ids


def fill_nearest(labels: np.ndarray) -> np.ndarray:
    """Every unassigned pixel takes the id of its nearest assigned pixel (Euclidean distance
    between pixel centres; ties as scipy's exact distance transform breaks them). A map with
    no assigned pixel is returned as it is.

    Args:
        labels (np.ndarray): Region ids, -1 unassigned, (H, W) int.

    Returns:
        np.ndarray: (H, W) int32.
    """
    hole = labels < 0
    if not hole.any() or hole.all():
        return labels.astype(np.int32)
    iy, ix = ndimage.distance_transform_edt(hole, return_distances=False, return_indices=True)
    return labels[iy, ix].astype(np.int32)


def fill_from(labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Unassigned pixels take ``other``'s region (e.g. SLIC's) as new regions after the
    assigned ones; ids are then renumbered ``0..n-1`` (assigned regions keep their order and
    come first).

    Args:
        labels (np.ndarray): Region ids, -1 unassigned, (H, W) int.
        other (np.ndarray): A full region map of the same image, ids >= 0, (H, W) int.

    Returns:
        np.ndarray: (H, W) int32.
    """
    if other.shape != labels.shape:
        raise ValueError(f'fill_from: maps of shapes {labels.shape} and {other.shape}')
    hole = labels < 0
    out = labels.astype(np.int64)
    out[hole] = int(labels.max(initial=UNASSIGNED)) + 1 + other[hole].astype(np.int64)
    return compact_ids(out)
