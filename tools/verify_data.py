#!/usr/bin/env python
"""Check a prepared dataset end to end: every file the config's datasets read exists and decodes.

    python tools/verify_data.py CONFIG [--split train val test] [--cfg-options key=value ...] \
        [--workers N] [--max-bad 10]

Builds the datasets of the config's ``train``, ``val`` and ``test`` dataloaders (``--split``
picks some) and reads every file their info files reference, at the paths the datasets compute:
point files (a whole number of records, finite used columns), images (decoded in full),
superpixel maps (through the pipeline's reader, and the size of their image), label files (one
label per point), and the info files themselves (they load and list samples). Prints a progress
bar, a table per split and kind (checked, missing, damaged) and the first bad files; the exit
status is 1 when any file is missing or damaged, 0 when all are fine. For example, the nuScenes
pretraining data (the pretraining and its validation split) at another data root::

    python tools/verify_data.py \
        configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py --split train val \
        --cfg-options train_dataloader.dataset.data_root=/data/nuscenes/ \
        val_dataloader.dataset.data_root=/data/nuscenes/

Runs check only that files exist, at their start (``DataFilesCheckHook``); this tool also
decodes them. The code lives in ``projects.img2lidar.preparation.verify_data``.
"""
import argparse
import os
import os.path as osp
import sys

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='training or test config')
    parser.add_argument('--split', nargs='+', choices=['train', 'val', 'test'],
                        default=['train', 'val', 'test'],
                        help='dataloaders to check (default: all the config has)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--workers', type=int, default=os.cpu_count(),
                        help='processes that read the files (default: all CPUs)')
    parser.add_argument('--max-bad', type=int, default=10, help='bad files listed')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import projects.img2lidar  # noqa: F401  registers the project's datasets and transforms
    from projects.img2lidar.preparation.verify_data import verify_config
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet3d'))
    report = verify_config(cfg, args.split, workers=args.workers)
    print(report.format(args.max_bad))
    return 1 if report.bad() else 0


if __name__ == '__main__':
    sys.exit(main())
