"""The reference configs reproduce SLidR's and ST-SLidR's pipelines: the torchvision dilation of
the ResNet-50 teacher, the 2D head's upsampling, SLidR's cylindrical voxels with intensity-only
features, its cuboid dropping, and 5 CPU iterations of each reference config on the real
sample."""
import numpy as np
import pytest
import torch
from mmdet3d.registry import MODELS, TRANSFORMS
from mmdet3d.structures import Det3DDataSample
from mmengine.config import Config
from torch import nn

from conftest import REPO_ROOT, small_pretrain_cfg, train_in_process, values

REFERENCE_CONFIGS = {
    'slidr': 'configs/slidr/slidr_minkunet34-cyl_resnet50-mocov2_1xb4-50e_nuscenes.py',
    'stslidr': 'configs/st-slidr/stslidr_minkunet34-cyl_resnet50-mocov2_2xb8-50e_nuscenes.py',
}


# -- the teacher: torchvision's replace_stride_with_dilation, written out -------------------------
class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride and dilation on the 3x3 convolution)."""

    def __init__(self, inplanes, planes, dilation, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class DilatedResNet50(nn.Module):
    """torchvision's ``resnet50(replace_stride_with_dilation=[True, True, True])`` trunk: each
    dilated stage's first block keeps the previous dilation (conv2 dilation 1 / 2 / 4, the
    other blocks 2 / 4 / 8)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes, self.dilation = 64, 1
        self.layer1 = self._make_layer(64, 3, dilate=False)
        self.layer2 = self._make_layer(128, 4, dilate=True)
        self.layer3 = self._make_layer(256, 6, dilate=True)
        self.layer4 = self._make_layer(512, 3, dilate=True)

    def _make_layer(self, planes, blocks, dilate):
        previous = self.dilation
        if dilate:
            self.dilation *= 2  # the stride of 2 becomes a dilation
        down = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, bias=False),
                             nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, previous, down)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def test_teacher_has_torchvision_dilation_semantics():
    cfg = Config.fromfile(str(REPO_ROOT / REFERENCE_CONFIGS['slidr']))
    teacher_cfg = dict(cfg.model.teacher, checkpoint=None)
    torch.manual_seed(0)
    teacher = MODELS.build(teacher_cfg)
    reference = DilatedResNet50().eval()
    state = teacher.backbone.state_dict()
    # same names (mmdet's ResNet uses torchvision's), random BN statistics for a real test
    for k, v in state.items():
        if k.endswith('running_var'):
            state[k] = torch.rand_like(v) + 0.5
        elif k.endswith('running_mean'):
            state[k] = torch.randn_like(v) * 0.1
    teacher.backbone.load_state_dict(state)
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert not missing and all(k.endswith('num_batches_tracked') for k in unexpected)
    assert [teacher.backbone.layer2[0].conv2.dilation, teacher.backbone.layer2[1].conv2.dilation,
            teacher.backbone.layer4[0].conv2.dilation] == [(1, 1), (2, 2), (4, 4)]
    imgs = torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad():
        got = teacher(imgs)
        expected = reference(teacher.normalize(imgs))
    assert got.shape == (2, 2048, 16, 24)  # output stride 4
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # mmdet's own dilation (every block of a stage dilated) gives other features
    mmdet_style = MODELS.build(dict(teacher_cfg, dilation_style='mmdet'))
    mmdet_style.backbone.load_state_dict(state)
    with torch.no_grad():
        assert (mmdet_style(imgs) - got).abs().max() > 1e-2


@pytest.mark.parametrize('align_corners', [True, False])
def test_head_upsamples_like_nn_upsample(align_corners):
    head = MODELS.build(dict(type='ImageProjectionHead', in_channels=8, out_channels=4,
                             scale_factor=4, align_corners=align_corners))
    feats = torch.randn(2, 8, 14, 26)
    up = nn.Upsample(scale_factor=4, mode='bilinear', align_corners=align_corners)
    expected = nn.functional.normalize(up(head.proj(feats)), dim=1)
    torch.testing.assert_close(head(feats, (56, 104)), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match='56x104'):
        head(feats, (60, 104))


def test_reference_head_is_slidrs():
    cfg = Config.fromfile(str(REPO_ROOT / REFERENCE_CONFIGS['slidr']))
    assert cfg.model.image_head.scale_factor == 4 and cfg.model.image_head.align_corners


