"""mmengine's Runner trains, checkpoints and resumes under torch's weights_only default."""
import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset


class _Clouds(Dataset):
    """Eight random clouds of 300 points (x, y, z, intensity)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        pts = torch.cat([torch.rand(300, 3, generator=g) * 20 - 10,
                         torch.rand(300, 1, generator=g)], dim=1)
        return dict(inputs=dict(points=pts), data_samples=Det3DDataSample())


class _StudentModel(BaseModel):
    """A small MinkUNet student pulled towards a fixed direction."""

    def __init__(self):
        super().__init__(data_preprocessor=MODELS.build(dict(
            type='PointVoxelDataPreprocessor', voxel=True, voxel_type='minkunet',
            batch_first=True, max_voxels=None,
            voxel_layer=dict(max_num_points=-1, point_cloud_range=[-100, -100, -20, 100, 100, 20],
                             voxel_size=[0.5, 0.5, 0.5], max_voxels=(-1, -1)))))
        self.student = MODELS.build(dict(
            type='MinkUNetStudent', out_channels=8,
            backbone=dict(type='MinkUNetBackbone', in_channels=4, base_channels=8,
                          encoder_channels=[8, 16], encoder_blocks=[1, 1], num_stages=2,
                          decoder_channels=[16, 8], decoder_blocks=[1, 1],
                          sparseconv_backend='spconv')))
        self.register_buffer('direction', torch.nn.functional.normalize(torch.ones(8), dim=0))

    def forward(self, inputs, data_samples=None, mode='loss'):
        maps = [s.point2voxel_map for s in data_samples]
        feats = self.student(inputs['voxels'], maps)
        return dict(loss=1 - (feats @ self.direction).mean())


def _runner(work_dir, max_iters, resume):
    return Runner(
        model=_StudentModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Clouds(), sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='pseudo_collate'), batch_size=2, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        resume=resume,
        randomness=dict(seed=0),
        default_scope='mmdet3d')


def test_runner_trains_resumes_and_continues(tmp_path):
    first = _runner(tmp_path, max_iters=2, resume=False)
    first.train()
    ckpt = tmp_path / 'iter_2.pth'
    assert ckpt.exists()
    saved = {k: v.clone() for k, v in first.model.state_dict().items()}

    second = _runner(tmp_path, max_iters=4, resume=True)
    second.train()
    assert second.iter == 4
    assert (tmp_path / 'iter_4.pth').exists()
    # the resumed run started from the saved weights and optimizer state, then moved on
    state = torch.load(ckpt, map_location='cpu')  # weights_only=True (torch's default)
    assert state['meta']['iter'] == 2
    for k, v in state['state_dict'].items():
        torch.testing.assert_close(v, saved[k])
    assert 'momentum_buffer' in str(state['optimizer']['state'])
    moved = any(not torch.equal(v, second.model.state_dict()[k])
                for k, v in saved.items() if v.is_floating_point())
    assert moved
