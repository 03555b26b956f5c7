#!/usr/bin/env python
"""Draw what a config's dataset gives the model, with no checkpoint (mmdet3d's browse_dataset.py).

    python tools/browse_dataset.py configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py \
        --out-dir vis/browse [--split train|val] [--samples 4] [--no-augment] [--seed 0] \
        [--cfg-options key=value ...]

Runs the first ``--samples`` samples of the ``--split`` dataset through the config's train
pipeline (cropped, resized, flipped, rotated: what a training step sees) or, with
``--no-augment``, through its val pipeline, and writes to ``--out-dir``:

- for a pretraining config (a pipeline ending in ``PackImageLidarInputs``), one
  ``<index:05d>_<camera>.png`` per sample and camera: the image as packed, its superpixel
  boundaries in white and its paired points coloured by depth (red near, blue from 64 m);
- for a segmentation config (``Pack3DDetInputs``), one ``<index:05d>_bev.png`` per sample: a
  bird's-eye view of the ground-truth labels in the dataset's palette, with a legend;
- ``summary.json``: per sample its index, ``lidar_path``, number of points, the pairs drawn per
  camera (pretraining) or the points per class (segmentation), and the files written; a sample
  the pipeline refuses is listed with the reason.

A progress bar runs on stderr; the last line printed names the summary. ``--seed S`` seeds
sample ``i`` with ``S + i`` (mmengine's ``set_random_seed``), so that one augmented sample can
be drawn again. A ``ConcatDataset`` is browsed dataset by dataset, each with its own pipeline.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
from typing import List, Optional, Tuple

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

#: the last transform of a pipeline -> what is drawn
PAIRS, LABELS = 'PackImageLidarInputs', 'Pack3DDetInputs'


def transform_type(transform: dict) -> str:
    """A transform config's type without its registry scope (``mmdet3d.X`` -> ``X``)."""
    return str(transform['type']).split('.')[-1]


def leaf_datasets(dataset: dict) -> List[dict]:
    """The dataset configs under dataset wrappers (``dataset`` of RepeatDataset, CBGSDataset...,
    ``datasets`` of ConcatDataset), in order."""
    if dataset.get('datasets') is not None:
        return [leaf for d in dataset['datasets'] for leaf in leaf_datasets(d)]
    if dataset.get('dataset') is not None:
        return leaf_datasets(dataset['dataset'])
    return [dataset]


def loader_leaves(cfg, split: str) -> Optional[List[dict]]:
    """The leaf dataset configs of ``<split>_dataloader``; None when the config has none."""
    loader = cfg.get(f'{split}_dataloader')
    if not loader or not loader.get('dataset'):
        return None
    return leaf_datasets(loader['dataset'])


def chosen_pipelines(cfg, augment: bool, count: int) -> Tuple[List[list], str]:
    """One pipeline per browsed leaf dataset, and where they come from.

    Args:
        cfg (Config): The config.
        augment (bool): The train pipelines; else the val (or test) ones.
        count (int): The number of leaf datasets browsed.

    Returns:
        tuple: The pipelines and a description of their source.

    Raises:
        ValueError: The config has no such pipeline, or as many as neither 1 nor ``count``.
    """
    sources = ['train'] if augment else ['val', 'test']
    for split in sources:
        leaves = loader_leaves(cfg, split)
        if leaves and all(leaf.get('pipeline') for leaf in leaves):
            pipelines, where = [leaf['pipeline'] for leaf in leaves], f'{split}_dataloader'
            break
    else:
        names = [n for n in (() if augment else ('val_pipeline', 'test_pipeline')) if cfg.get(n)]
        if not names:
            raise ValueError(f'{cfg.filename}: no {" or ".join(sources)} dataloader with a '
                             'pipeline' + ('' if augment else ', nor a val_pipeline or '
                                           'test_pipeline variable, for --no-augment'))
        pipelines, where = [cfg[names[0]]], names[0]
    if len(pipelines) == 1:
        pipelines = pipelines * count
    if len(pipelines) != count:
        raise ValueError(f'{cfg.filename}: {where} has {len(pipelines)} datasets, the browsed '
                         f'split {count}; cannot pair their pipelines')
    return [copy.deepcopy(list(p)) for p in pipelines], where


def with_labels_packed(pipeline: list) -> list:
    """``pipeline`` with ``pts_semantic_mask`` among the keys ``Pack3DDetInputs`` packs (test
    pipelines load the labels for evaluation but do not pack them)."""
    out = []
    for t in pipeline:
        if transform_type(t) == LABELS and 'pts_semantic_mask' not in t.get('keys', ()):
            t = dict(t, keys=list(t.get('keys', ())) + ['pts_semantic_mask'])
        out.append(t)
    return out