# -- SLidR's cylindrical voxels ---------------------------------------------------------------
def _slidr_voxels(points: np.ndarray):
    """SLidR's formula (pretrain/dataloader_nuscenes.py), in numpy: rho / 0.1, phi in degrees,
    z / 0.1, floored; one voxel per cell, the first point's intensity as its feature."""
    x, y, z = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64), \
        points[:, 2].astype(np.float64)
    coords = np.stack([np.sqrt(x**2 + y**2) / 0.1, np.arctan2(y, x) * 180 / np.pi, z / 0.1], 1)
    cells = np.floor(coords).astype(np.int64)
    uniq, first, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
    return uniq, first, inverse.reshape(-1)


def test_cylindrical_voxels_are_slidrs(nuscenes_sweep):
    cfg = Config.fromfile(str(REPO_ROOT / REFERENCE_CONFIGS['slidr']))
    pre = MODELS.build(cfg.model.data_preprocessor)
    points = torch.from_numpy(nuscenes_sweep[:, :4].copy())
    sample = Det3DDataSample()
    out = pre(dict(inputs=dict(points=[points]), data_samples=[sample]), True)
    voxels = out['inputs']['voxels']
    uniq, first, inverse = _slidr_voxels(nuscenes_sweep)
    assert int(voxels['num_voxels'][0]) == len(uniq)
    # the same point-to-voxel map (both sort the cells the same way; ours starts at 0)
    np.testing.assert_array_equal(out['data_samples'][0].point2voxel_map.numpy(), inverse)
    np.testing.assert_array_equal(voxels['coors'][:, 1:].numpy(), uniq - uniq.min(0))
    # intensity only, of the first point of each voxel
    assert voxels['voxels'].shape == (len(uniq), 1)
    np.testing.assert_array_equal(voxels['voxels'][:, 0].numpy(), nuscenes_sweep[first, 3])


# -- SLidR's DropCuboids -------------------------------------------------------------------
def test_cuboid_drop_follows_slidrs_rule():
    """One cuboid of U[0, 0.2) times the cloud's extent around a random point, points strictly
    inside dropped, and the drop kept only if every image keeps at least 1024 pairs."""
    cfg = Config.fromfile(str(REPO_ROOT / REFERENCE_CONFIGS['slidr']))
    aug_cfg = next(t for t in cfg.train_dataloader.dataset.pipeline
                   if t['type'] == 'PairedCloudAugmentation')
    aug = TRANSFORMS.build(dict(aug_cfg, rotation=False, flip_x_prob=0.0, flip_y_prob=0.0))
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-50, 50, size=(20000, 3)).astype(np.float32)
    pts = np.concatenate([xyz, np.ones((20000, 1), np.float32)], 1)
    pairs = dict(point=np.arange(4000), cam=np.repeat([0, 1], 2000),
                 pixel=np.zeros((4000, 2), np.int64))
    dropped_any = kept_all = 0
    for seed in range(20):
        np.random.seed(seed)
        out = aug.transform(dict(points=pts, pairs={k: v.copy() for k, v in pairs.items()}))
        n = len(out['points'])
        if n < len(pts):
            dropped_any += 1
            removed = np.setdiff1d(np.arange(len(pts)), out['point_ids'])
            lo, hi = xyz[removed].min(0), xyz[removed].max(0)
            assert ((hi - lo) <= 0.2 * (xyz.max(0) - xyz.min(0)) + 1e-6).all()
            assert (np.bincount(out['pairs']['cam'], minlength=2) >= 1024).all()
        else:
            kept_all += 1
    assert dropped_any > 0
    # with fewer than 1024 pairs in an image, SLidR never drops (nothing to keep above 1024)
    few = dict(point=np.arange(1500), cam=np.repeat([0, 1], 750), pixel=np.zeros((1500, 2),
                                                                                np.int64))
    for seed in range(5):
        np.random.seed(seed)
        out = aug.transform(dict(points=pts, pairs={k: v.copy() for k, v in few.items()}))
        assert len(out['points']) == len(pts)


# -- the reference configs train --------------------------------------------------------------
@pytest.mark.parametrize('name', sorted(REFERENCE_CONFIGS))
def test_reference_config_trains(name, nuscenes_root, tmp_path):
    cfg = small_pretrain_cfg(REFERENCE_CONFIGS[name], nuscenes_root, tmp_path, iters=5)
    _, logs = train_in_process(cfg)
    losses = values(logs, 'loss')
    assert len(losses) == 5 and np.isfinite(losses).all()
    assert cfg.model.student.backbone.in_channels == 1
    assert cfg.model.data_preprocessor.voxel_type == 'minkunet_cylindrical'
