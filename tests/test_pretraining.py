"""Pretraining through mmengine's Runner on the real nuScenes sample, and the checkpoint's
backbone in mmdet3d's own segmentors."""
import json
import os

import numpy as np
import pytest
import torch
from mmdet3d.registry import MODELS
from mmengine.config import Config

from conftest import NUSCENES_SAMPLE, REPO_ROOT, require

CONFIGS = {
    'stslidr': 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py',
    'relational': 'configs/relational/relational_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py',
    'stslidr_cyl': 'configs/st-slidr/stslidr_cylinder3d_resnet50-mocov2_2xb8-50e_nuscenes.py',
}
SMALL_MINKUNET = dict(base_channels=16, encoder_channels=[16, 32, 64, 128],
                      encoder_blocks=[1, 1, 1, 1], decoder_channels=[128, 64, 48, 48],
                      decoder_blocks=[1, 1, 1, 1])
# a small frozen teacher with random weights keeps 20 CPU iterations short
SMALL_TEACHER = dict(depth=18, base_channels=16, stem_channels=16)


@pytest.fixture(scope='module')
def sample_root(tmp_path_factory):
    """The real nuScenes sample with SLIC superpixels made by tools/create_superpixels.py."""
    from tools.create_superpixels import main as create_superpixels
    src = require(NUSCENES_SAMPLE)
    root = tmp_path_factory.mktemp('nus_pretrain')
    for f in src.iterdir():
        os.symlink(f, root / f.name)
    ann = str(next(root.glob('*.pkl')))
    assert create_superpixels([ann, '--data-root', str(root), '--img-prefix', '',
                               '--out-dir', str(root / 'superpixels'), '--workers', '2',
                               '--downscale', '2']) == 0
    assert len(list((root / 'superpixels').glob('*/*.npz'))) == 6
    return root


def _cfg(name, root, work_dir, iters):
    cfg = Config.fromfile(str(REPO_ROOT / CONFIGS[name]))
    ds = cfg.train_dataloader.dataset
    ds.data_root = str(root)
    ds.ann_file = str(next(root.glob('*.pkl')))
    ds.data_prefix = dict(pts='', img='', sp='superpixels')
    for t in ds.pipeline:  # quarter-size crops keep the CPU test short
        if t['type'] == 'PairedRandomResizedCrop':
            t.update(size=(112, 208), min_pairs_per_image=128, min_pairs=256)
    cfg.train_dataloader.update(batch_size=1, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    cfg.param_scheduler = []
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.optim_wrapper.optimizer.lr = 0.05
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=iters, by_epoch=False)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(work_dir)
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.backbone.update(SMALL_TEACHER)
    cfg.model.image_head.in_channels = 128
    if 'cyl' in name:
        cfg.model.student.backbone.base_channels = 8
    else:
        cfg.model.student.backbone.update(SMALL_MINKUNET)
    return cfg


def _train(cfg):
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    logs = []
    for entry in os.scandir(cfg.work_dir):
        path = os.path.join(entry.path, 'vis_data', 'scalars.json')
        if entry.is_dir() and os.path.isfile(path):
            with open(path) as f:
                logs = [json.loads(line) for line in f]
    assert logs, 'no training log written'
    return runner, logs


@pytest.fixture(scope='module')
def trained(sample_root, tmp_path_factory):
    out = {}
    for name, iters in (('stslidr', 20), ('relational', 20), ('stslidr_cyl', 10)):
        work = tmp_path_factory.mktemp(name)
        runner, logs = _train(_cfg(name, sample_root, work, iters))
        out[name] = (runner, logs, work / f'iter_{iters}.pth')
    return out


@pytest.mark.parametrize('name,loss', [('stslidr', 'loss_st'), ('relational', 'loss_rel'),
                                       ('stslidr_cyl', 'loss_st')])
def test_pretraining_lowers_the_loss(trained, name, loss):
    _, logs, _ = trained[name]
    values = [entry[loss] for entry in logs if loss in entry]
    assert len(values) == (10 if 'cyl' in name else 20)
    assert all(np.isfinite(values))
    n = 4
    assert np.mean(values[-n:]) < np.mean(values[:n]), values
    assert all(entry['num_superpixels'] > 50 for entry in logs if 'num_superpixels' in entry)


