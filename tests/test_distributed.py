"""Real multi-process pretraining: tools/dist_train.sh with 2 gloo processes on CPU."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import NUSCENES_SAMPLE, REPO_ROOT, require

PYTHON = sys.executable


def make_sample_root(root: Path, copies: int = 2) -> Path:
    """The real nuScenes sample, listed ``copies`` times in one info file, with superpixels."""
    from tools.create_superpixels import main as create_superpixels
    src = require(NUSCENES_SAMPLE)
    for f in src.iterdir():
        os.symlink(f, root / f.name)
    ann = next(src.glob('*.pkl'))
    with open(ann, 'rb') as f:
        info = pickle.load(f)
    info['data_list'] = info['data_list'] * copies
    with open(root / 'twice.pkl', 'wb') as f:
        pickle.dump(info, f)
    create_superpixels([str(ann), '--data-root', str(root), '--img-prefix', '', '--out-dir',
                        str(root / 'superpixels'), '--workers', '1', '--downscale', '4'])
    return root


def write_config(path: Path, root: Path, iters: int, batch_size: int, gather: bool) -> Path:
    """A small, deterministic pretraining config inheriting the repository's ST-SLidR one."""
    base = REPO_ROOT / 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py'
    path.write_text(f'''
_base_ = ['{base}']
model = dict(
    gather_features={gather},
    sync_bn=True,
    student=dict(backbone=dict(base_channels=16, encoder_channels=[16, 32, 64, 128],
                               encoder_blocks=[1, 1, 1, 1], decoder_channels=[128, 64, 48, 48],
                               decoder_blocks=[1, 1, 1, 1])),
    teacher=dict(checkpoint=None, backbone=dict(depth=18, base_channels=16, stem_channels=16)),
    image_head=dict(in_channels=128))
# deterministic data: the full image (scale 1, its own aspect ratio), no flips, no rotation
train_pipeline = [
    dict(type='LoadLidarPoints', load_dim=5, use_dim=[0, 1, 2, 3]),
    dict(type='LoadMultiViewImagesAndSuperpixels', decode_scale=2),
    dict(type='PointPixelPairing', min_depth=1.0),
    dict(type='PairedRandomResizedCrop', size=(112, 208), scale=(1.0, 1.0),
         ratio=(16 / 9, 16 / 9), min_pairs_per_image=1, min_pairs=1),
    dict(type='PairedCloudAugmentation', rotation=False, flip_x_prob=0.0, flip_y_prob=0.0),
    dict(type='PackImageLidarInputs'),
]
train_dataloader = dict(
    batch_size={batch_size}, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(data_root='{root}', ann_file='{root}/twice.pkl',
                 data_prefix=dict(_delete_=True, pts='', img='', sp='superpixels'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size={batch_size}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root='{root}', ann_file='{root}/twice.pkl',
                 data_prefix=dict(_delete_=True, pts='', img='', sp='superpixels'),
                 pipeline=train_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters}, val_interval={iters})
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr=0.05))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={iters}, by_epoch=False))
log_processor = dict(window_size=1, by_epoch=False)
randomness = dict(seed=0)
''')
    return path


def read_losses(work_dir: Path, key: str = 'loss_st'):
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    assert logs, f'no log in {work_dir}'
    with open(logs[-1]) as f:
        rows = [json.loads(line) for line in f]
    return [r[key] for r in rows if key in r], rows


def run(cmd, env=None, timeout=600):
    res = subprocess.run(cmd, cwd=REPO_ROOT, env=dict(os.environ, OMP_NUM_THREADS='1',
                                                       **(env or {})),
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope='module')
def sample_root(tmp_path_factory):
    return make_sample_root(tmp_path_factory.mktemp('twice'))


@pytest.mark.parametrize('gather', [True, False])
def test_two_gloo_processes_match_one_process(tmp_path, sample_root, gather):
    """With ``gather_features`` two processes of one sample each give the loss of one process
    holding both samples (negatives from the global batch); without it (the reference
    behaviour) each process's loss is that of its local batch alone."""
    iters = 3
    single = write_config(tmp_path / 'single.py', sample_root, iters,
                          batch_size=2 if gather else 1, gather=gather)
    double = write_config(tmp_path / 'double.py', sample_root, iters, batch_size=1,
                          gather=gather)
    run([PYTHON, 'tools/train.py', str(single), '--work-dir', str(tmp_path / 'one')])
    run(['bash', 'tools/dist_train.sh', str(double), '2', '--work-dir', str(tmp_path / 'two')],
        env=dict(PORT=str(29611 + int(gather))))
    one, rows_one = read_losses(tmp_path / 'one')
    two, rows_two = read_losses(tmp_path / 'two')
    print(f'gather={gather}\none process: {one}\ntwo processes: {two}')
    assert len(one) == len(two) == iters
    np.testing.assert_allclose(two, one, rtol=2e-5)
    # with gathering the loss sees the superpixels of both processes
    assert rows_two[0]['num_superpixels'] == rows_one[0]['num_superpixels']
    # the validation at the last iteration ran on both and gives the same structural gap
    gap = 'structural_gap/gap_intra'
    val_one = [r for r in rows_one if gap in r]
    val_two = [r for r in rows_two if gap in r]
    assert len(val_one) == len(val_two) == 1
    np.testing.assert_allclose(val_two[0][gap], val_one[0][gap], rtol=1e-3)
    assert 0 < val_one[0][gap] < 2
    assert (tmp_path / 'two' / f'iter_{iters}.pth').exists()
