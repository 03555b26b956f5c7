"""Pretraining through mmengine's Runner on the real nuScenes sample, and the checkpoint's
backbone in mmdet3d's own segmentors."""
import numpy as np
import pytest
import torch
from mmdet3d.registry import MODELS

from conftest import small_pretrain_cfg, train_in_process, values

CONFIGS = {
    'stslidr': 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py',
    'relational': 'configs/relational/relational_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py',
    'stslidr_cyl': 'configs/st-slidr/stslidr_cylinder3d_resnet50-mocov2_2xb8-50e_nuscenes.py',
}


@pytest.fixture(scope='module')
def trained(nuscenes_root, tmp_path_factory):
    out = {}
    for name, iters in (('stslidr', 20), ('relational', 20), ('stslidr_cyl', 10)):
        work = tmp_path_factory.mktemp(name)
        runner, logs = train_in_process(small_pretrain_cfg(CONFIGS[name], nuscenes_root, work,
                                                           iters))
        out[name] = (runner, logs, work / f'iter_{iters}.pth')
    return out


@pytest.mark.parametrize('name', ['stslidr', 'relational', 'stslidr_cyl'])
def test_pretraining_lowers_the_loss(trained, name):
    _, logs, _ = trained[name]
    losses = values(logs, 'loss')  # the sum of every loss term of the config
    assert len(losses) == (10 if 'cyl' in name else 20)
    assert all(np.isfinite(losses))
    n = 4
    assert np.mean(losses[-n:]) < np.mean(losses[:n]), losses
    assert all(entry['num_superpixels'] > 50 for entry in logs if 'num_superpixels' in entry)


def test_relational_terms_are_logged_separately(trained):
    _, logs, _ = trained['relational']
    rows = [r for r in logs if 'loss' in r]
    for r in rows:
        total = r['loss_slidr'] + r['loss_rel_cross'] + r['loss_rel_intra']
        assert r['loss'] == pytest.approx(total, rel=1e-5)


def test_teacher_frozen_student_and_head_move(trained, nuscenes_root):
    runner, _, ckpt = trained['stslidr']
    model = runner.model
    # the teacher's weights and BN statistics are its initial ones; student and head moved
    init = small_pretrain_cfg(CONFIGS['stslidr'], nuscenes_root, runner.work_dir, 1)
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
