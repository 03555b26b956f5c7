"""tools/slurm_train.sh and tools/slurm_test.sh on a real one-node Slurm cluster (localhost).

Opt-in: set IMG2LIDAR_SLURM_TEST=1 (needs root: it installs and starts Slurm and munge).
CI sets it. Run alone with ``IMG2LIDAR_SLURM_TEST=1 bash tools/run_tests.sh -k slurm -s``.
"""
import os
import subprocess

import pytest

from conftest import REPO_ROOT, write_info, write_small_pretrain_config

pytestmark = pytest.mark.skipif(
    os.environ.get('IMG2LIDAR_SLURM_TEST') != '1',
    reason='set IMG2LIDAR_SLURM_TEST=1 to start a local Slurm cluster (root needed)')


def test_slurm_train_and_test_with_two_tasks(tmp_path, nuscenes_root):
    if os.geteuid() != 0:
        pytest.skip('the Slurm test needs root')
    ann = write_info(tmp_path / 'twice.pkl', nuscenes_root, copies=2)
    config = write_small_pretrain_config(tmp_path / 'slurm.py', nuscenes_root, ann, iters=2,
                                         batch_size=1, gather=True)
    res = subprocess.run(['bash', str(REPO_ROOT / 'tests/slurm/run_slurm_localhost.sh'),
                          str(config), str(tmp_path / 'run')], capture_output=True, text=True,
                         timeout=900)
    print(res.stdout[-6000:])
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert 'slurm train and test passed' in res.stdout
    assert (tmp_path / 'run' / 'train' / 'iter_2.pth').exists()