def test_teacher_frozen_student_and_head_move(trained, sample_root):
    runner, _, ckpt = trained['stslidr']
    model = runner.model
    # the teacher's weights and BN statistics are its initial ones; student and head moved
    init = _cfg('stslidr', sample_root, runner.work_dir, 1)
    from mmengine.runner import set_random_seed
    set_random_seed(0)
    fresh = MODELS.build(init.model)
    fresh.init_weights()
    for (k, a), (_, b) in zip(fresh.teacher.state_dict().items(),
                              model.teacher.state_dict().items()):
        assert torch.equal(a, b), k
    assert model.teacher.backbone.training is False
    assert not any(p.requires_grad for p in model.teacher.parameters())
    moved = [not torch.equal(a, b) for a, b in zip(fresh.image_head.parameters(),
                                                  model.image_head.parameters())]
    assert all(moved)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.student.parameters(),
                                                     model.student.parameters()))


def _segmentor_cfg(kind, backbone, ckpt):
    backbone = dict(backbone, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt),
                                            prefix='backbone.'))
    if kind == 'minkunet':
        return dict(
            type='MinkUNet',
            data_preprocessor=dict(type='PointVoxelDataPreprocessor', voxel=True,
                                   voxel_type='minkunet', batch_first=True, max_voxels=None,
                                   voxel_layer=dict(max_num_points=-1,
                                                    point_cloud_range=[-100, -100, -20, 100,
                                                                       100, 20],
                                                    voxel_size=[0.1, 0.1, 0.1],
                                                    max_voxels=(-1, -1))),
            backbone=backbone,
            decode_head=dict(type='MinkUNetHead', channels=backbone['decoder_channels'][-1],
                             num_classes=17, dropout_ratio=0,
                             loss_decode=dict(type='mmdet.CrossEntropyLoss', avg_non_ignore=True),
                             ignore_index=0),
            train_cfg=dict(), test_cfg=dict())
    return dict(
        type='Cylinder3D',
        data_preprocessor=dict(type='PointVoxelDataPreprocessor', voxel=True,
                               voxel_type='cylindrical',
                               voxel_layer=dict(grid_shape=[480, 360, 32],
                                                point_cloud_range=[0, -3.14159265359, -4, 50,
                                                                   3.14159265359, 2],
                                                max_num_points=-1, max_voxels=-1)),
        voxel_encoder=dict(type='SegVFE', feat_channels=[64, 128, 256, 256], in_channels=6,
                           with_voxel_center=True, feat_compression=16,
                           grid_shape=[480, 360, 32]),
        backbone=backbone,
        decode_head=dict(type='Cylinder3DHead', channels=4 * backbone['base_channels'],
                         num_classes=17, loss_ce=dict(type='mmdet.CrossEntropyLoss',
                                                      use_sigmoid=False, class_weight=None,
                                                      loss_weight=1.0),
                         loss_lovasz=dict(type='LovaszLoss', loss_weight=1.0, reduction='none')),
        train_cfg=None, test_cfg=dict())


@pytest.mark.parametrize('name,kind', [('stslidr', 'minkunet'), ('stslidr_cyl', 'cylinder3d')])
def test_checkpoint_loads_into_mmdet3d_segmentor(trained, name, kind):
    runner, _, ckpt = trained[name]
    backbone = runner.cfg.model.student.backbone.to_dict()
    segmentor = MODELS.build(_segmentor_cfg(kind, backbone, ckpt))
    segmentor.init_weights()
    state = torch.load(ckpt, map_location='cpu')['state_dict']
    own = segmentor.backbone.state_dict()
    assert len(own) > 20
    missing = [k for k in own if 'backbone.' + k not in state]
    assert missing == []
    for k, v in own.items():
        torch.testing.assert_close(v, state['backbone.' + k], rtol=0, atol=0, msg=k)
    # the checkpoint also resumes the distillation model itself (student keys nested back)
    model = runner.model
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
