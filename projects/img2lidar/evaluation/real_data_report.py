"""The real-data check's report: its table from the check's ``results*.json``.

Each row (random student, each pretraining method, the teacher at the pixels) has, per point set
(:data:`~.probe_points.POINT_SETS`), the mIoU of its probe for each seed. The table shows the
mean ± sample std over the seeds and, next to it, the row's difference from the reference
method (SLidR) paired by seed: seed k pairs the runs pretrained with seed k whose probes drew
their points and initialisation with seed k, so that what both share cancels; the cell gives the
mean difference and its Student-t interval (:mod:`.paired`, :mod:`.statistics`). A detail table
(:func:`~.report.paired_table`) follows with the spread and the number of pairs.
"""
from typing import Dict, List

from .paired import PairedDifference, paired_differences
from .probe_points import POINT_SETS
from .report import cell, paired_table
from .results import RunResult
from .statistics import CONFIDENCE, summarize

#: the row every other row is compared with
REFERENCE = 'SLidR'
#: column headers of the point sets
POINT_SET_TITLES = {'in_camera': 'points in the camera', 'all_points': 'all points'}
#: how each variant of the check is named in its table title
VARIANT_TITLES = {
    'held-out': 'Held out: pretraining saw sequences 001 and 002 only (without labels); '
                'sequence 003 was seen by no pretraining and no probe training',
    'transductive': 'Transductive: pretraining saw all 10 frames without their labels, sequence '
                    '003 (the scored one) included; the probe trains on 001 and 002 only',
}
SMOKE_NOTE = ('**Smoke run (IMG2LIDAR_TINY=1): tiny pretraining, one seed, the smallest probe; '
              'the numbers mean nothing.**')


def run_results(scores: Dict[str, List[Dict[str, dict]]]) -> List[RunResult]:
    """The check's scores as one :class:`~.results.RunResult` per (row, point set, seed).

    Args:
        scores (dict): Per row, one dict per seed (seed k at position k) of point set ->
            ``{'miou': mIoU in %, ...}``.

    Returns:
        list[RunResult]: ``method`` the row, ``protocol`` the point set, ``seed`` and
        ``pretrain`` the seed (the probe's draw and the pretraining run).
    """
    out = []
    for row, per_seed in scores.items():
        for seed, by_set in enumerate(per_seed):
            for point_set, score in by_set.items():
                out.append(RunResult(row, point_set, seed, dict(miou=score['miou'] / 100),
                                     pretrain=seed))
    return out


def differences_from_reference(scores: Dict[str, List[Dict[str, dict]]],
                               reference: str = REFERENCE) -> Dict[tuple, PairedDifference]:
    """Each other row's difference from ``reference`` paired by seed, by (row, point set);
    empty when ``reference`` was not run."""
    if reference not in scores:
        return {}
    return {(d.method, d.protocol): d
            for d in paired_differences(run_results(scores), reference)}


def difference_cell(d: PairedDifference) -> str:
    """'+1.0 [-1.5, +3.5]' (mean [interval]); the mean only for one pair; '-' for none."""
    s = d.differences if d is not None else None
    if s is None or s.mean is None:
        return '-'
    if s.ci is None:
        return f'{s.mean:+.1f}'
    return f'{s.mean:+.1f} [{s.ci[0]:+.1f}, {s.ci[1]:+.1f}]'


def format_table(data: dict) -> str:
    """The markdown report of one run of the check (the content of its ``results*.json``)."""
    scores = data['scores']
    diffs = differences_from_reference(scores)
    pct = f'{round(100 * CONFIDENCE)}%'
    counts = data['point_counts']
    seeds = f"{data['seeds']} seed{'' if data['seeds'] == 1 else 's'}"
    probe = data['probe']
    lines = [SMOKE_NOTE, ''] if data.get('smoke') else []
    lines += [
        f"{VARIANT_TITLES[data['variant']]}.", '',
        f'mIoU (%) of a linear probe on sequence 003 (over the classes present: '
        f"{counts['in_camera']['classes_present']} among the points in the camera, "
        f"{counts['all_points']['classes_present']} among all points within the range), trained "
        f"on sequences 001 and 002 ({probe['points_per_frame']:,} labelled points drawn per "
        f"frame, {probe['steps']} Adam steps); every row of a column is trained and scored on "
        f"the same points ({counts['in_camera']['train']:,} training, "
        f"{counts['in_camera']['test']:,} scored in the camera; "
        f"{counts['all_points']['train']:,} and {counts['all_points']['test']:,} over all "
        f"points). Mean ± sample std over {seeds}; Δ {REFERENCE}: the difference "
        f'from {REFERENCE} paired by seed (same pretraining seed, same probe draw), mean '
        f'[{pct} Student-t interval].', '']
    header = ['features']
    for point_set in POINT_SETS:
        header += [POINT_SET_TITLES[point_set], f'Δ {REFERENCE}']
    lines += ['| ' + ' | '.join(header) + ' |', '|---|' + '---:|' * (len(header) - 1)]
    for row, per_seed in scores.items():
        cells = [row]
        for point_set in POINT_SETS:
            values = [s[point_set]['miou'] for s in per_seed if point_set in s]
            if not values:
                cells += ['-', '-']
                continue
            cells.append(cell(summarize(values)))
            cells.append('(reference)' if row == REFERENCE else
                         difference_cell(diffs.get((row, point_set))))
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', f'Paired differences from {REFERENCE} (mIoU points; protocol: the point set):',
              '', paired_table(list(diffs.values()))]
    return '\n'.join(lines) + '\n'


def summaries(scores: Dict[str, List[Dict[str, dict]]]) -> Dict[str, Dict[str, dict]]:
    """Per row and point set, the statistics of the mIoU over the seeds (JSON-ready)."""
    out: Dict[str, Dict[str, dict]] = {}
    for row, per_seed in scores.items():
        for point_set in POINT_SETS:
            values = [s[point_set]['miou'] for s in per_seed if point_set in s]
            if values:
                out.setdefault(row, {})[point_set] = summarize(values).to_dict()
    return out


def differences_json(scores: Dict[str, List[Dict[str, dict]]]) -> Dict[str, Dict[str, dict]]:
    """Per row and point set, the paired differences from the reference (JSON-ready)."""
    out: Dict[str, Dict[str, dict]] = {}
    for (row, point_set), d in differences_from_reference(scores).items():
        entry = d.differences.to_dict() if d.differences is not None else None
        out.setdefault(row, {})[point_set] = dict(
            reference=d.reference, seeds=[k[1] for k in d.keys], unpaired=d.unpaired,
            differences=entry)
    return out
