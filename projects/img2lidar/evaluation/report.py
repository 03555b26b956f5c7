"""Views of :class:`~.results.RunResult` lists: markdown tables, the evaluation's JSON file (and
its reader), written beside a bar chart (:mod:`.chart`).

The evaluation of one checkpoint under one protocol is written to
``<work-dir>/<protocol>/evaluation.{md,json,png}``: the header (checkpoint, seeds, the pinned
hyper-parameters of every run), mIoU statistics per run over the seeds and per-class IoU.
tools/results_table.py shows the same results, from these files or from work directories, as
one table of methods x protocols.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

from .protocol import REPO_ROOT, ProtocolRun
from .results import (Evaluation, RunResult, class_names, class_summaries, group,
                      miou_summary)
from .statistics import CONFIDENCE, Summary

FORMAT = 'img2lidar-evaluation/1'
EVALUATION_FILES = ('evaluation.md', 'evaluation.json', 'evaluation.png')


def shown_path(path: str) -> str:
    """A path relative to the repository root when it is inside it."""
    rel = osp.relpath(path, REPO_ROOT)
    return path if rel.startswith('..') else rel


def cell(summary: Optional[Summary], digits: int = 1) -> str:
    """'40.5' for one run, '40.5 ± 0.3' (mean ± sample std) for several, '-' for none."""
    if summary is None:
        return '-'
    if summary.std is None:
        return f'{summary.mean:.{digits}f}'
    return f'{summary.mean:.{digits}f} ± {summary.std:.{digits}f}'


def method_table(results: Sequence[RunResult]) -> str:
    """Markdown: mIoU (%) of each method (rows) under each protocol (columns)."""
    groups = group(results)
    methods = list(dict.fromkeys(m for m, _ in groups))
    protocols = list(dict.fromkeys(p for _, p in groups))
    lines = ['| method | ' + ' | '.join(protocols) + ' |', '|---|' + '---|' * len(protocols)]
    for m in methods:
        vals = [cell(miou_summary(groups[(m, p)])) if (m, p) in groups else '-'
                for p in protocols]
        lines.append(f'| {m} | ' + ' | '.join(vals) + ' |')
    return '\n'.join(lines)


def class_table(results: Sequence[RunResult], with_method: bool = True) -> str:
    """Markdown: each class's IoU (%) per (method,) protocol, over its runs."""
    classes = class_names(results)
    first = ['method', 'protocol'] if with_method else ['run']
    lines = ['| ' + ' | '.join(first + classes) + ' |', '|' + '---|' * (len(first) + len(classes))]
    for (m, p), runs in group(results).items():
        per_class = class_summaries(runs)
        vals = [cell(per_class.get(c)) for c in classes]
        lines.append('| ' + ' | '.join(([m, p] if with_method else [p]) + vals) + ' |')
    return '\n'.join(lines)


def statistics_table(results: Sequence[RunResult]) -> str:
    """Markdown: mIoU (%) statistics of each protocol run over its seeds."""
    pct = f'{round(100 * CONFIDENCE)}%'
    lines = [f'| run | mIoU mean | std | {pct} CI | n | per seed |', '|---|---|---|---|---|---|']
    for (_, p), runs in group(results).items():
        s = miou_summary(runs)
        std = '-' if s.std is None else f'{s.std:.2f}'
        ci = '-' if s.ci is None else f'[{s.ci[0]:.2f}, {s.ci[1]:.2f}]'
        seeds = ', '.join(f'{r.miou:.2f} (seed {r.seed})' for r in runs)
        lines.append(f'| {p} | {s.mean:.2f} | {std} | {ci} | {s.n} | {seeds} |')
    return '\n'.join(lines)


def schedule(run: ProtocolRun) -> str:
    """The pinned length of training, in words."""
    for key, unit in (('epochs', 'epoch'), ('iters', 'iteration')):
        if key in run.pinned:
            n = run.pinned[key]
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return '-' if run.trains else 'none (test only)'


def pinned_table(evaluation: Evaluation) -> str:
    """Markdown: the pinned hyper-parameters of every run of the protocol."""
    lines = ['| run | config | mode | lr | head lr | schedule | batch (total) | split |',
             '|---|---|---|---|---|---|---|---|']
    for run in evaluation.protocol.runs:
        p = run.pinned
        lines.append(' | '.join([
            f'| {run.title}', f'`{shown_path(run.config)}`', run.mode, str(p.get('lr', '-')),
            str(p.get('head_lr', '-')), schedule(run),
            str(p.get('batch', '-')), run.split_definition()]) + ' |')
    return '\n'.join(lines)


