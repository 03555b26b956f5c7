"""SegMetric results in the logs mmengine writes into a work directory.

Each tools/train.py or tools/test.py invocation makes a ``<work dir>/<YYYYmmdd_HHMMSS>/`` log
folder. Validation results go to its ``vis_data/scalars.json`` (one JSON object per line), test
results to its ``<timestamp>.json``; both hold SegMetric's ``miou`` and per-class IoU.
"""
import glob
import json
import os
import os.path as osp
import re
from typing import List, Optional, Tuple

LOG_DIR = re.compile(r'^\d{8}_\d{6}$')
#: what mmengine logs beside the metrics in a validation or test row
LOG_FIELDS = {'step', 'iter', 'epoch', 'lr', 'time', 'data_time', 'loss', 'memory'}


def miou_rows(path: str) -> List[dict]:
    """The JSON objects holding ``miou`` in a JSON-lines (or one-object JSON) file, in order;
    an unreadable file has none."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith('{'):
                    entry = json.loads(line)
                    if 'miou' in entry:
                        rows.append(entry)
    except (OSError, ValueError):
        return []
    return rows


def last_seg_metrics(work_dir: str) -> Optional[dict]:
    """The last SegMetric result of any invocation in a work directory: the last row with
    ``miou`` of the newest JSON log file (searched recursively)."""
    found: List[Tuple[float, int, dict]] = []
    for path in glob.glob(osp.join(work_dir, '**', '*.json'), recursive=True):
        mtime = osp.getmtime(path)
        found += [(mtime, i, row) for i, row in enumerate(miou_rows(path))]
    return max(found, key=lambda t: (t[0], t[1]))[2] if found else None


def seg_metrics(row: dict) -> dict:
    """A logged row without mmengine's own fields: SegMetric's result."""
    return {k: v for k, v in row.items() if k not in LOG_FIELDS}


def newest_log_dir(work_dir: str) -> Optional[str]:
    """The log folder of the newest invocation in a work directory."""
    if not osp.isdir(work_dir):
        return None
    dirs = sorted(d for d in os.listdir(work_dir)
                  if LOG_DIR.match(d) and osp.isdir(osp.join(work_dir, d)))
    return osp.join(work_dir, dirs[-1]) if dirs else None


def final_validation(work_dir: str) -> Optional[dict]:
    """The last validation result of the newest invocation: after a tools/train.py run that
    ended normally, the validation after its last epoch (mmengine's train loops always validate
    then). None when that invocation validated nothing, e.g. a run resumed from its last
    checkpoint."""
    log_dir = newest_log_dir(work_dir)
    rows = miou_rows(osp.join(log_dir, 'vis_data', 'scalars.json')) if log_dir else []
    return rows[-1] if rows else None
