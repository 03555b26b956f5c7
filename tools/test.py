#!/usr/bin/env python
"""Test (evaluate) a checkpoint, with mmdet3d 1.4's ``tools/test.py`` arguments.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...] \
        [--show] [--show-dir DIR] [--task lidar_seg] [--score-thr 0.1] [--wait-time 2] \
        [--tta] [--launcher none|pytorch|slurm|mpi] [--local_rank N]

Runs the config's ``test_dataloader`` / ``test_evaluator`` (e.g. SegMetric for segmentors,
StructuralGapMetric for pretraining) and returns the metrics from :func:`main`.

- ``--show-dir DIR`` / ``--show`` (with ``--task``) turn on the config's
  ``default_hooks.visualization`` as mmdet3d does. For ``--task lidar_seg`` a config without
  one gets :class:`BEVSegVisualizationHook`: a bird's-eye-view PNG of ground-truth and
  predicted labels per test sample (no open3d needed). Other tasks need mmdet3d's
  ``Det3DVisualizationHook`` in the config, as in mmdet3d. ``--show`` opens windows, so it is
  refused at start on a machine without a display.
- ``--tta`` tests the config's ``tta_model`` around its model on its ``tta_pipeline`` (the
  segmentation dataset bases define Seg3DTTAModel and 36 flipped, rotated and scaled views).
- ``--ceph`` is refused: see :data:`CEPH_REFUSAL`.

Distributed runs without CUDA use gloo, and the process group is closed at the end.
"""
import argparse
import importlib.util
import os
import os.path as osp
import re
import sys
from typing import Optional

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

#: mmdet3d 1.4's ``--task`` choices (how the visualization hook draws a sample)
TASKS = ('mono_det', 'multi-view_det', 'lidar_det', 'lidar_seg', 'multi-modality_det')
#: the tasks whose drawing by mmdet3d's Det3DLocalVisualizer needs open3d (point clouds)
POINT_CLOUD_TASKS = ('lidar_det', 'lidar_seg', 'multi-modality_det')
#: why ``--ceph`` is refused
CEPH_REFUSAL = (
    "--ceph is not supported by this project: mmdet3d's --ceph rewrites the config's loading "
    'steps to read from OpenMMLab\'s internal Ceph cluster (backend "petrel", paths '
    's3://openmmlab/datasets/detection3d/<dataset>/), which needs petrel_client and access to '
    "that cluster. To read from object storage, give your config's loading steps (e.g. "
    'LoadPointsFromFile, LoadAnnotations3D) your own backend_args.')


def parse_args(argv=None) -> argparse.Namespace:
    from projects.img2lidar.engine.launch import add_common_arguments
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--ceph', action='store_true',
                        help="mmdet3d's OpenMMLab-internal Ceph storage: refused here")
    parser.add_argument('--show', action='store_true',
                        help='show each drawn sample in a window (needs a display)')
    parser.add_argument('--show-dir',
                        help='write the drawn samples into this folder; a relative one lies '
                        'under work_dir/<timestamp>/ (as in mmdet3d)')
    parser.add_argument('--score-thr', type=float, default=0.1,
                        help='score threshold of the drawn boxes (detection tasks)')
    parser.add_argument('--task', type=str, choices=TASKS,
                        help='how samples are drawn with --show/--show-dir (lidar_seg for '
                        'segmentors: bird\'s-eye views of labels)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='seconds each sample is shown with --show')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the config's tta_model on its "
                        'tta_pipeline')
    return add_common_arguments(parser).parse_args(argv)


def refuse(message: str) -> None:
    """Stop before anything is built, with ``message`` and no traceback (exit status 1)."""
    raise SystemExit(f'tools/test.py: error: {message}')


def why_no_display() -> Optional[str]:
    """Why no window can open on this machine (``--show``), or None if one can."""
    if sys.platform.startswith('linux') and not (os.environ.get('DISPLAY')
                                                 or os.environ.get('WAYLAND_DISPLAY')):
        return 'this machine has no display (neither DISPLAY nor WAYLAND_DISPLAY is set)'
    return None


