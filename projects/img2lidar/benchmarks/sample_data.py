"""The nuScenes sample as the benchmarks' data: the sample's files (links) in a data root, SLIC
superpixel maps made by the project's tool, and an info file listing the sample as often as
asked."""
import os
import os.path as osp
import pickle
from typing import Optional

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
#: the real nuScenes sample committed with the repository (six 1600x900 JPEGs, one sweep)
SAMPLE_DIR = osp.join(REPO_ROOT, 'tests', 'data', 'nuscenes_sample')


def sample_info_file(sample_dir: str) -> str:
    """The sample's own info file."""
    names = sorted(f for f in os.listdir(sample_dir) if f.endswith('.pkl'))
    if not names:
        raise FileNotFoundError(f'{sample_dir}: no info file (.pkl)')
    return osp.join(sample_dir, names[0])


def make_sample_root(root: str, sample_dir: str = SAMPLE_DIR, copies: int = 1,
                     downscale: float = 2.0, map_scale: int = 1,
                     sp_root: Optional[str] = None, workers: int = 1) -> str:
    """Fill ``root`` with the sample's files (links) and its superpixel maps.

    Args:
        root (str): An empty folder: the data root.
        sample_dir (str): The sample. Defaults to :data:`SAMPLE_DIR`.
        copies (int): How often the info file lists the sample. Defaults to 1.
        downscale (float): ``tools/create_superpixels.py --downscale``. Defaults to 2.
        map_scale (int): ``tools/create_superpixels.py --map-scale``. Defaults to 1.
        sp_root (str, optional): Use these maps (linked as ``root/superpixels``) instead of
            making them. Defaults to None.
        workers (int): Processes that make the maps. Defaults to 1.

    Returns:
        str: The info file (in ``root``); images, sweep and ``superpixels/`` sit beside it,
        so a dataset reads them with ``data_prefix=dict(pts='', img='', sp='superpixels')``.
    """
    from ..preparation.superpixels import create_superpixels
    for name in os.listdir(sample_dir):
        os.symlink(osp.abspath(osp.join(sample_dir, name)), osp.join(root, name))
    ann = osp.join(root, osp.basename(sample_info_file(sample_dir)))
    if sp_root is not None:
        os.symlink(osp.abspath(sp_root), osp.join(root, 'superpixels'))
    else:
        extra = {} if map_scale == 1 else dict(map_scale=map_scale)
        create_superpixels(ann, root, osp.join(root, 'superpixels'), img_prefix='',
                           workers=workers, progress=False, downscale=downscale, **extra)
    if copies == 1:
        return ann
    with open(ann, 'rb') as f:
        info = pickle.load(f)
    info['data_list'] = [dict(info['data_list'][0]) for _ in range(copies)]
    out = osp.join(root, f'sample_x{copies}.pkl')
    with open(out, 'wb') as f:
        pickle.dump(info, f)
    return out


def on_sample(dataset_cfg: dict, root: str, ann_file: str) -> dict:
    """A dataset config (e.g. a config's ``train_dataloader.dataset``) reading the sample
    root made by :func:`make_sample_root` instead of its own data."""
    return dict(dataset_cfg, data_root=root, ann_file=ann_file,
                data_prefix=dict(pts='', img='', sp='superpixels'))
