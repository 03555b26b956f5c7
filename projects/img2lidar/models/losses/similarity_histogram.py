"""A fixed-bin histogram of teacher similarities, accumulated over row chunks, and its quantiles.

The contrastive losses never hold the whole (M, M) teacher similarity ``s`` (M ~ 14,000
superpixels at the recipe's sizes); its distribution over the off-diagonal pairs is gathered
chunk by chunk into ``bins`` equal bins over [0, 1] (``s`` is clipped to [0, 1] there), from
which quantiles follow by linear interpolation inside a bin (error at most ``1 / bins``).
Everything stays on the device: no host read, no value-dependent shape.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

#: elements per ``torch.histc`` call: its float32 counts are exact below 2**24
_EXACT_COUNTS = 1 << 24


class SimilarityHistogram:
    """Counts of the off-diagonal values of ``s`` in ``bins`` equal bins over [0, 1].

    Args:
        bins (int): Number of bins. Defaults to 1000.
        device (torch.device | str): Where the counts live. Defaults to 'cpu'.
    """

    def __init__(self, bins: int = 1000, device='cpu') -> None:
        if bins < 1:
            raise ValueError(f'bins must be >= 1, got {bins}')
        self.bins = int(bins)
        self.counts = torch.zeros(self.bins, dtype=torch.float64, device=device)
        self.total = torch.zeros((), dtype=torch.float64, device=device)

    def add_rows(self, s_rows: Tensor, offset: int) -> Tensor:
        """Add rows ``offset .. offset + C - 1`` of ``s`` without their diagonal entries.

        Args:
            s_rows (Tensor): Rows of ``s`` in [0, 1], shape (C, M), float32; not modified.
            offset (int): Index of the first row among the M columns.

        Returns:
            Tensor: The sum of the added (off-diagonal) values, float64 scalar.
        """
        c, m = s_rows.shape
        diag = s_rows.diagonal(offset=offset)  # s[i, offset + i]
        step = max(1, _EXACT_COUNTS // max(m, 1))
        for a in range(0, c, step):
            self.counts += torch.histc(s_rows[a:a + step], self.bins, 0.0, 1.0).double()
        self.counts -= torch.histc(diag, self.bins, 0.0, 1.0).double()
        self.total += c * m - diag.numel()
        return s_rows.sum(dtype=torch.float64) - diag.sum(dtype=torch.float64)

    def quantiles(self, qs: Sequence[float]) -> Tensor:
        """Quantiles of the counted values, linear inside a bin.

        Args:
            qs (Sequence[float]): Quantiles in [0, 1].

        Returns:
            Tensor: Shape (len(qs),), float32; the value x such that a share q of the counted
            values lies below x, when the values of a bin are spread evenly over it: within
            one bin of the ceil(q N)-th smallest of the N values.
        """
        return histogram_quantiles(self.counts, qs, self.total)


def histogram_quantiles(counts: Tensor, qs: Sequence[float], total: Tensor) -> Tensor:
    """Quantiles of values counted in equal bins over [0, 1] (see :class:`SimilarityHistogram`).

    Args:
        counts (Tensor): Counts per bin, shape (B,), float64.
        qs (Sequence[float]): Quantiles in [0, 1].
        total (Tensor): ``counts.sum()``, scalar.

    Returns:
        Tensor: Shape (len(qs),), float32, on ``counts``' device (no host data is copied
        there). All zeros when nothing was counted.
    """
    bins = counts.shape[0]
    cum = counts.cumsum(0)
    target = torch.stack([total * float(q) for q in qs])
    k = torch.searchsorted(cum, target).clamp_(max=bins - 1)
    below = cum[k] - counts[k]
    frac = ((target - below) / counts[k].clamp(min=1.0)).clamp_(0.0, 1.0)
    return ((k.double() + frac) / bins).float()
