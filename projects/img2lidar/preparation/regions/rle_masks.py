"""Binary masks stored as run lengths, the form transformers' mask generation hands out."""
from typing import List

import numpy as np


class RleMasks:
    """A sequence of binary masks, each stored as transformers' uncompressed RLE
    (``{'size': [H, W], 'counts': [...]}``: alternating runs of 0 and 1, starting with 0,
    over the pixels in column-major order), decoded when indexed.

    Args:
        rles (list[dict]): The masks' run lengths.
    """

    def __init__(self, rles: List[dict]) -> None:
        self.rles = rles

    def __len__(self) -> int:
        return len(self.rles)

    def __getitem__(self, i: int) -> np.ndarray:
        """Mask ``i``, (H, W) bool."""
        rle = self.rles[i]
        h, w = rle['size']
        counts = np.asarray(rle['counts'], dtype=np.int64)
        values = np.arange(len(counts)) % 2 == 1  # runs of 0, 1, 0, ...
        flat = np.repeat(values, counts)
        if flat.size != h * w:
            raise ValueError(f'RLE mask {i}: runs cover {flat.size} pixels, size is {h}x{w}')
        return flat.reshape(w, h).T

    def areas(self) -> np.ndarray:
        """Pixels of each mask (the runs of 1), (M,) int64."""
        return np.array([int(np.sum(np.asarray(r['counts'], dtype=np.int64)[1::2]))
                         for r in self.rles], dtype=np.int64)