def build_datasets(cfg, split: str, augment: bool) -> Tuple[list, str, str]:
    """The leaf datasets of the split with the chosen pipelines.

    Returns:
        tuple: The datasets, what is drawn (:data:`PAIRS` or :data:`LABELS`) and where the
        pipelines come from.

    Raises:
        ValueError: The split has no dataset, or a pipeline ends in neither packing transform.
    """
    from mmdet3d.registry import DATASETS
    leaves = loader_leaves(cfg, split)
    if not leaves:
        raise ValueError(f'{cfg.filename}: {split}_dataloader is None or has no dataset; '
                         'browse another --split')
    pipelines, where = chosen_pipelines(cfg, augment, len(leaves))
    kinds = {transform_type(p[-1]) if p else None for p in pipelines}
    if len(kinds) != 1 or not kinds <= {PAIRS, LABELS}:
        raise ValueError(f'{cfg.filename}: the pipelines of {where} end in '
                         f'{sorted(map(str, kinds))}; browse_dataset draws pipelines ending in '
                         f'{PAIRS} (pretraining) or {LABELS} (segmentation)')
    kind = kinds.pop()
    datasets = []
    for leaf, pipeline in zip(leaves, pipelines):
        leaf = copy.deepcopy(leaf)
        leaf['pipeline'] = with_labels_packed(pipeline) if kind == LABELS else pipeline
        if 'skip_bad_samples' in leaf:
            leaf['skip_bad_samples'] = False  # a refused sample is reported, not replaced
        datasets.append(DATASETS.build(leaf))
    return datasets, kind, where


def draw_pairs(sample: dict, index: int, out_dir: str) -> dict:
    """One PNG per camera of a packed pretraining sample (module doc).

    Args:
        sample (dict): ``PackImageLidarInputs``' output: ``inputs`` with ``points`` (N, C),
            ``img`` (N_cam, 3, H, W) uint8 BGR, ``pairs`` (``point``, ``cam`` (P,), ``pixel``
            (P, 2) as x, y) and optionally ``superpixels`` (N_cam, H, W); ``data_samples``.
        index (int): The sample's index, for the file names.
        out_dir (str): Where the PNGs go.

    Returns:
        dict: ``num_points``, ``pairs`` (camera -> pairs drawn) and ``files``.
    """
    import cv2
    import numpy as np

    from projects.img2lidar.visualization import draw_superpixels_and_points
    inputs = sample['inputs']
    points = inputs['points'].numpy()
    pair_cam = inputs['pairs']['cam'].numpy()
    pair_point = inputs['pairs']['point'].numpy()
    pair_pixel = inputs['pairs']['pixel'].numpy()
    maps = inputs.get('superpixels')
    cams = sample['data_samples'].metainfo.get('cam_names') or [
        f'cam{c}' for c in range(len(inputs['img']))]
    pairs, files = {}, []
    for c, cam in enumerate(cams):
        rows = pair_cam == c
        depth = np.linalg.norm(points[pair_point[rows], :3], axis=1)
        img = draw_superpixels_and_points(
            np.ascontiguousarray(inputs['img'][c].permute(1, 2, 0).numpy()),
            None if maps is None else maps[c].numpy(), pair_pixel[rows], depth)
        for color, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # outlined text
            cv2.putText(img, f'{index} {cam}: {int(rows.sum())} pairs', (5, 15),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, thickness)
        path = osp.join(out_dir, f'{index:05d}_{cam}.png')
        cv2.imwrite(path, img)
        pairs[cam] = int(rows.sum())
        files.append(path)
    return dict(num_points=len(points), pairs=pairs, files=files)


def draw_labels(sample: dict, index: int, out_dir: str, metainfo: dict) -> dict:
    """A bird's-eye view of a packed segmentation sample's ground truth (module doc).

    Args:
        sample (dict): ``Pack3DDetInputs``' output with ``inputs['points']`` (N, C) and
            ``data_samples.gt_pts_seg.pts_semantic_mask`` (N,).
        index (int): The sample's index, for the file name.
        out_dir (str): Where the PNG goes.
        metainfo (dict): The dataset's, with ``classes`` and ``palette``.

    Returns:
        dict: ``num_points``, ``points_per_class`` (class -> count, ignored points under
        'ignored') and ``files``.
    """
    import cv2
    import numpy as np

    from projects.img2lidar.visualization import bev_labels_figure
    points = sample['inputs']['points'].numpy()
    labels = sample['data_samples'].gt_pts_seg.pts_semantic_mask
    labels = np.asarray(labels.numpy() if hasattr(labels, 'numpy') else labels)
    classes = list(metainfo['classes'])
    figure = bev_labels_figure(points[:, :2], [(f'{index} ground truth', labels)], classes,
                               metainfo['palette'])
    path = osp.join(out_dir, f'{index:05d}_bev.png')
    cv2.imwrite(path, figure)
    ids, counts = np.unique(labels, return_counts=True)
    per_class = {}
    for i, n in zip(ids.tolist(), counts.tolist()):
        name = classes[i] if 0 <= i < len(classes) else 'ignored'
        per_class[name] = per_class.get(name, 0) + n
    return dict(num_points=len(points), points_per_class=per_class, files=[path])


