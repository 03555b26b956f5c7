"""The results of downstream runs: what the evaluation report and tools/results_table.py both
show. One :class:`RunResult` per run (method, protocol run, seed, SegMetric result); tables
group them by method and protocol run and summarise the seeds with :mod:`.statistics`."""
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .commands import Launcher
from .protocol import Protocol
from .run_logs import LOG_FIELDS
from .statistics import Summary, summarize

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
        seed (int, optional): ``randomness.seed`` of the run, when known.
        metrics (dict): SegMetric's result as logged: ``miou``, per-class IoU, ``acc`` ... as
            fractions.
    """
    method: str
    protocol: str
    seed: Optional[int]
    metrics: Dict[str, float]

    @property
    def miou(self) -> float:
        """float: The mIoU in %."""
        return 100 * self.metrics['miou']

    def class_iou(self) -> Dict[str, float]:
        """dict: Each class's IoU in % (NaN for a class absent from the evaluation data)."""
        return {k: 100 * v for k, v in self.metrics.items() if k not in NON_CLASS_KEYS}


@dataclass
class Evaluation:
    """What one evaluation of one checkpoint under one protocol gave.

    Attributes:
        protocol (Protocol): The protocol.
        label (str): The method's label.
        checkpoint (str, optional): The checkpoint (None: random init).
        seeds (tuple[int, ...]): The seeds.
        launcher (Launcher): How the jobs ran.
        options (tuple[str, ...]): The extra ``--cfg-options`` of every run.
        results (list[RunResult]): One per job, in job order.
        steps (dict): The step each job took this time, by job name.
    """
    protocol: Protocol
    label: str
    checkpoint: Optional[str]
    seeds: Tuple[int, ...]
    launcher: Launcher
    options: Tuple[str, ...] = ()
    results: List[RunResult] = field(default_factory=list)
    steps: Dict[str, str] = field(default_factory=dict)


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
    """Statistics of the mIoU (%) over the runs (seeds) of one group."""
    return summarize(r.miou for r in results)


def class_names(results: Sequence[RunResult]) -> List[str]:
    """The classes of the results, in the order of the first result that has them."""
    return list(dict.fromkeys(c for r in results for c in r.class_iou()))


def class_summaries(results: Sequence[RunResult]) -> Dict[str, Optional[Summary]]:
    """Statistics of each class's IoU (%) over the runs of one group (None where every run
    gives NaN)."""
    return {c: summarize(r.class_iou().get(c) for r in results) for c in class_names(results)}
