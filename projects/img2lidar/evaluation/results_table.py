"""One table of mIoU per protocol for a list of work directories, the way papers report it,
plus the per-class IoU.

    python tools/results_table.py work_dirs/probe_stslidr work_dirs/ft1_stslidr \
        work_dirs/probe_random work_dirs/ft1_random [--labels ...] [--out table.md]

Each work directory is one run of tools/train.py or tools/test.py on a downstream config.
Its protocol comes from the config that mmengine dumped into it (linear probe, nuScenes k%,
SemanticKITTI 1%, zero-shot). Its method label comes from ``--labels`` or, failing that, from
the pretraining checkpoint in that config (the name of its work directory), or 'random init'
when the config loads none. The metrics are the last SegMetric result (``miou``, per-class IoU)
found in the run's json logs.
"""
import glob
import json
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Tuple

NON_CLASS_KEYS = {'miou', 'acc', 'acc_cls', 'step', 'iter', 'epoch', 'lr', 'time', 'data_time',
                  'loss', 'memory'}


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
    if not m:
        return 'random init'
    path = m.group(1)
    return osp.basename(osp.dirname(path)) or osp.basename(path)


def last_seg_metrics(work_dir: str) -> Optional[Dict[str, float]]:
    """The last json log entry holding a SegMetric result (``miou``)."""
    found: List[Tuple[float, int, dict]] = []
    for path in glob.glob(osp.join(work_dir, '**', '*.json'), recursive=True):
        try:
            with open(path) as f:
                for i, line in enumerate(f):
                    line = line.strip()
                    if not line.startswith('{'):
                        continue
                    entry = json.loads(line)
                    if 'miou' in entry:
                        found.append((osp.getmtime(path), i, entry))
        except (OSError, ValueError):
            continue
    return max(found, key=lambda t: (t[0], t[1]))[2] if found else None


def collect(work_dirs: List[str], labels: Optional[List[str]]):
    """Rows of (method, protocol, metrics) for the work dirs that hold results."""
    rows = []
    for i, wd in enumerate(work_dirs):
        cfg = find_config(wd)
        text = open(cfg).read() if cfg else ''
        metrics = last_seg_metrics(wd)
        if metrics is None:
            print(f'warning: no SegMetric result in {wd}', file=sys.stderr)
            continue
        method = labels[i] if labels else method_of(text)
        rows.append((method, protocol_of(text, osp.basename(cfg or wd)), metrics))
    return rows


def format_tables(rows) -> str:
    """Markdown: mIoU (%) per method x protocol, then per-class IoU (%) per run."""
    methods = list(dict.fromkeys(r[0] for r in rows))
    protocols = list(dict.fromkeys(r[1] for r in rows))
    cell = {(m, p): met['miou'] for m, p, met in rows}
    lines = ['| method | ' + ' | '.join(protocols) + ' |',
             '|---|' + '---|' * len(protocols)]
    for m in methods:
        vals = [f'{100 * cell[(m, p)]:.1f}' if (m, p) in cell else '-' for p in protocols]
        lines.append(f'| {m} | ' + ' | '.join(vals) + ' |')
    classes = [k for k in rows[0][2] if k not in NON_CLASS_KEYS] if rows else []
    lines += ['', '| method | protocol | ' + ' | '.join(classes) + ' |',
              '|---|---|' + '---|' * len(classes)]
    for m, p, met in rows:
        vals = ['-' if met.get(c) is None or met[c] != met[c] else f'{100 * met[c]:.1f}'
                for c in classes]
        lines.append(f'| {m} | {p} | ' + ' | '.join(vals) + ' |')
    return '\n'.join(lines)


def write_results(rows, out: Optional[str] = None, json_file: Optional[str] = None) -> str:
    """Format the tables of ``rows`` (from :func:`collect`) and write them where asked.

    Returns:
        str: The markdown tables.
    """
    text = format_tables(rows)
    if out:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with open(out, 'w') as f:
            f.write(text + '\n')
    if json_file:
        table: Dict[str, Dict[str, float]] = {}
        for method, protocol, metrics in rows:
            table.setdefault(method, {})[protocol] = round(100 * metrics['miou'], 2)
        with open(json_file, 'w') as f:
            json.dump(table, f, indent=2)
    return text
