"""The points a linear probe of the real-data check trains and is scored on, one selection for
every row of a table.

A point set names which points of a frame count: ``'in_camera'`` (the points that project into
the front camera: every kind of feature has one there, the teacher's at the pixel included) or
``'all_points'`` (every point within the range: students only). For one point set and one seed,
:func:`select_probe_points` picks the training points (up to a fixed number of labelled points
of the set in each training frame, drawn with the seed) and the test points (every point of the
set in each test frame); every row of the table (random student, each pretraining method, the
teacher at the pixels) is then probed on exactly these points, so that their mIoUs compare.
"""
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

#: the point sets of the check, in table order
POINT_SETS = ('in_camera', 'all_points')


@dataclass(frozen=True)
class ProbePoints:
    """The points of one probe, as indices into each frame's points (ascending).

    Attributes:
        point_set (str): One of :data:`POINT_SETS`.
        train (tuple[np.ndarray, ...]): Per training frame, the points the probe trains on
            (labelled points of the set only), (M_i,) int64.
        test (tuple[np.ndarray, ...]): Per test frame, every point of the set (labelled or
            not: the mIoU ignores unlabelled points), (T_i,) int64.
    """
    point_set: str
    train: Tuple[np.ndarray, ...]
    test: Tuple[np.ndarray, ...]


def in_point_set(in_camera: np.ndarray, point_set: str) -> np.ndarray:
    """Which points of a frame belong to ``point_set``, (N,) bool.

    Args:
        in_camera (np.ndarray): Whether each point projects into the camera, (N,) bool.
        point_set (str): One of :data:`POINT_SETS`.

    Raises:
        ValueError: An unknown point set.
    """
    if point_set == 'in_camera':
        return np.asarray(in_camera, dtype=bool)
    if point_set == 'all_points':
        return np.ones(len(in_camera), dtype=bool)
    raise ValueError(f'unknown point set {point_set!r}: expected one of {POINT_SETS}')


def select_probe_points(train: Sequence, test: Sequence, point_set: str, points_per_frame: int,
                        seed: int, num_classes: int) -> ProbePoints:
    """The training and test points of one probe (the same for every row of a table).

    Args:
        train (Sequence): Training frames, each with ``labels`` (N,) (``num_classes`` and above:
            unlabelled) and ``in_camera`` (N,) bool.
        test (Sequence): Test frames, likewise.
        point_set (str): One of :data:`POINT_SETS`.
        points_per_frame (int): Training points drawn from each training frame (all of its
            labelled points of the set when it has fewer).
        seed (int): Seeds the draw (frame ``i`` draws with ``(seed, i)``).
        num_classes (int): Labels in ``[0, num_classes)`` are labelled points.

    Returns:
        ProbePoints: The points.
    """
    picked = []
    for i, frame in enumerate(train):
        labelled = (frame.labels >= 0) & (frame.labels < num_classes)
        candidates = np.flatnonzero(in_point_set(frame.in_camera, point_set) & labelled)
        rng = np.random.default_rng((seed, i))
        keep = rng.choice(len(candidates), size=min(len(candidates), points_per_frame),
                          replace=False)
        picked.append(candidates[np.sort(keep)].astype(np.int64))
    scored = tuple(np.flatnonzero(in_point_set(f.in_camera, point_set)).astype(np.int64)
                   for f in test)
    return ProbePoints(point_set, tuple(picked), scored)
