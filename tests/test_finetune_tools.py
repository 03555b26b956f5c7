"""The launch tools on a finetuning config: an mmdet3d MinkUNet segmentor initialised from a
pretraining checkpoint, trained and tested with 2 gloo processes on the SemanticKITTI
fixture (mmdet3d's own SemanticKittiDataset and SegMetric)."""
import json
import sys

import pytest

import torch
from mmdet3d.registry import MODELS
from mmengine.config import Config

from conftest import REPO_ROOT, SHARED_DATA, require
from test_distributed import run

PYTHON = sys.executable

BACKBONE = dict(type='MinkUNetBackbone', in_channels=4, num_stages=4, base_channels=16,
                encoder_channels=[16, 32, 64, 128], encoder_blocks=[1, 1, 1, 1],
                decoder_channels=[128, 64, 48, 48], decoder_blocks=[1, 1, 1, 1],
                block_type='basic', sparseconv_backend='spconv')


def _pretrained_checkpoint(path):
    """A checkpoint of the distillation model (student keys at the top level)."""
    cfg = Config.fromfile(
        str(REPO_ROOT / 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py'))
    cfg.model.student.backbone = dict(BACKBONE)
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.backbone.update(depth=18, base_channels=16, stem_channels=16)
    cfg.model.image_head.in_channels = 128
    model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return {k[len('backbone.'):]: v for k, v in model.state_dict().items()
            if k.startswith('backbone.')}


def _finetune_config(path, root, ckpt, model_type='MinkUNet', iters=2):
    path.write_text(f'''
default_scope = 'mmdet3d'
custom_imports = dict(imports=['projects.img2lidar'], allow_failed_imports=False)
model = dict(
    type='{model_type}',
    data_preprocessor=dict(
        type='PointVoxelDataPreprocessor', voxel=True, voxel_type='minkunet', batch_first=True,
        max_voxels=None,
        voxel_layer=dict(max_num_points=-1, point_cloud_range=[-100, -100, -20, 100, 100, 20],
                         voxel_size=[0.05, 0.05, 0.05], max_voxels=(-1, -1))),
    backbone=dict({BACKBONE!r},
                  init_cfg=dict(type='Pretrained', checkpoint='{ckpt}', prefix='backbone.')),
    decode_head=dict(type='MinkUNetHead', channels=48, num_classes=19, dropout_ratio=0,
                     loss_decode=dict(type='mmdet.CrossEntropyLoss', avg_non_ignore=True),
                     ignore_index=19),
    train_cfg=dict(), test_cfg=dict())
pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
    dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_seg_3d=True,
         seg_3d_dtype='np.int32', seg_offset=2**16, dataset_type='semantickitti'),
    dict(type='PointSegClassMapping'),
    dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask']),
]
# SemanticKITTI's learning map (semantic-kitti.yaml): raw label -> 19 classes, 19 = ignored
labels_map = {{0: 19, 1: 19, 10: 0, 11: 1, 13: 4, 15: 2, 16: 4, 18: 3, 20: 4, 30: 5, 31: 6,
              32: 7, 40: 8, 44: 9, 48: 10, 49: 11, 50: 12, 51: 13, 52: 19, 60: 8, 70: 14,
              71: 15, 72: 16, 80: 17, 81: 18, 99: 19, 252: 0, 253: 6, 254: 5, 255: 7,
              256: 4, 257: 4, 258: 3, 259: 4}}
metainfo = dict(classes=('car', 'bicycle', 'motorcycle', 'truck', 'bus', 'person', 'bicyclist',
                         'motorcyclist', 'road', 'parking', 'sidewalk', 'other-ground',
                         'building', 'fence', 'vegetation', 'trunck', 'terrian', 'pole',
                         'traffic-sign'),
                seg_label_mapping=labels_map, max_label=259)
dataset = dict(type='SemanticKittiDataset', data_root='{root}', ann_file='semantickitti_infos.pkl',
               metainfo=metainfo,
               data_prefix=dict(pts='sequences/00/velodyne',
                                pts_semantic_mask='sequences/00/labels'),
               pipeline=pipeline, ignore_index=19)
train_dataloader = dict(batch_size=1, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True), dataset=dataset)
val_dataloader = dict(batch_size=1, num_workers=0,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(dataset, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='SegMetric')
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
train_cfg = dict(type='IterBasedTrainLoop', max_iters={iters}, val_interval={iters})
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', interval={iters}, by_epoch=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='nccl'))
''')
    return path


def test_finetune_config_through_dist_tools(tmp_path):
    root = require(SHARED_DATA / 'semantickitti_fixture')
    backbone = _pretrained_checkpoint(tmp_path / 'pretrained.pth')
    cfg = _finetune_config(tmp_path / 'finetune.py', root, tmp_path / 'pretrained.pth')
    work = tmp_path / 'work'
    res = run(['bash', 'tools/dist_train.sh', str(cfg), '2', '--work-dir', str(work)],
              env=dict(PORT='29641'))
    out = res.stdout + res.stderr
    assert 'process rank 1 of 2 (gloo)' in out
    assert 'backbone.' in out and 'pretrained.pth' in out  # the Pretrained init ran
    logs = sorted(work.glob('*/vis_data/scalars.json'))
    with open(logs[-1]) as f:
        rows = [json.loads(line) for line in f]
    assert any('miou' in r for r in rows)
    ckpt = work / 'iter_2.pth'
    assert ckpt.exists()
    # the config's init_cfg gives the segmentor exactly the pretrained backbone
    segmentor = MODELS.build(Config.fromfile(str(cfg)).model)
    segmentor.init_weights()
    for k, v in segmentor.backbone.state_dict().items():
        assert torch.equal(v, backbone[k]), k
    res = run(['bash', 'tools/dist_test.sh', str(cfg), str(ckpt), '2', '--work-dir',
               str(tmp_path / 'test')], env=dict(PORT='29642'))
    assert 'process rank 0 of 2 (gloo)' in res.stdout + res.stderr
    assert 'miou' in (res.stdout + res.stderr)


def _cylinder_checkpoint(path):
    """A distillation checkpoint with a small Cylinder3D student (voxel_encoder.*, backbone.*)."""
    cfg = Config.fromfile(
        str(REPO_ROOT / 'configs/st-slidr/stslidr_cylinder3d_resnet50-mocov2_2xb8-50e_nuscenes.py'))
    cfg.model.student.backbone.base_channels = 8
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.backbone.update(depth=18, base_channels=16, stem_channels=16)
    cfg.model.image_head.in_channels = 128
    model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model.state_dict()


@pytest.mark.parametrize('student', ['minkunet34', 'cylinder3d'])
def test_shipped_semantickitti_config_trains_and_validates(tmp_path, student):
    """configs/finetune/*_semantickitti-1pct.py as shipped (one epoch on the fixture), starting
    from a pretraining checkpoint, through tools/train.py."""
    root = require(SHARED_DATA / 'semantickitti_fixture')
    config = f'configs/finetune/{student}_2xb8-100e_semantickitti-1pct.py'
    ckpt = tmp_path / 'pretrained.pth'
    if student == 'minkunet34':
        backbone = _pretrained_checkpoint(ckpt)
        init = ['model.backbone.init_cfg.checkpoint=' + str(ckpt)]
        sizes = ['model.backbone.base_channels=16',
                 'model.backbone.encoder_channels=[16,32,64,128]',
                 'model.backbone.encoder_blocks=[1,1,1,1]',
                 'model.backbone.decoder_channels=[128,64,48,48]',
                 'model.backbone.decoder_blocks=[1,1,1,1]', 'model.decode_head.channels=48']
    else:
        state = _cylinder_checkpoint(ckpt)
        backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
        init = ['model.init_cfg.checkpoint=' + str(ckpt)]
        sizes = ['model.backbone.base_channels=8', 'model.decode_head.channels=32']
    data = [f'{split}_dataloader.dataset.{k}' for split in ('train', 'val')
            for k in (f'data_root={root}', 'ann_file=semantickitti_infos.pkl',
                      'data_prefix.pts=sequences/00/velodyne',
                      'data_prefix.pts_semantic_mask=sequences/00/labels')]
    run([PYTHON, 'tools/train.py', config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
         *init, *sizes, *data, 'train_dataloader.dataset.every_nth=1',
         'train_dataloader.batch_size=1', 'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
         'val_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1',
         'train_cfg.val_interval=1', 'param_scheduler.0.T_max=1'])
    logs = sorted((tmp_path / 'work').glob('*/vis_data/scalars.json'))
    with open(logs[-1]) as f:
        rows = [json.loads(line) for line in f]
    assert any(k.endswith('loss_lovasz') for r in rows for k in r)
    assert any('miou' in r for r in rows)
    state = torch.load(tmp_path / 'work' / 'epoch_1.pth', map_location='cpu')['state_dict']
    # one SGD step from the pretrained weights: close to them, not equal
    k = next(k for k in backbone if k.endswith('weight') and backbone[k].dim() > 1)
    assert not torch.equal(state['backbone.' + k], backbone[k])
    assert (state['backbone.' + k] - backbone[k]).abs().max() < 0.1
