"""Statistics of one quantity over repeated runs (seeds): mean, sample standard deviation and a
Student-t confidence interval of the mean, with the runs whose value is not finite counted
apart, never dropped.

A non-finite mIoU is a failed run (it diverged): the views of :mod:`.report` show how many and
which, next to statistics over the finite runs. A non-finite class IoU is a class absent from
the evaluation data (SegMetric gives NaN), not a failure.
"""
import math
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

from scipy import stats

#: the level of every confidence interval the evaluation reports
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """One quantity over runs.

    Attributes:
        values (tuple[float, ...]): The finite per-run values, in run order.
        mean (float, optional): Their mean; None when no value is finite.
        std (float, optional): Their sample standard deviation (ddof=1); None for fewer than
            two finite values.
        ci (tuple[float, float], optional): The two-sided Student-t confidence interval of the
            mean over the finite values, ``mean -+ t(1 - (1 - confidence) / 2, n - 1) * std /
            sqrt(n)``; None for fewer than two finite values.
        confidence (float): The level of ``ci``.
        non_finite (tuple[int, ...]): The positions, in the values given, of those that are
            NaN, infinite or None (for an mIoU: the failed runs).
    """
    values: Tuple[float, ...]
    mean: Optional[float]
    std: Optional[float]
    ci: Optional[Tuple[float, float]]
    confidence: float = CONFIDENCE
    non_finite: Tuple[int, ...] = ()

    @property
    def n(self) -> int:
        """int: The number of finite values (those the statistics are over)."""
        return len(self.values)

    @property
    def total(self) -> int:
        """int: The number of values given, finite or not."""
        return len(self.values) + len(self.non_finite)

    def to_dict(self) -> dict:
        """dict: ``n`` (finite values), ``n_total``, ``non_finite`` (positions), ``mean``,
        ``std``, ``ci``, ``confidence`` and ``values`` (JSON-ready)."""
        return dict(n=self.n, n_total=self.total, non_finite=list(self.non_finite),
                    mean=self.mean, std=self.std, ci=list(self.ci) if self.ci else None,
                    confidence=self.confidence, values=list(self.values))


def t_quantile(probability: float, dof: int) -> float:
    """The quantile of Student's t distribution (``scipy.stats.t.ppf``).

    Args:
        probability (float): In (0, 1).
        dof (int): Degrees of freedom, at least 1.

    Returns:
        float: t such that P(T <= t) = ``probability``.
    """
    return float(stats.t.ppf(probability, dof))


def is_finite(value: Optional[float]) -> bool:
    """bool: Whether a run's value is a finite number (None, NaN and inf are not)."""
    return value is not None and math.isfinite(value)


def summarize(values: Iterable[Optional[float]],
              confidence: float = CONFIDENCE) -> Optional[Summary]:
    """Mean, sample standard deviation and confidence interval of the finite ``values``; the
    positions of the others are kept in :attr:`Summary.non_finite`.

    Args:
        values (Iterable[float]): One value per run.
        confidence (float): Level of the interval. Defaults to 0.95.

    Returns:
        Summary, optional: The statistics (``mean`` None when no value is finite), or None for
        no value at all.
    """
    values = list(values)
    if not values:
        return None
    kept = tuple(float(v) for v in values if is_finite(v))
    non_finite = tuple(i for i, v in enumerate(values) if not is_finite(v))
    n = len(kept)
    if n == 0:
        return Summary((), None, None, None, confidence, non_finite)
    mean = math.fsum(kept) / n
    if n == 1:
        return Summary(kept, mean, None, None, confidence, non_finite)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in kept) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Summary(kept, mean, std, (mean - half, mean + half), confidence, non_finite)
