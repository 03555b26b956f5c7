"""End-to-end check of a prepared dataset: every file each info file references exists and
decodes. The command line is ``tools/verify_data.py``.

The datasets are built from a config (its ``train``, ``val`` and ``test`` dataloaders), so the
files checked are the ones a run reads, at the paths the datasets compute
(:mod:`projects.img2lidar.datasets.required_files`). Each file is read whole:

- points (and sweeps): the size is a whole number of records (``4 * load_dim`` bytes, the
  loading transform's ``load_dim``), there is at least one point, and the used columns
  (``use_dim``) are finite;
- images: decoded in full by Pillow (a truncated file is an error);
- superpixel maps: read by the pipeline's reader
  (:func:`projects.img2lidar.datasets.transforms.superpixel_map.read_superpixels`), and the
  map's size equals its image's;
- labels (and instance masks): the size is a whole number of ``LoadAnnotations3D``'s dtype
  and holds one value per point of the sample's point file;
- info files: they load (the dataset builds), and list samples.

A file shared by two samples or splits is read once.
"""
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: the outcome of one file: (kind, path, status, reason); status is 'ok', 'missing' or
#: 'damaged'
Result = Tuple[str, str, str, str]
STATUSES = ('ok', 'missing', 'damaged')


def reader_params(dataset) -> dict:
    """What the checks need to know of the dataset's loading transforms: point record sizes
    and used columns, label dtypes."""
    from mmdet3d.datasets.transforms import (LoadAnnotations3D, LoadPointsFromFile,
                                             LoadPointsFromMultiSweeps)

    from ..datasets.required_files import loading_transforms
    from ..datasets.transforms import LoadLidarPoints
    params = {}
    for t in loading_transforms(dataset):
        if isinstance(t, (LoadLidarPoints, LoadPointsFromFile)):
            params['points'] = (t.load_dim, t.use_dim)
        elif isinstance(t, LoadPointsFromMultiSweeps):
            params['sweeps'] = (t.load_dim, t.use_dim)
        if isinstance(t, LoadAnnotations3D):
            params['labels'] = np.dtype(t.seg_3d_dtype).itemsize
            params['instance_masks'] = np.dtype(np.int64).itemsize  # mmdet3d reads int64
    return params


def _check_points(path: str, load_dim: int, use_dim) -> Tuple[str, str, Optional[int]]:
    """(status, reason, point count) of a float32 point file."""
    if not osp.isfile(path):
        return 'missing', 'not found', None
    size = osp.getsize(path)
    record = 4 * load_dim
    if size % record:
        return 'damaged', (f'size {size} bytes is not a whole number of {load_dim}-float32 '
                           f'records ({record} bytes)'), None
    if size == 0:
        return 'damaged', 'holds no points', None
    points = np.fromfile(path, dtype=np.float32).reshape(-1, load_dim)
    used = points if use_dim is None else points[:, list(use_dim)]
    bad = int((~np.isfinite(used)).any(1).sum())
    if bad:
        return 'damaged', f'{bad} points have NaN or infinite values in the used columns', None
    return 'ok', '', points.shape[0]


def _check_image(path: str) -> Tuple[str, str, Optional[Tuple[int, int]]]:
    """(status, reason, (H, W)) of an image, decoded in full."""
    from PIL import Image
    if not osp.isfile(path):
        return 'missing', 'not found', None
    try:
        with Image.open(path) as im:
            im.load()
            w, h = im.size
    except Exception as e:  # noqa: BLE001 - any decoder error is damage
        return 'damaged', f'does not decode ({e})', None
    return 'ok', '', (h, w)


def _check_superpixels(path: str, image_hw: Optional[Tuple[int, int]],
                       image: str) -> Tuple[str, str]:
    from ..datasets.transforms.superpixel_map import read_scaled_superpixels
    if not osp.isfile(path):
        return 'missing', 'not found'
    try:
        # a map stored at scale s must be its image's size at s (the loader's own check)
        read_scaled_superpixels(path, image_hw, image)
    except Exception as e:  # noqa: BLE001 - the reader says what is wrong
        reason = str(e)
        return 'damaged', reason[len(path) + 2:] if reason.startswith(path + ': ') else reason
    return 'ok', ''


def _check_labels(path: str, itemsize: int, num_points: Optional[int]) -> Tuple[str, str]:
    if not osp.isfile(path):
        return 'missing', 'not found'
    size = osp.getsize(path)
    if size % itemsize:
        return 'damaged', f'size {size} bytes is not a whole number of {itemsize}-byte labels'
    if num_points is not None and size // itemsize != num_points:
        return 'damaged', (f'{size // itemsize} labels for the {num_points} points of its point '
                           'file')
    return 'ok', ''


def verify_sample(job: dict) -> List[Result]:
    """Check the files of one sample.

    Args:
        job (dict): Kind -> paths (see :func:`projects.img2lidar.datasets.required_files.
            sample_files`) and ``params`` (:func:`reader_params`).

    Returns:
        list[Result]: One outcome per file.
    """
    params = job['params']
    out: List[Result] = []
    num_points = None
    for kind in ('points', 'sweeps'):
        for i, path in enumerate(job.get(kind, [])):
            load_dim, use_dim = params[kind]
            status, reason, n = _check_points(path, load_dim, use_dim)
            if kind == 'points' and i == 0:
                num_points = n
            out.append((kind, path, status, reason))
    sizes = []
    for path in job.get('images', []):
        status, reason, hw = _check_image(path)
        sizes.append(hw)
        out.append(('images', path, status, reason))
    images = job.get('images', [])
    for i, path in enumerate(job.get('superpixels', [])):
        hw = sizes[i] if i < len(sizes) else None
        out.append(('superpixels', path,
                    *_check_superpixels(path, hw, images[i] if i < len(images) else '')))
    for kind in ('labels', 'instance_masks'):
        for path in job.get(kind, []):
            out.append((kind, path, *_check_labels(path, params[kind], num_points)))
    return out