def browse(cfg, out_dir: str, split: str = 'train', samples: int = 4, augment: bool = True,
           seed: Optional[int] = None, progress: bool = True) -> List[dict]:
    """Draw the first ``samples`` samples of a split (module doc) and write ``summary.json``.

    Args:
        cfg (Config): The config, options applied.
        out_dir (str): Where the pictures and the summary go.
        split (str): 'train' or 'val'. Defaults to 'train'.
        samples (int): How many samples, from the first. Defaults to 4.
        augment (bool): The train pipeline; else the val pipeline. Defaults to True.
        seed (int, optional): Seed sample ``i`` with ``seed + i``; None seeds nothing.
        progress (bool): Show a progress bar on stderr. Defaults to True.

    Returns:
        list[dict]: One record per sample: ``index``, ``lidar_path`` and what the drawing
        function returns, or ``skipped`` with the reason.
    """
    from mmengine.runner import set_random_seed
    from mmengine.utils import ProgressBar

    from projects.img2lidar.datasets.bad_sample import BadSampleError
    datasets, kind, where = build_datasets(cfg, split, augment)
    total = min(samples, sum(len(d) for d in datasets))
    os.makedirs(out_dir, exist_ok=True)
    bar = ProgressBar(total, file=sys.stderr) if progress and total else None
    summary, index = [], 0
    for dataset in datasets:
        for local in range(len(dataset)):
            if index == total:
                break
            if seed is not None:
                set_random_seed(seed + index)
            record = dict(index=index, lidar_path=dataset.get_data_info(local).get('lidar_path'))
            try:
                sample = dataset.prepare_data(local)
            except BadSampleError as e:
                sample, record['skipped'] = None, str(e)
            if sample is None:
                record.setdefault('skipped', 'the pipeline dropped the sample')
            elif kind == PAIRS:
                record.update(draw_pairs(sample, index, out_dir))
            else:
                record.update(draw_labels(sample, index, out_dir, dataset.metainfo))
            summary.append(record)
            index += 1
            if bar is not None:
                bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    with open(osp.join(out_dir, 'summary.json'), 'w') as f:
        json.dump(dict(config=cfg.filename, split=split, pipeline=where, samples=summary), f,
                  indent=1)
    return summary


def main(argv=None) -> int:
    """Parse the command line, draw and print where the pictures went.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` when None.

    Returns:
        int: 0 on success.
    """
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='pretraining or segmentation config')
    parser.add_argument('--out-dir', required=True, help='where the PNGs and summary.json go')
    parser.add_argument('--split', choices=['train', 'val'], default='train',
                        help="the dataset browsed: the config's train_dataloader or "
                        'val_dataloader dataset (default train)')
    parser.add_argument('--samples', type=int, default=4,
                        help='how many samples, from the first (default 4)')
    parser.add_argument('--no-augment', action='store_true',
                        help="run the config's val pipeline instead of its train pipeline")
    parser.add_argument('--seed', type=int, default=None,
                        help='seed sample i with SEED + i (default: no seeding)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value (e.g. the data root)')
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error(f'--samples must be at least 1, got {args.samples}')
    from projects.img2lidar.engine.launch import load_config
    cfg = load_config(args.config, cfg_options=args.cfg_options)  # as tools/train.py builds it
    import projects.img2lidar  # noqa: F401  (registers the project's datasets and transforms)
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    summary = browse(cfg, args.out_dir, args.split, args.samples, not args.no_augment,
                     args.seed)
    drawn = [s for s in summary if 'skipped' not in s]
    files = sum(len(s['files']) for s in drawn)
    pairs = sum(sum(s.get('pairs', {}).values()) for s in drawn)
    print(f'wrote {files} PNGs of {len(drawn)} samples ({len(summary) - len(drawn)} refused'
          + (f', {pairs} pairs drawn' if pairs else '') + f') to {args.out_dir}; per sample: '
          f'{osp.join(args.out_dir, "summary.json")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
