"""One table of mIoU per protocol for a list of runs, the way papers report it, plus the
per-class IoU: a view of the same :class:`~.results.RunResult` data as the evaluation harness's
reports, and optionally each method's difference from a reference method, paired by seed.

    python tools/results_table.py work_dirs/probe_stslidr work_dirs/ft1_stslidr \
        work_dirs/evaluation/stslidr/slidr [--labels ...] [--paired-with SLidR] \
        [--out table.md] [--json t.json] [--png chart.png]

Each path is either

- an evaluation of tools/evaluate_pretraining.py (``<work-dir>/<protocol>`` or its
  ``evaluation.json``): its runs, every pretraining and evaluation seed, under the method label
  it was given; or
- one run of tools/train.py or tools/test.py on a downstream config (any mmengine work
  directory). What it evaluates is read from the config that mmengine dumped into it
  (``mmengine.Config.fromfile``; :mod:`.protocol_label`): its protocol label from its dataset
  type and label fraction ('linear probe, nuScenes', 'nuScenes 1%', 'PandaSet 100%',
  'SemanticKITTI 1%', 'zero-shot, nuScenes' ...), its seed from ``randomness.seed``, and its
  method from ``--labels`` or, failing that, from the pretraining checkpoint it loads (the name
  of its work directory), or 'random init' when it loads none. The metrics are the last
  SegMetric result (``miou``, per-class IoU) found in its json logs.

Runs of one method and protocol (several seeds) share a cell: mean ± sample standard deviation
over those that did not fail, with the failed ones (non-finite mIoU) counted in the cell.
"""
import glob
import os.path as osp
import sys
from typing import List, Optional, Sequence

from .atomic_file import write_json_atomic, write_text_atomic
from .paired import PairedDifference, paired_differences
from .protocol_label import config_seed, pretraining_checkpoint, protocol_label
from .report import class_table, failed_dicts, method_table, paired_table, read_evaluation
from .results import RunResult, checkpoint_label, group, miou_summary, seed_counts
from .run_logs import last_seg_metrics, seg_metrics

__all__ = ['collect', 'format_tables', 'write_results', 'find_config', 'read_run_config',
           'results_dict', 'last_seg_metrics']

RESULTS_FORMAT = 'img2lidar-results/2'


def find_config(work_dir: str) -> Optional[str]:
    """The config mmengine dumped into the work dir (the newest .py at its top level)."""
    configs = sorted(glob.glob(osp.join(work_dir, '*.py')), key=osp.getmtime)
    return configs[-1] if configs else None


def read_run_config(path: str):
    """The config mmengine dumped, read with ``mmengine.Config.fromfile``.

    Raises:
        ValueError: Naming the file, when it is not a readable config.
    """
    from mmengine.config import Config
    try:
        return Config.fromfile(path, import_custom_modules=False)
    except Exception as e:  # noqa: BLE001 (mmengine raises many kinds on a bad file)
        raise ValueError(
            f'{path}: not a config mmengine can read ({type(e).__name__}: {e})') from e


def is_evaluation(path: str) -> bool:
    """Whether ``path`` is an evaluation's ``evaluation.json`` or the folder holding one."""
    return (path.endswith('.json') and osp.isfile(path)) or osp.isfile(
        osp.join(path, 'evaluation.json'))


def work_dir_result(work_dir: str, label: Optional[str]) -> Optional[RunResult]:
    """The result of one tools/train.py or tools/test.py work directory, if it holds one.

    Raises:
        ValueError: When it holds a result but no config, or a config that cannot be labelled.
    """
    metrics = last_seg_metrics(work_dir)
    if metrics is None:
        return None
    path = find_config(work_dir)
    if path is None:
        raise ValueError(f'{work_dir} has SegMetric results but no config (.py) at its top '
                         'level: mmengine dumps the one it ran there')
    cfg = read_run_config(path)
    return RunResult(label or checkpoint_label(pretraining_checkpoint(cfg)),
                     protocol_label(cfg, path), config_seed(cfg), seg_metrics(metrics))


def collect(paths: Sequence[str], labels: Optional[Sequence[str]] = None) -> List[RunResult]:
    """The results of evaluations and work directories (see the module docstring).

    Args:
        paths (Sequence[str]): Evaluations or work directories.
        labels (Sequence[str], optional): One method label per path, replacing the one found.

    Returns:
        list[RunResult]: In the order of ``paths``; a path without results is left out with a
        warning.
    """
    results = []
    for i, path in enumerate(paths):
        label = labels[i] if labels else None
        if is_evaluation(path):
            found = [RunResult(label or r.method, r.protocol, r.seed, r.metrics, r.pretrain)
                     for r in read_evaluation(path)]
        else:
            one = work_dir_result(path, label)
            found = [one] if one else []
        if not found:
            print(f'warning: no SegMetric result in {path}', file=sys.stderr)
        results += found
    return results


def format_tables(results: Sequence[RunResult],
                  differences: Optional[Sequence[PairedDifference]] = None) -> str:
    """Markdown: mIoU (%) per method x protocol, then, when given, the paired differences from
    a reference method, then per-class IoU (%) per method and protocol; several seeds give
    mean ± std."""
    parts = [method_table(results)]
    if differences is not None:
        reference = differences[0].reference if differences else '-'
        parts.append(f'Difference from {reference} (mIoU points), paired by (pretraining seed, '
                     'evaluation seed); Student-t interval of the mean difference:\n\n'
                     + paired_table(differences))
    parts.append(class_table(results))
    return '\n\n'.join(parts)


def results_dict(results: Sequence[RunResult],
                 differences: Optional[Sequence[PairedDifference]] = None) -> dict:
    """The tables as JSON-ready data: per method and protocol the mIoU statistics (over the
    runs that did not fail), the seed counts and the failed runs; the paired differences when
    given."""
    methods: dict = {}
    for (method, protocol), runs in group(results).items():
        pretraining, evaluation = seed_counts(runs)
        s = miou_summary(runs)
        methods.setdefault(method, {})[protocol] = dict(
            s.to_dict(), pretraining_seeds=pretraining, evaluation_seeds=evaluation,
            failed=failed_dicts(runs))
    out = dict(format=RESULTS_FORMAT, methods=methods)
    if differences is not None:
        out['paired'] = [dict(method=d.method, reference=d.reference, protocol=d.protocol,
                              pairs=[list(k) for k in d.keys], unpaired=d.unpaired,
                              difference=d.differences.to_dict() if d.differences else None)
                         for d in differences]
    return out


def write_results(results: Sequence[RunResult], out: Optional[str] = None,
                  json_file: Optional[str] = None, png: Optional[str] = None,
                  paired_with: Optional[str] = None) -> str:
    """Format the tables of ``results`` (from :func:`collect`) and write them where asked.

    Args:
        results (Sequence[RunResult]): The runs.
        out (str, optional): A markdown file for the tables.
        json_file (str, optional): A JSON file for :func:`results_dict`.
        png (str, optional): A bar chart (:func:`~.chart.bar_chart`).
        paired_with (str, optional): A reference method: add each other method's difference
            from it, paired by (pretraining seed, evaluation seed)
            (:func:`~.paired.paired_differences`).

    Returns:
        str: The markdown tables.
    """
    differences = paired_differences(results, paired_with) if paired_with else None
    text = format_tables(results, differences)
    if out:
        write_text_atomic(out, text + '\n')
    if json_file:
        write_json_atomic(json_file, results_dict(results, differences))
    if png:
        from .chart import bar_chart
        bar_chart(results, png, 'mIoU per protocol')
    return text