def opencv_is_headless() -> bool:
    """Whether this OpenCV was built without a GUI backend (``cv2.imshow`` cannot work)."""
    import cv2
    gui = re.search(r'GUI:\s*(\S+)', cv2.getBuildInformation())
    return gui is not None and gui.group(1).upper() == 'NONE'


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, before the config is read, what cannot run whatever the config."""
    if args.ceph:
        refuse(CEPH_REFUSAL)
    if (args.show or args.show_dir) and args.task is None:
        refuse(f'--show and --show-dir need --task, one of {", ".join(TASKS)}: it picks how '
               'a sample is drawn (--task lidar_seg for a segmentor)')
    if args.show:
        reason = why_no_display()
        if reason is not None:
            refuse(f'--show opens a window per test sample, but {reason}. Write the pictures '
                   'to files instead: --show-dir DIR')


def trigger_visualization_hook(cfg, args: argparse.Namespace) -> None:
    """Turn on the config's ``default_hooks.visualization`` with the command line's settings
    (mmdet3d's keys: draw, show, wait_time, test_out_dir, vis_task, score_thr).

    A config without one gets :class:`BEVSegVisualizationHook` for ``--task lidar_seg``;
    for the other tasks it must name mmdet3d's ``Det3DVisualizationHook`` itself, as in
    mmdet3d. mmdet3d's hook draws point clouds with open3d, which must then be installed.
    """
    hooks = cfg.get('default_hooks') or {}
    hook = hooks.get('visualization')
    if hook is None:
        if args.task != 'lidar_seg':
            refuse(f"{args.config}: --task {args.task} draws with mmdet3d's "
                   'Det3DVisualizationHook, which the config must hold: '
                   "default_hooks = dict(visualization=dict(type='Det3DVisualizationHook')) "
                   "and visualizer = dict(type='Det3DLocalVisualizer'). Only --task lidar_seg "
                   'has a default here (BEVSegVisualizationHook)')
        hook = dict(type='BEVSegVisualizationHook')
    hook_name = hook.get('type', '').split('.')[-1]  # without a scope prefix
    if (hook_name == 'Det3DVisualizationHook' and args.task in POINT_CLOUD_TASKS
            and importlib.util.find_spec('open3d') is None):
        refuse(f"{args.config}: mmdet3d's Det3DVisualizationHook draws --task {args.task} as "
               '3D point clouds with open3d, which is not installed (docs/dependencies.md). '
               'For segmentors, use the project\'s bird\'s-eye views: '
               "--cfg-options default_hooks.visualization.type=BEVSegVisualizationHook")
    if args.show and hook_name == 'BEVSegVisualizationHook' and opencv_is_headless():
        refuse('--show: BEVSegVisualizationHook shows its pictures with OpenCV, and this '
               'OpenCV is a headless build (no GUI backend). Write the pictures to files '
               'instead: --show-dir DIR')
    hook.update(draw=True, vis_task=args.task, score_thr=args.score_thr)
    if args.show:
        hook.update(show=True, wait_time=args.wait_time)
    if args.show_dir:
        hook.update(test_out_dir=args.show_dir)
    cfg.default_hooks = dict(hooks, visualization=hook)


def use_tta(cfg, config: str) -> None:
    """Swap in the config's test-time augmentation, as mmdet3d does: the test dataset's
    pipeline becomes ``tta_pipeline`` and the model is wrapped in ``tta_model``."""
    from mmengine.config import ConfigDict
    missing = [k for k in ('tta_model', 'tta_pipeline') if cfg.get(k) is None]
    if missing:
        refuse(f'{config}: --tta needs tta_model and tta_pipeline in the config; it has no '
               f'{" and no ".join(missing)} (the segmentation dataset bases of '
               'configs/_base_/datasets define both)')
    model = cfg.model
    if model.get('type') == 'ZeroShotSegmentor' and (model.get('label_map') is not None
                                                     or model.get('label_offset', 0)):
        refuse(f'{config}: --tta averages the softmax of pts_seg_logits and takes its argmax '
               "as the label (Seg3DTTAModel), but ZeroShotSegmentor's logit rows are text "
               'embeddings that label_map / label_offset turn into labels; test this config '
               'without --tta')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


def main(argv=None) -> dict:
    args = parse_args(argv)
    check_arguments(args)
    from projects.img2lidar.engine.launch import (build_runner, close_process_group,
                                                  load_config, print_rank)
    cfg = load_config(args.config, args.launcher, args.cfg_options, args.work_dir,
                      args.local_rank)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        trigger_visualization_hook(cfg, args)
    if args.tta:
        use_tta(cfg, args.config)
    runner = build_runner(cfg)
    print_rank('test.py')
    metrics = runner.test()
    close_process_group()
    return metrics


if __name__ == '__main__':
    main()
