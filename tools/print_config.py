#!/usr/bin/env python
"""Print a config fully resolved (bases merged, options applied), as mmdet3d's print_config.py.

    python tools/print_config.py configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py \
        [--cfg-options train_dataloader.batch_size=4 ...]

The output is ``Config.pretty_text``: valid Python that ``mmengine.Config.fromstring(text,
'.py')`` reads back. The repository root is put on ``sys.path``, as the other tools do, so that
configs importing ``projects.img2lidar`` resolve from a checkout.
"""
import argparse
import os.path as osp
import sys
from typing import Optional

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def resolved_config(config: str, cfg_options: Optional[dict] = None):
    """The config as tools/train.py and tools/test.py build it: bases merged, ``cfg_options``
    applied, the default work dir set (and the tiny sizes under ``IMG2LIDAR_TINY=1``).

    Args:
        config (str): Config file path.
        cfg_options (dict, optional): ``key=value`` overrides, dotted keys.

    Returns:
        mmengine.Config: The resolved config.
    """
    from projects.img2lidar.engine.launch import load_config
    return load_config(config, cfg_options=cfg_options)


def main(argv=None) -> int:
    """Parse the command line and print the resolved config.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` when None.

    Returns:
        int: 0 on success.
    """
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument('--cfg-options', '--options', nargs='+', action=DictAction,
                        help='override config entries, key=value (dotted keys; lists as '
                        'key="[a,b]")')
    args = parser.parse_args(argv)
    print(resolved_config(args.config, args.cfg_options).pretty_text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
