"""The launch tools on a finetuning config: an mmdet3d MinkUNet segmentor initialised from a
pretraining checkpoint, trained and tested with 2 gloo processes on the SemanticKITTI
fixture (mmdet3d's own SemanticKittiDataset and SegMetric)."""
import sys

import pytest

import torch
from mmdet3d.registry import MODELS
from mmengine.config import Config

from conftest import (REPO_ROOT, SEMANTICKITTI_FIXTURE, SMALL_TEACHER, SMALL_TEACHER_CHANNELS,
                      finetune_config, free_port, pretrained_distiller_checkpoint,
                      read_scalars, run_tool)

PYTHON = sys.executable

def test_finetune_config_through_dist_tools(tmp_path):
    root = SEMANTICKITTI_FIXTURE
    backbone = pretrained_distiller_checkpoint(tmp_path / 'pretrained.pth')
    cfg = finetune_config(tmp_path / 'finetune.py', root, tmp_path / 'pretrained.pth')
    work = tmp_path / 'work'
    res = run_tool(['bash', 'tools/dist_train.sh', str(cfg), '2', '--work-dir', str(work)],
                   env=dict(PORT=str(free_port())))
    out = res.stdout + res.stderr
    assert 'process rank 1 of 2 (gloo)' in out
    assert 'backbone.' in out and 'pretrained.pth' in out  # the Pretrained init ran
    assert any('miou' in r for r in read_scalars(work))
    ckpt = work / 'iter_2.pth'
    assert ckpt.exists()
    # the config's init_cfg gives the segmentor exactly the pretrained backbone
    segmentor = MODELS.build(Config.fromfile(str(cfg)).model)
    segmentor.init_weights()
    for k, v in segmentor.backbone.state_dict().items():
        assert torch.equal(v, backbone[k]), k
    res = run_tool(['bash', 'tools/dist_test.sh', str(cfg), str(ckpt), '2', '--work-dir',
                    str(tmp_path / 'test')], env=dict(PORT=str(free_port())))
    assert 'process rank 0 of 2 (gloo)' in res.stdout + res.stderr
    assert 'miou' in (res.stdout + res.stderr)


def _cylinder_checkpoint(path):
    """A distillation checkpoint with a small Cylinder3D student (voxel_encoder.*, backbone.*)."""
    cfg = Config.fromfile(
        str(REPO_ROOT / 'configs/st-slidr/stslidr_cylinder3d_resnet50-mocov2_2xb8-50e_nuscenes.py'))
    cfg.model.student.backbone.base_channels = 8
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.backbone.update(SMALL_TEACHER)
    cfg.model.image_head.in_channels = SMALL_TEACHER_CHANNELS
    model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model.state_dict()


@pytest.mark.parametrize('student', ['minkunet34', 'cylinder3d'])
def test_shipped_semantickitti_config_trains_and_validates(tmp_path, student):
    """configs/finetune/*_semantickitti-1pct.py as shipped (one epoch on the fixture), starting
    from a pretraining checkpoint, through tools/train.py."""
    root = SEMANTICKITTI_FIXTURE
    config = f'configs/finetune/{student}_2xb8-100e_semantickitti-1pct.py'
    ckpt = tmp_path / 'pretrained.pth'
    if student == 'minkunet34':
        backbone = pretrained_distiller_checkpoint(ckpt)
        sizes = ['model.backbone.base_channels=16',
                 'model.backbone.encoder_channels=[16,32,64,128]',
                 'model.backbone.encoder_blocks=[1,1,1,1]',
                 'model.backbone.decoder_channels=[128,64,48,48]',
                 'model.backbone.decoder_blocks=[1,1,1,1]', 'model.decode_head.channels=48']
    else:
        state = _cylinder_checkpoint(ckpt)
        backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
        sizes = ['model.backbone.base_channels=8', 'model.decode_head.channels=32']
    data = [f'{split}_dataloader.dataset.{k}' for split in ('train', 'val')
            for k in (f'data_root={root}', 'ann_file=semantickitti_infos.pkl',
                      'data_prefix.pts=sequences/00/velodyne',
                      'data_prefix.pts_semantic_mask=sequences/00/labels')]
    run_tool([PYTHON, 'tools/train.py', config, '--work-dir', str(tmp_path / 'work'),
              '--cfg-options', 'model.init_cfg.checkpoint=' + str(ckpt), *sizes, *data,
              'train_dataloader.dataset.every_nth=1', 'train_dataloader.batch_size=1',
              'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
              'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
              'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'param_scheduler.0.T_max=1'])
    rows = read_scalars(tmp_path / 'work')
    assert any(k.endswith('loss_lovasz') for r in rows for k in r)
    assert any('miou' in r for r in rows)
    state = torch.load(tmp_path / 'work' / 'epoch_1.pth', map_location='cpu')['state_dict']
    # one SGD step from the pretrained weights: close to them, not equal
    k = next(k for k in backbone if k.endswith('weight') and backbone[k].dim() > 1)
    assert not torch.equal(state['backbone.' + k], backbone[k])
    assert (state['backbone.' + k] - backbone[k]).abs().max() < 0.1
