"""How well regions follow real semantic labels: purity over the labelled points they hold."""
from dataclasses import dataclass

import numpy as np


@dataclass
class RegionPurity:
    """Counts of one image (or summed over images).

    Attributes:
        majority (int): Points whose label is their region's majority label.
        counted (int): Labelled points inside a region.
        unassigned (int): Labelled points on unassigned pixels (-1).
        regions (int): Regions that hold at least one labelled point.
    """
    majority: int = 0
    counted: int = 0
    unassigned: int = 0
    regions: int = 0

    def __add__(self, other: 'RegionPurity') -> 'RegionPurity':
        return RegionPurity(self.majority + other.majority, self.counted + other.counted,
                            self.unassigned + other.unassigned, self.regions + other.regions)

    @property
    def purity(self) -> float:
        """float: Share of the counted points whose region's majority label is their own."""
        return self.majority / max(self.counted, 1)

    @property
    def points_per_region(self) -> float:
        """float: Counted points per region that holds any."""
        return self.counted / max(self.regions, 1)


def region_purity(regions: np.ndarray, labels: np.ndarray, ignore: int) -> RegionPurity:
    """Purity counts of points given their region and label.

    A region's majority label is the label most of its labelled points carry (ties: any of
    them, the count is the same); ignored points and points on unassigned pixels (region -1)
    count for nothing but the latter are counted apart.

    Args:
        regions (np.ndarray): Region id of each point, (N,) int; -1 unassigned.
        labels (np.ndarray): Label of each point, (N,) int in [0, ignore].
        ignore (int): The ignored label.
    """
    labelled = labels != ignore
    inside = labelled & (regions >= 0)
    r, lab = regions[inside].astype(np.int64), labels[inside].astype(np.int64)
    if len(r) == 0:
        return RegionPurity(unassigned=int((labelled & (regions < 0)).sum()))
    ids, r = np.unique(r, return_inverse=True)
    table = np.zeros((len(ids), ignore), dtype=np.int64)
    np.add.at(table, (r, lab), 1)
    return RegionPurity(majority=int(table.max(1).sum()), counted=int(len(r)),
                        unassigned=int((labelled & (regions < 0)).sum()), regions=len(ids))
