"""The results of downstream runs: what the evaluation report and tools/results_table.py both
show. One :class:`RunResult` per run (method, protocol run, pretraining seed, evaluation seed,
SegMetric result); tables group them by method and protocol run and summarise the seeds with
:mod:`.statistics`.

A method may be evaluated from several pretraining runs (its pretraining seeds, indexed 0, 1,
...), each with the protocol's evaluation seeds: the statistics of a (method, protocol) group
are over all its (pretraining seed, evaluation seed) results. A run whose mIoU is not finite
has failed: it is counted and named, never dropped (:func:`failed_runs`).
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .commands import Launcher
from .protocol import Protocol
from .run_logs import LOG_FIELDS
from .statistics import Summary, is_finite, summarize

#: SegMetric result keys and log fields that are not a class's IoU
NON_CLASS_KEYS = {'miou', 'acc', 'acc_cls'} | LOG_FIELDS
#: the method label of a run that starts from random weights
RANDOM_INIT = 'random init'


@dataclass(frozen=True)
class RunResult:
    """The final SegMetric result of one downstream run.

    Attributes:
        method (str): The pretraining it starts from ('random init' for none).
        protocol (str): The protocol run's title, a table column ('nuScenes 1%').
        seed (int, optional): ``randomness.seed`` of the run (the evaluation seed), when known.
        metrics (dict): SegMetric's result as logged: ``miou``, per-class IoU, ``acc`` ... as
            fractions.
        pretrain (int, optional): Which of the method's pretraining runs it starts from (its
            pretraining seed index), when the method was evaluated from several; None for one
            pretraining run (or one not known).
    """
    method: str
    protocol: str
    seed: Optional[int]
    metrics: Dict[str, float]
    pretrain: Optional[int] = None

    @property
    def miou(self) -> float:
        """float: The mIoU in % (NaN for a failed run)."""
        value = self.metrics.get('miou')
        return float('nan') if value is None else 100 * value

    @property
    def failed(self) -> bool:
        """bool: Whether the run failed: its mIoU is not a finite number."""
        return not is_finite(self.miou)

    @property
    def pair_key(self) -> Tuple[Optional[int], Optional[int]]:
        """tuple: (pretraining seed, evaluation seed): what a paired comparison matches."""
        return self.pretrain, self.seed

    def seed_name(self) -> str:
        """str: 'seed 1', or 'pretraining 2 / seed 1' for one of several pretraining runs."""
        seed = f'seed {self.seed}' if self.seed is not None else 'seed ?'
        return seed if self.pretrain is None else f'pretraining {self.pretrain} / {seed}'

    def class_iou(self) -> Dict[str, float]:
        """dict: Each class's IoU in % (NaN for a class absent from the evaluation data)."""
        return {k: 100 * v for k, v in self.metrics.items()
                if k not in NON_CLASS_KEYS and isinstance(v, (int, float))}


@dataclass
class Evaluation:
    """What the evaluation of one method (one or several pretraining checkpoints) under one
    protocol gave.

    Attributes:
        protocol (Protocol): The protocol.
        label (str): The method's label.
        checkpoints (tuple[str | None, ...]): The pretraining checkpoints, one per pretraining
            seed (``(None,)``: random init). A single path or None is taken as one checkpoint.
        seeds (tuple[int, ...]): The evaluation seeds.
        launcher (Launcher): How the jobs ran.
        options (tuple[str, ...]): The extra ``--cfg-options`` of every run.
        results (list[RunResult]): One per job, in job order.
        steps (dict): The step each job took this time, by job name.
    """
    protocol: Protocol
    label: str
    checkpoints: Union[None, str, Tuple[Optional[str], ...]]
    seeds: Tuple[int, ...]
    launcher: Launcher
    options: Tuple[str, ...] = ()
    results: List[RunResult] = field(default_factory=list)
    steps: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.checkpoints = as_checkpoints(self.checkpoints)

    @property
    def pretraining_seeds(self) -> int:
        """int: How many pretraining runs were evaluated."""
        return len(self.checkpoints)


def as_checkpoints(checkpoints) -> Tuple[Optional[str], ...]:
    """One checkpoint (a path, or None for random init) or several, as a tuple."""
    if checkpoints is None or isinstance(checkpoints, str):
        return (checkpoints, )
    return tuple(checkpoints)


def checkpoint_label(checkpoint: Optional[str]) -> str:
    """A method label for a pretraining checkpoint: the name of its work directory (or the
    file's name at the top level), or 'random init' for no checkpoint."""
    if not checkpoint:
        return RANDOM_INIT
    return osp.basename(osp.dirname(checkpoint)) or osp.basename(checkpoint)


def group(results: Sequence[RunResult]) -> Dict[Tuple[str, str], List[RunResult]]:
    """The results of each (method, protocol), in order of first appearance."""
    groups: Dict[Tuple[str, str], List[RunResult]] = {}
    for r in results:
        groups.setdefault((r.method, r.protocol), []).append(r)
    return groups


def miou_summary(results: Sequence[RunResult]) -> Optional[Summary]:
    """Statistics of the mIoU (%) over the runs of one group (every pretraining seed and
    evaluation seed); its ``non_finite`` positions are the failed runs."""
    return summarize(r.miou for r in results)


def failed_runs(results: Sequence[RunResult]) -> List[RunResult]:
    """The runs of a group whose mIoU is not finite, in order."""
    return [r for r in results if r.failed]


def seed_counts(results: Sequence[RunResult]) -> Tuple[int, int]:
    """(pretraining seeds, evaluation seeds) among ``results``: the numbers of distinct
    pretraining runs (one when none is indexed) and of distinct evaluation seeds."""
    return (len({r.pretrain for r in results}), len({r.seed for r in results}))


def class_names(results: Sequence[RunResult]) -> List[str]:
    """The classes of the results, in the order of the first result that has them."""
    return list(dict.fromkeys(c for r in results for c in r.class_iou()))


def class_summaries(results: Sequence[RunResult]) -> Dict[str, Optional[Summary]]:
    """Statistics of each class's IoU (%) over the runs of one group that did not fail (None
    where every such run gives NaN: a class absent from the evaluation data)."""
    kept = [r for r in results if not r.failed]
    out = {}
    for c in class_names(results):
        s = summarize(r.class_iou().get(c) for r in kept)
        out[c] = s if s is not None and s.n else None
    return out
