"""Each method's difference from a reference method, paired run by run.

Two results pair when they share a protocol, a pretraining seed (the index of the pretraining
run, see :class:`~.results.RunResult`) and an evaluation seed (``randomness.seed``): the
pretraining runs of both methods with index k, each evaluated with seed j. The variance that
both share (which evaluation seed, which pretraining draw index) then cancels from the
difference, and the interval is the Student-t interval of the mean of the paired differences
(:func:`~.statistics.summarize` over them), as in a paired t-test.

A pair where either run failed (non-finite mIoU) is counted as failed, never dropped silently;
results with no partner are counted as unpaired.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .results import RunResult, group
from .statistics import Summary, summarize


@dataclass(frozen=True)
class PairedDifference:
    """A method's mIoU minus the reference's, over the runs that pair, for one protocol.

    Attributes:
        method (str): The method.
        reference (str): The reference method.
        protocol (str): The protocol run.
        keys (tuple): The (pretraining seed, evaluation seed) of each pair, in order.
        differences (Summary, optional): Statistics of the differences (mIoU points), with
            ``non_finite`` the positions in ``keys`` of the pairs where a run failed; None when
            no result pairs.
        unpaired (int): Results of either method in this protocol with no partner.
    """
    method: str
    reference: str
    protocol: str
    keys: Tuple[Tuple[Optional[int], Optional[int]], ...]
    differences: Optional[Summary]
    unpaired: int

    @property
    def failed_keys(self) -> List[Tuple[Optional[int], Optional[int]]]:
        """list: The (pretraining seed, evaluation seed) of the pairs where a run failed."""
        return [self.keys[i] for i in self.differences.non_finite] if self.differences else []


def _by_key(runs: Sequence[RunResult]) -> Dict[Tuple[Optional[int], Optional[int]], RunResult]:
    """The runs of one (method, protocol) by (pretraining seed, evaluation seed).

    Raises:
        ValueError: When two runs share a key (they could not be paired unambiguously).
    """
    out: Dict[Tuple[Optional[int], Optional[int]], RunResult] = {}
    for r in runs:
        if r.pair_key in out:
            raise ValueError(f'{r.method}, {r.protocol}: two results with pretraining seed '
                             f'{r.pretrain} and seed {r.seed}; pairing needs one per pair')
        out[r.pair_key] = r
    return out


def paired_differences(results: Sequence[RunResult], reference: str) -> List[PairedDifference]:
    """Every other method's difference from ``reference``, per protocol both were run under.

    Args:
        results (Sequence[RunResult]): The runs of all methods.
        reference (str): The reference method's label.

    Returns:
        list[PairedDifference]: In the order methods and protocols first appear.

    Raises:
        ValueError: When ``reference`` has no result, or a method has two results with the
            same (pretraining seed, evaluation seed) in one protocol.
    """
    groups = group(results)
    if not any(m == reference for m, _ in groups):
        known = ', '.join(dict.fromkeys(m for m, _ in groups))
        raise ValueError(f'no results of the reference method {reference!r} (methods: {known})')
    out = []
    for (method, protocol), runs in groups.items():
        if method == reference or (reference, protocol) not in groups:
            continue
        mine, ref = _by_key(runs), _by_key(groups[(reference, protocol)])
        keys = tuple(k for k in mine if k in ref)
        diffs = [mine[k].miou - ref[k].miou for k in keys]
        unpaired = len(mine) + len(ref) - 2 * len(keys)
        out.append(PairedDifference(method, reference, protocol, keys, summarize(diffs),
                                    unpaired))
    return out