def _info_files(dataset_cfg: dict) -> List[str]:
    """The info files a dataset config names (wrappers walked), joined to their data root."""
    inner = dataset_cfg.get('datasets') or ([dataset_cfg['dataset']] if 'dataset' in dataset_cfg
                                            else None)
    if inner is not None:
        return [f for d in inner for f in _info_files(d)]
    ann = dataset_cfg.get('ann_file', '')
    root = dataset_cfg.get('data_root') or ''
    return [ann if osp.isabs(ann) or not root else osp.join(root, ann)]


class VerifyReport:
    """Outcomes by split and path, and the table of counts."""

    def __init__(self) -> None:
        self.results: Dict[str, Dict[str, Result]] = OrderedDict()  # split -> path -> result

    def add(self, split: str, result: Result) -> None:
        self.results.setdefault(split, OrderedDict())[result[1]] = result

    def counts(self) -> Dict[Tuple[str, str], Dict[str, int]]:
        """(split, kind) -> {'checked', 'missing', 'damaged'}."""
        from ..datasets.required_files import KINDS
        order = ('infos', ) + KINDS
        table: Dict[Tuple[str, str], Dict[str, int]] = OrderedDict()
        for split, results in self.results.items():
            kinds = sorted({r[0] for r in results.values()},
                           key=lambda k: order.index(k) if k in order else len(order))
            for kind in kinds:
                c = dict(checked=0, missing=0, damaged=0)
                for r in results.values():
                    if r[0] == kind:
                        c['checked'] += 1
                        if r[2] != 'ok':
                            c[r[2]] += 1
                table[(split, kind)] = c
        return table

    def bad(self) -> List[Result]:
        """Every missing or damaged file, each once."""
        seen: Dict[str, Result] = OrderedDict()
        for results in self.results.values():
            for path, r in results.items():
                if r[2] != 'ok':
                    seen.setdefault(path, r)
        return list(seen.values())

    def format(self, max_bad: int = 10) -> str:
        """The summary table and the first ``max_bad`` bad files."""
        lines = [f'{"split":<6} {"kind":<14} {"checked":>8} {"missing":>8} {"damaged":>8}']
        for (split, kind), c in self.counts().items():
            lines.append(f'{split:<6} {kind:<14} {c["checked"]:>8} {c["missing"]:>8} '
                         f'{c["damaged"]:>8}')
        bad = self.bad()
        total = len({p for results in self.results.values() for p in results})
        if not bad:
            lines.append(f'all {total} files fine')
            return '\n'.join(lines)
        lines.append(f'{len(bad)} of {total} files are missing or damaged; the first '
                     f'{min(max_bad, len(bad))}:')
        lines += [f'  {status:<8} {kind:<12} {path}: {reason}'
                  for kind, path, status, reason in bad[:max_bad]]
        return '\n'.join(lines)


def build_dataset(cfg, split: str):
    """The dataset of ``<split>_dataloader`` of a config (None when it has none)."""
    from mmdet3d.registry import DATASETS
    loader = cfg.get(f'{split}_dataloader')
    if not loader:
        return None
    return DATASETS.build(loader['dataset'])


def verify_config(cfg, splits: Sequence[str] = ('train', 'val', 'test'), workers: int = 1,
                  progress: bool = True) -> VerifyReport:
    """Check every file the datasets of ``splits`` read (see the module doc).

    Args:
        cfg (Config): A training or test config (``default_scope`` set, modules imported).
        splits (Sequence[str]): Dataloaders to check; those the config lacks are skipped.
        workers (int): Processes that read the files. Defaults to 1.
        progress (bool): Show mmengine's progress bar. Defaults to True.

    Returns:
        VerifyReport: The outcome of every file, by split.
    """
    from mmengine.utils import track_parallel_progress, track_progress

    from ..datasets.required_files import iter_sample_files, leaf_datasets
    report = VerifyReport()
    done: Dict[str, Result] = {}
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        infos = _info_files(loader['dataset'])
        try:
            dataset = build_dataset(cfg, split)
        except Exception as e:  # noqa: BLE001 - a missing or empty info file is a finding
            status = 'missing' if isinstance(e, FileNotFoundError) else 'damaged'
            for info in infos:
                report.add(split, ('infos', info, status, str(e).replace('\n', ' ')))
            continue
        for info in infos:
            report.add(split, ('infos', info, 'ok', ''))
        jobs: List[dict] = []
        for leaf in leaf_datasets(dataset):
            params = reader_params(leaf)
            for files in iter_sample_files(leaf):
                paths = [p for ps in files.values() for p in ps]
                for p in paths:
                    if done.get(p) is not None:  # read for an earlier split
                        report.add(split, done[p])
                if any(p not in done for p in paths):
                    jobs.append(dict(files, params=params))
                    done.update((p, None) for p in paths if p not in done)
        if progress:
            print(f'{split}: reading the files of {len(jobs)} samples')
        if workers > 1 and len(jobs) > 1:
            outcomes = track_parallel_progress(verify_sample, jobs, nproc=workers, chunksize=8)
        elif progress and jobs:
            outcomes = track_progress(verify_sample, jobs)
        else:
            outcomes = [verify_sample(job) for job in jobs]
        for results in outcomes:
            for r in results:
                if done.get(r[1]) is None:
                    done[r[1]] = r
                report.add(split, done[r[1]])
        if progress and jobs:
            print()
    return report
