"""Views of :class:`~.results.RunResult` lists: markdown tables, the evaluation's JSON file (and
its reader), written beside a bar chart (:mod:`.chart`).

The evaluation of one method under one protocol is written to
``<work-dir>/<protocol>/evaluation.{md,json,png}``: the header (checkpoints, seeds, the pinned
hyper-parameters of every run), mIoU statistics per run over all (pretraining seed, evaluation
seed) results and per-class IoU. tools/results_table.py shows the same results, from these
files or from work directories, as one table of methods x protocols.

Failed runs (non-finite mIoU) are shown, never dropped: every mIoU cell and statistic says how
many of its runs failed and which; its mean, standard deviation and interval are over the runs
that did not fail (a reader sees both: the failure rate is a result of the method, and the
other runs still tell how good it is when it trains). Every file is written whole or not at all
(:mod:`.atomic_file`).
"""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

from .atomic_file import write_json_atomic, write_text_atomic
from .paired import PairedDifference
from .protocol import REPO_ROOT, ProtocolRun
from .results import (Evaluation, RunResult, class_names, class_summaries, failed_runs, group,
                      miou_summary, seed_counts)
from .statistics import CONFIDENCE, Summary

FORMAT = 'img2lidar-evaluation/2'
#: the formats :func:`read_evaluation` reads (1: one checkpoint, no pretraining seeds)
READABLE_FORMATS = ('img2lidar-evaluation/1', FORMAT)
EVALUATION_FILES = ('evaluation.md', 'evaluation.json', 'evaluation.png')
STATISTICS_NOTE = (f'mean, sample standard deviation (ddof=1) and the {round(100 * CONFIDENCE)}% '
                   'Student-t confidence interval of the mean over every (pretraining seed, '
                   'evaluation seed) result that did not fail; failed runs (non-finite mIoU) '
                   'are counted and named apart')


def shown_path(path: str) -> str:
    """A path relative to the repository root when it is inside it."""
    rel = osp.relpath(path, REPO_ROOT)
    return path if rel.startswith('..') else rel


def cell(summary: Optional[Summary], digits: int = 1) -> str:
    """'40.5' for one value, '40.5 ± 0.3' (mean ± sample std) for several, '-' for none."""
    if summary is None or summary.mean is None:
        return '-'
    if summary.std is None:
        return f'{summary.mean:.{digits}f}'
    return f'{summary.mean:.{digits}f} ± {summary.std:.{digits}f}'


def failed_note(summary: Optional[Summary]) -> str:
    """'' when no run failed, else ' (1 of 3 failed)'."""
    if summary is None or not summary.non_finite:
        return ''
    return f' ({len(summary.non_finite)} of {summary.total} failed)'


def miou_cell(results: Sequence[RunResult], digits: int = 1) -> str:
    """The mIoU cell of a group: mean ± std over the runs that did not fail, and how many
    failed ('failed (3 of 3)' when all did)."""
    s = miou_summary(results)
    if s is not None and s.n == 0:
        return f'failed ({s.total} of {s.total})'
    return cell(s, digits) + failed_note(s)


def seeds_text(results: Sequence[RunResult]) -> str:
    """'3 × 2': pretraining seeds × evaluation seeds among ``results``."""
    pretraining, evaluation = seed_counts(results)
    return f'{pretraining} × {evaluation}'


def method_table(results: Sequence[RunResult]) -> str:
    """Markdown: mIoU (%) of each method (rows) under each protocol (columns), with the number
    of pretraining and evaluation seeds of each method."""
    groups = group(results)
    methods = list(dict.fromkeys(m for m, _ in groups))
    protocols = list(dict.fromkeys(p for _, p in groups))
    lines = ['| method | ' + ' | '.join(protocols) + ' | seeds (pretraining × evaluation) |',
             '|---|' + '---|' * (len(protocols) + 1)]
    for m in methods:
        vals = [miou_cell(groups[(m, p)]) if (m, p) in groups else '-' for p in protocols]
        mine = [r for r in results if r.method == m]
        lines.append(f'| {m} | ' + ' | '.join(vals) + f' | {seeds_text(mine)} |')
    return '\n'.join(lines)


