"""Statistics of one quantity over repeated runs (seeds): mean, sample standard deviation and a
Student-t confidence interval of the mean."""
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
        mean (float): Their mean.
        std (float, optional): Their sample standard deviation (ddof=1); None for one value.
        ci (tuple[float, float], optional): The two-sided Student-t confidence interval of the
            mean, ``mean -+ t(1 - (1 - confidence) / 2, n - 1) * std / sqrt(n)``; None for one
            value.
        confidence (float): The level of ``ci``.
    """
    values: Tuple[float, ...]
    mean: float
    std: Optional[float]
    ci: Optional[Tuple[float, float]]
    confidence: float = CONFIDENCE

    @property
    def n(self) -> int:
        """int: The number of values."""
        return len(self.values)

    def to_dict(self) -> dict:
        """dict: ``n``, ``mean``, ``std``, ``ci``, ``confidence`` and ``values`` (JSON-ready)."""
        return dict(n=self.n, mean=self.mean, std=self.std,
                    ci=list(self.ci) if self.ci else None, confidence=self.confidence,
                    values=list(self.values))


def t_quantile(probability: float, dof: int) -> float:
    """The quantile of Student's t distribution (``scipy.stats.t.ppf``).

    Args:
        probability (float): In (0, 1).
        dof (int): Degrees of freedom, at least 1.

    Returns:
        float: t such that P(T <= t) = ``probability``.
    """
    return float(stats.t.ppf(probability, dof))


def summarize(values: Iterable[float], confidence: float = CONFIDENCE) -> Optional[Summary]:
    """Mean, sample standard deviation and confidence interval of the finite ``values``.

    Non-finite values (a class absent from the validation data gives a NaN IoU) are left out.

    Args:
        values (Iterable[float]): One value per run.
        confidence (float): Level of the interval. Defaults to 0.95.

    Returns:
        Summary, optional: The statistics, or None when no value is finite.
    """
    kept = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    if not kept:
        return None
    n = len(kept)
    mean = math.fsum(kept) / n
    if n == 1:
        return Summary(kept, mean, None, None, confidence)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in kept) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Summary(kept, mean, std, (mean - half, mean + half), confidence)
