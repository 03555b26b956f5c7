"""One table of mIoU per protocol for a list of runs, the way papers report it, plus the
per-class IoU: a view of the same :class:`~.results.RunResult` data as the evaluation harness's
reports.

    python tools/results_table.py work_dirs/probe_stslidr work_dirs/ft1_stslidr \
        work_dirs/evaluation/stslidr/slidr [--labels ...] [--out table.md] [--json t.json]

Each path is either

- an evaluation of tools/evaluate_pretraining.py (``<work-dir>/<protocol>`` or its
  ``evaluation.json``): its runs, every seed, under the method label it was given; or
- one run of tools/train.py or tools/test.py on a downstream config (any mmengine work
  directory). Its protocol comes from the config that mmengine dumped into it (linear probe,
  nuScenes k%, SemanticKITTI 1%, zero-shot), its seed from that config's ``randomness``. Its
  method label comes from ``--labels`` or, failing that, from the pretraining checkpoint in
  that config (the name of its work directory), or 'random init' when the config loads none.
  The metrics are the last SegMetric result (``miou``, per-class IoU) found in its json logs.

Runs of one method and protocol (several seeds) share a cell: mean ± sample standard deviation.
"""
import glob
import json
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Sequence

from .report import class_table, method_table, read_evaluation
from .results import RunResult, checkpoint_label, group, miou_summary
from .run_logs import last_seg_metrics, seg_metrics

__all__ = ['collect', 'format_tables', 'write_results', 'find_config', 'protocol_of',
           'method_of', 'seed_of', 'last_seg_metrics']


def find_config(work_dir: str) -> Optional[str]:
    """The config mmengine dumped into the work dir (the newest .py at its top level)."""
    configs = sorted(glob.glob(osp.join(work_dir, '*.py')), key=osp.getmtime)
    return configs[-1] if configs else None


def protocol_of(config_text: str, config_name: str) -> str:
    """Protocol name from the config: 'linear probe', 'nuScenes 1%', 'SemanticKITTI 1%', ..."""
    name = config_name.lower()
    if 'zero-shot' in name or 'ZeroShotSegmentor' in config_text:
        return 'zero-shot'
    if 'linear-probe' in name or 'LinearProbe' in config_text:
        return 'linear probe'
    if 'demo' in name:
        return 'few-shot finetune'
    if 'semantickitti' in name or 'SemanticKitti' in config_text:
        m = re.search(r'every_nth\s*=\s*(\d+)', config_text)
        return f'SemanticKITTI {100 // int(m.group(1))}%' if m else 'SemanticKITTI'
    m = re.search(r'few_shot\s*=\s*(\d+)', config_text)
    return f'nuScenes {m.group(1)}%' if m else 'nuScenes 100%'


def method_of(config_text: str) -> str:
    """The pretraining run a downstream config starts from, or 'random init'."""
    m = re.search(r"checkpoint\s*=\s*'([^']+\.pth)'", config_text)
    return checkpoint_label(m.group(1) if m else None)


def seed_of(config_text: str) -> Optional[int]:
    """The ``randomness.seed`` of a dumped config, if it sets one."""
    m = re.search(r'randomness\s*=\s*dict\([^)]*\bseed\s*=\s*(\d+)', config_text)
    return int(m.group(1)) if m else None


def is_evaluation(path: str) -> bool:
    """Whether ``path`` is an evaluation's ``evaluation.json`` or the folder holding one."""
    return (path.endswith('.json') and osp.isfile(path)) or osp.isfile(
        osp.join(path, 'evaluation.json'))


def work_dir_result(work_dir: str, label: Optional[str]) -> Optional[RunResult]:
    """The result of one tools/train.py or tools/test.py work directory, if it holds one."""
    metrics = last_seg_metrics(work_dir)
    if metrics is None:
        return None
    cfg = find_config(work_dir)
    text = open(cfg).read() if cfg else ''
    return RunResult(label or method_of(text), protocol_of(text, osp.basename(cfg or work_dir)),
                     seed_of(text), seg_metrics(metrics))


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
            found = [RunResult(label or r.method, r.protocol, r.seed, r.metrics)
                     for r in read_evaluation(path)]
        else:
            one = work_dir_result(path, label)
            found = [one] if one else []
        if not found:
            print(f'warning: no SegMetric result in {path}', file=sys.stderr)
        results += found
    return results


def format_tables(results: Sequence[RunResult]) -> str:
    """Markdown: mIoU (%) per method x protocol, then per-class IoU (%) per method and
    protocol; several seeds give mean ± std."""
    return method_table(results) + '\n\n' + class_table(results)


def write_results(results: Sequence[RunResult], out: Optional[str] = None,
                  json_file: Optional[str] = None, png: Optional[str] = None) -> str:
    """Format the tables of ``results`` (from :func:`collect`) and write them where asked.

    Args:
        results (Sequence[RunResult]): The runs.
        out (str, optional): A markdown file for the tables.
        json_file (str, optional): A JSON file for ``{method: {protocol: mean mIoU %}}``.
        png (str, optional): A bar chart (:func:`~.chart.bar_chart`).

    Returns:
        str: The markdown tables.
    """
    text = format_tables(results)
    for path in (out, json_file, png):
        if path:
            os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    if out:
        with open(out, 'w') as f:
            f.write(text + '\n')
    if json_file:
        table: Dict[str, Dict[str, float]] = {}
        for (method, protocol), runs in group(results).items():
            table.setdefault(method, {})[protocol] = round(miou_summary(runs).mean, 2)
        with open(json_file, 'w') as f:
            json.dump(table, f, indent=2)
    if png:
        from .chart import bar_chart
        bar_chart(results, png, 'mIoU per protocol')
    return text