def class_table(results: Sequence[RunResult], with_method: bool = True) -> str:
    """Markdown: each class's IoU (%) per (method,) protocol, over its runs that did not
    fail."""
    classes = class_names(results)
    first = ['method', 'protocol'] if with_method else ['run']
    lines = ['| ' + ' | '.join(first + classes) + ' |', '|' + '---|' * (len(first) + len(classes))]
    for (m, p), runs in group(results).items():
        per_class = class_summaries(runs)
        vals = [cell(per_class.get(c)) for c in classes]
        lines.append('| ' + ' | '.join(([m, p] if with_method else [p]) + vals) + ' |')
    return '\n'.join(lines)


def failed_text(results: Sequence[RunResult]) -> str:
    """'-', or the failed runs: '1: seed 2' / '2: pretraining 0 / seed 1, ...'."""
    failed = failed_runs(results)
    if not failed:
        return '-'
    return f'{len(failed)}: ' + ', '.join(r.seed_name() for r in failed)


def statistics_table(results: Sequence[RunResult]) -> str:
    """Markdown: mIoU (%) statistics of each protocol run over its (pretraining seed,
    evaluation seed) results."""
    pct = f'{round(100 * CONFIDENCE)}%'
    lines = [f'| run | mIoU mean | std | {pct} CI | n | seeds (pretraining × evaluation) | '
             'failed | per run |', '|---|---|---|---|---|---|---|---|']
    for (_, p), runs in group(results).items():
        s = miou_summary(runs)
        mean = '-' if s.mean is None else f'{s.mean:.2f}'
        std = '-' if s.std is None else f'{s.std:.2f}'
        ci = '-' if s.ci is None else f'[{s.ci[0]:.2f}, {s.ci[1]:.2f}]'
        each = ', '.join(f'{r.miou:.2f} ({r.seed_name()})' for r in runs)
        lines.append(f'| {p} | {mean} | {std} | {ci} | {s.n} | {seeds_text(runs)} | '
                     f'{failed_text(runs)} | {each} |')
    return '\n'.join(lines)


def paired_table(differences: Sequence[PairedDifference]) -> str:
    """Markdown: each method's mIoU difference from the reference (points), paired by
    (pretraining seed, evaluation seed): mean, Student-t interval, number of pairs."""
    pct = f'{round(100 * CONFIDENCE)}%'
    lines = [f'| method | protocol | difference (mean) | std | {pct} CI | pairs | failed pairs '
             '| unpaired results |', '|---|---|---|---|---|---|---|---|']
    for d in differences:
        s = d.differences
        mean = '-' if s is None or s.mean is None else f'{s.mean:+.2f}'
        std = '-' if s is None or s.std is None else f'{s.std:.2f}'
        ci = '-' if s is None or s.ci is None else f'[{s.ci[0]:+.2f}, {s.ci[1]:+.2f}]'
        failed = ', '.join(f'pretraining {p} / seed {e}' if p is not None else f'seed {e}'
                           for p, e in d.failed_keys) or '-'
        lines.append(f'| {d.method} | {d.protocol} | {mean} | {std} | {ci} | '
                     f'{s.n if s else 0} | {failed} | {d.unpaired} |')
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


def checkpoint_lines(evaluation: Evaluation) -> List[str]:
    """Markdown list items: the evaluated checkpoint, or each pretraining run's."""
    shown = [f'`{shown_path(c)}`' if c else 'none (random init)' for c in evaluation.checkpoints]
    if len(shown) == 1:
        return [f'- checkpoint: {shown[0]}']
    return [f'- pretraining seeds: {len(shown)} pretraining runs of the method, each evaluated '
            'with every evaluation seed'] + [f'  - pretraining {i}: {c}'
                                             for i, c in enumerate(shown)]


def header(evaluation: Evaluation) -> str:
    """Markdown: what was evaluated, how, and with which pinned hyper-parameters."""
    e = evaluation
    launcher = e.launcher.kind + (f', {e.launcher.processes} processes per job'
                                  if e.launcher.kind != 'none' else ', one process per job')
    lines = [f'# {e.label}: protocol `{e.protocol.name}`', '', e.protocol.description, '',
             *checkpoint_lines(e),
             f'- protocol file: `{shown_path(e.protocol.path)}`',
             f"- evaluation seeds (`randomness.seed`): {', '.join(map(str, e.seeds))}; "
             'test-only runs use the first',
             f'- results per training run: {e.pretraining_seeds} pretraining × {len(e.seeds)} '
             'evaluation seeds',
             f'- launcher: {launcher}',
             f'- statistics: {STATISTICS_NOTE}']
    if e.options:
        lines.append('- extra options of every run: ' + ' '.join(f'`{o}`' for o in e.options))
    return '\n'.join(lines + ['', '## Pinned hyper-parameters', '', pinned_table(e)])