def header(evaluation: Evaluation) -> str:
    """Markdown: what was evaluated, how, and with which pinned hyper-parameters."""
    e = evaluation
    launcher = e.launcher.kind + (f', {e.launcher.processes} processes per job'
                                  if e.launcher.kind != 'none' else ', one process per job')
    checkpoint = f'`{shown_path(e.checkpoint)}`' if e.checkpoint else 'none (random init)'
    lines = [f'# {e.label}: protocol `{e.protocol.name}`', '', e.protocol.description, '',
             f'- checkpoint: {checkpoint}',
             f'- protocol file: `{shown_path(e.protocol.path)}`',
             f"- seeds (`randomness.seed`): {', '.join(map(str, e.seeds))}; test-only runs use "
             f'the first',
             f'- launcher: {launcher}',
             f'- statistics over seeds: mean, sample standard deviation (ddof=1) and the '
             f'{round(100 * CONFIDENCE)}% Student-t confidence interval of the mean']
    if e.options:
        lines.append('- extra options of every run: ' + ' '.join(f'`{o}`' for o in e.options))
    return '\n'.join(lines + ['', '## Pinned hyper-parameters', '', pinned_table(e)])


def evaluation_markdown(evaluation: Evaluation) -> str:
    """The whole markdown report of an evaluation."""
    return '\n'.join([header(evaluation), '', '## mIoU (%)', '',
                      statistics_table(evaluation.results), '',
                      '## Per-class IoU (%), mean ± std over seeds', '',
                      class_table(evaluation.results, with_method=False), ''])


def _summary_dict(summary: Optional[Summary]) -> Optional[dict]:
    return summary.to_dict() if summary else None


def evaluation_dict(evaluation: Evaluation) -> dict:
    """The evaluation as JSON-ready data (the format :func:`read_evaluation` reads)."""
    e = evaluation
    groups = group(e.results)
    runs = []
    for run in e.protocol.runs:
        results = groups.get((e.label, run.title), [])
        runs.append(dict(
            name=run.name, title=run.title, config=shown_path(run.config), mode=run.mode,
            pinned=run.pinned, split=run.split_definition(),
            results=[dict(seed=r.seed, metrics=r.metrics) for r in results],
            miou=_summary_dict(miou_summary(results)),
            classes={c: _summary_dict(s) for c, s in class_summaries(results).items()}))
    return dict(format=FORMAT, method=e.label, checkpoint=e.checkpoint,
                protocol=dict(name=e.protocol.name, file=shown_path(e.protocol.path),
                              description=e.protocol.description),
                seeds=list(e.seeds), launcher=dict(kind=e.launcher.kind,
                                                   processes=e.launcher.processes),
                options=list(e.options), runs=runs)


def read_evaluation(path: str) -> List[RunResult]:
    """The results in an ``evaluation.json`` (or the folder that holds one).

    Raises:
        ValueError: When the file is not an evaluation written by :func:`write_evaluation`.
    """
    if osp.isdir(path):
        path = osp.join(path, 'evaluation.json')
    with open(path) as f:
        data = json.load(f)
    if data.get('format') != FORMAT:
        raise ValueError(f'{path} is not an evaluation file ({FORMAT})')
    return [RunResult(data['method'], run['title'], r['seed'], r['metrics'])
            for run in data['runs'] for r in run['results']]


def write_evaluation(evaluation: Evaluation, out_dir: str) -> Dict[str, str]:
    """Write ``evaluation.md``, ``evaluation.json`` and ``evaluation.png`` to ``out_dir``.

    Returns:
        dict: The path of each file, by extension.
    """
    from .chart import bar_chart
    os.makedirs(out_dir, exist_ok=True)
    paths = {osp.splitext(n)[1][1:]: osp.join(out_dir, n) for n in EVALUATION_FILES}
    with open(paths['md'], 'w') as f:
        f.write(evaluation_markdown(evaluation))
    with open(paths['json'], 'w') as f:
        json.dump(evaluation_dict(evaluation), f, indent=2)
    bar_chart(evaluation.results, paths['png'],
              f'{evaluation.label}: protocol {evaluation.protocol.name}')
    return paths
