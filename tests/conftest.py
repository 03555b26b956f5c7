"""Shared test fixtures: the real samples in ../shared/data and registry set-up."""
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SHARED_DATA = Path(os.environ.get('IMG2LIDAR_SHARED_DATA', REPO_ROOT.parent / 'shared' / 'data'))
NUSCENES_SAMPLE = SHARED_DATA / 'nuscenes_sample'
KITTI_SAMPLE = SHARED_DATA / 'kitti_sample'

import projects.img2lidar  # noqa: E402,F401  applies compat fixes, registers modules
from mmdet3d.utils import register_all_modules  # noqa: E402

register_all_modules(init_default_scope=True)  # build through mmdet3d's registries, as configs do


def require(path: Path) -> Path:
    """Skip the calling test with a clear reason when a shared sample is absent."""
    if not path.exists():
        pytest.skip(f'shared sample data not found at {path} (set IMG2LIDAR_SHARED_DATA)')
    return path


@pytest.fixture(scope='session')
def nuscenes_sweep() -> np.ndarray:
    """The real nuScenes LIDAR_TOP sweep, (34688, 5) float32."""
    root = require(NUSCENES_SAMPLE)
    path = next(root.glob('*LIDAR_TOP*.pcd.bin'))
    return np.fromfile(path, dtype=np.float32).reshape(-1, 5)


@pytest.fixture(scope='session')
def nuscenes_info() -> dict:
    """The mmdet3d v1.1 info file of the nuScenes sample."""
    root = require(NUSCENES_SAMPLE)
    with open(next(root.glob('*.pkl')), 'rb') as f:
        return pickle.load(f)