def evaluation_markdown(evaluation: Evaluation) -> str:
    """The whole markdown report of an evaluation."""
    return '\n'.join([header(evaluation), '', '## mIoU (%)', '',
                      statistics_table(evaluation.results), '',
                      '## Per-class IoU (%), mean ± std over the runs that did not fail', '',
                      class_table(evaluation.results, with_method=False), ''])


def _summary_dict(summary: Optional[Summary]) -> Optional[dict]:
    return summary.to_dict() if summary else None


def result_dict(r: RunResult) -> dict:
    """One result as the evaluation file stores it."""
    return dict(pretrain=r.pretrain, seed=r.seed, failed=r.failed, metrics=r.metrics)


def failed_dicts(results: Sequence[RunResult]) -> List[dict]:
    """The failed runs, as ``{pretrain, seed}``."""
    return [dict(pretrain=r.pretrain, seed=r.seed) for r in failed_runs(results)]


def evaluation_dict(evaluation: Evaluation) -> dict:
    """The evaluation as JSON-ready data (the format :func:`read_evaluation` reads). A failed
    run's metrics keep their NaN (Python's json writes it as ``NaN``)."""
    e = evaluation
    groups = group(e.results)
    runs = []
    for run in e.protocol.runs:
        results = groups.get((e.label, run.title), [])
        pretraining, evaluation_seeds = seed_counts(results)
        runs.append(dict(
            name=run.name, title=run.title, config=shown_path(run.config), mode=run.mode,
            pinned=run.pinned, split=run.split_definition(),
            results=[result_dict(r) for r in results],
            pretraining_seeds=pretraining, evaluation_seeds=evaluation_seeds,
            failed=failed_dicts(results),
            miou=_summary_dict(miou_summary(results)),
            classes={c: _summary_dict(s) for c, s in class_summaries(results).items()}))
    return dict(format=FORMAT, method=e.label, checkpoints=list(e.checkpoints),
                checkpoint=e.checkpoints[0] if len(e.checkpoints) == 1 else None,
                protocol=dict(name=e.protocol.name, file=shown_path(e.protocol.path),
                              description=e.protocol.description),
                seeds=list(e.seeds), launcher=dict(kind=e.launcher.kind,
                                                   processes=e.launcher.processes),
                options=list(e.options), statistics=STATISTICS_NOTE, runs=runs)


def read_evaluation(path: str) -> List[RunResult]:
    """The results in an ``evaluation.json`` (or the folder that holds one).

    Raises:
        ValueError: When the file is not an evaluation written by :func:`write_evaluation`.
    """
    if osp.isdir(path):
        path = osp.join(path, 'evaluation.json')
    with open(path) as f:
        data = json.load(f)
    if data.get('format') not in READABLE_FORMATS:
        raise ValueError(f'{path} is not an evaluation file (one of {READABLE_FORMATS})')
    return [RunResult(data['method'], run['title'], r['seed'], r['metrics'], r.get('pretrain'))
            for run in data['runs'] for r in run['results']]


def write_evaluation(evaluation: Evaluation, out_dir: str) -> Dict[str, str]:
    """Write ``evaluation.md``, ``evaluation.json`` and ``evaluation.png`` to ``out_dir``.

    Returns:
        dict: The path of each file, by extension.
    """
    from .chart import bar_chart
    paths = {osp.splitext(n)[1][1:]: osp.join(out_dir, n) for n in EVALUATION_FILES}
    write_text_atomic(paths['md'], evaluation_markdown(evaluation))
    write_json_atomic(paths['json'], evaluation_dict(evaluation))
    bar_chart(evaluation.results, paths['png'],
              f'{evaluation.label}: protocol {evaluation.protocol.name}')
    return paths
