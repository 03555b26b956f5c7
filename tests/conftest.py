"""Shared test fixtures and helpers: the real samples in tests/data, small model sizes,
the training tools run as a user runs them, and their logs."""
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: the small real samples committed with the repository (see tests/data/README.md)
TEST_DATA = REPO_ROOT / 'tests' / 'data'
NUSCENES_SAMPLE = TEST_DATA / 'nuscenes_sample'
KITTI_SAMPLE = TEST_DATA / 'kitti_sample'
SEMANTICKITTI_FIXTURE = TEST_DATA / 'semantickitti_fixture'


def _find_optional_data() -> Path:
    """Where the larger optional samples (the PandaSet frames) are looked for:
    ``$IMG2LIDAR_SHARED_DATA``, else a ``shared/data`` folder beside this checkout, else beside
    the local checkout this one was cloned from (``git clone . /tmp/x``, as a fresh-clone check
    does). The first candidate is returned when none exists, so that the skip reason names it."""
    if 'IMG2LIDAR_SHARED_DATA' in os.environ:
        return Path(os.environ['IMG2LIDAR_SHARED_DATA'])
    beside = REPO_ROOT.parent / 'shared' / 'data'
    if beside.exists():
        return beside
    origin = subprocess.run(['git', '-C', str(REPO_ROOT), 'remote', 'get-url', 'origin'],
                            capture_output=True, text=True).stdout.strip()
    origin = origin[len('file://'):] if origin.startswith('file://') else origin
    if origin and Path(origin).is_dir():
        cloned_from = Path(origin).resolve().parent / 'shared' / 'data'
        if cloned_from.exists():
            return cloned_from
    return beside


#: optional data outside the repository (tests that need it skip without it)
OPTIONAL_DATA = _find_optional_data()
PANDASET_SAMPLE = OPTIONAL_DATA / 'pandaset_sample'
PYTHON = sys.executable

import projects.img2lidar  # noqa: E402,F401  applies compat fixes, registers modules
from mmdet3d.utils import register_all_modules  # noqa: E402
from mmdet3d.registry import MODELS  # noqa: E402
from mmengine.config import Config  # noqa: E402

register_all_modules(init_default_scope=True)  # build through mmdet3d's registries, as configs do

#: a MinkUNet of width 16 with one block per stage (decoder output 48 channels)
SMALL_MINKUNET = dict(base_channels=16, encoder_channels=[16, 32, 64, 128],
                      encoder_blocks=[1, 1, 1, 1], decoder_channels=[128, 64, 48, 48],
                      decoder_blocks=[1, 1, 1, 1])
#: a ResNet-18 of width 16 as a frozen random teacher (128 output channels)
SMALL_TEACHER = dict(depth=18, base_channels=16, stem_channels=16)
SMALL_TEACHER_CHANNELS = 128
#: the nuScenes sample's six cameras, in the order of its info file
CAMERAS = ['CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT',
           'CAM_BACK_RIGHT']


def require(path: Path) -> Path:
    """Skip the calling test with a clear reason when an optional sample (outside the
    repository) is absent. The samples under tests/data are part of the repository: tests use
    them directly, so a missing one fails."""
    if not path.exists():
        pytest.skip(f'optional sample data not found at {path} (set IMG2LIDAR_SHARED_DATA to '
                    'the folder that holds it)')
    return path


@pytest.fixture(autouse=True)
def autograd_stays_enabled():
    """A test (or a tool's ``main`` it calls in-process) that leaves autograd off fails itself,
    instead of failing every later test that back-propagates."""
    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail('this test left autograd disabled (torch.set_grad_enabled(False) outside a '
                    'context)')


@pytest.fixture(scope='session')
def nuscenes_sweep() -> np.ndarray:
    """The real nuScenes LIDAR_TOP sweep, (34688, 5) float32."""
    root = NUSCENES_SAMPLE
    path = next(root.glob('*LIDAR_TOP*.pcd.bin'))
    return np.fromfile(path, dtype=np.float32).reshape(-1, 5)


@pytest.fixture(scope='session')
def nuscenes_info() -> dict:
    """The mmdet3d v1.1 info file of the nuScenes sample."""
    root = NUSCENES_SAMPLE
    with open(next(root.glob('*.pkl')), 'rb') as f:
        return pickle.load(f)


@pytest.fixture(scope='session')
def nuscenes_root(tmp_path_factory) -> Path:
    """A data root holding the real nuScenes sample (links) and SLIC superpixels made by the
    project's tool in ``superpixels/<CAM>/<stem>.npz`` (at 1/4 resolution, for speed).

    Tests must not write into it; :func:`write_info` adds info files next to it.
    """
    from projects.img2lidar.preparation.superpixels import create_superpixels
    src = NUSCENES_SAMPLE
    root = tmp_path_factory.mktemp('nuscenes_root')
    for f in src.iterdir():
        os.symlink(f, root / f.name)
    listed, made = create_superpixels(str(next(src.glob('*.pkl'))), str(root),
                                      str(root / 'superpixels'), img_prefix='', workers=1,
                                      progress=False, downscale=4)
    assert listed == made == 6
    return root


def sample_info_file(root: Path) -> Path:
    """The sample's own info file in a data root made by :func:`nuscenes_root` (or a copy)."""
    return root / next(NUSCENES_SAMPLE.glob('*.pkl')).name


def write_info(path: Path, root: Path, copies: int = 1, edit=None) -> Path:
    """An info file listing the nuScenes sample ``copies`` times (optionally edited)."""
    with open(sample_info_file(root), 'rb') as f:
        info = pickle.load(f)
    info['data_list'] = [dict(info['data_list'][0]) for _ in range(copies)]
    if edit is not None:
        edit(info)
    with open(path, 'wb') as f:
        pickle.dump(info, f)
    return path


def deterministic_pretrain_pipeline(size=(112, 208)) -> List[dict]:
    """The pretraining pipeline with every random step fixed: the whole image (scale 1, its
    aspect ratio) resized, no flips, no rotation."""
    return [
        dict(type='LoadLidarPoints', load_dim=5, use_dim=[0, 1, 2, 3]),
        dict(type='LoadMultiViewImagesAndSuperpixels', decode_scale=2),
        dict(type='PointPixelPairing', min_depth=1.0),
        dict(type='PairedRandomResizedCrop', size=size, scale=(1.0, 1.0), ratio=(16 / 9, 16 / 9),
             min_pairs_per_image=1, min_pairs=1),
        dict(type='PairedCloudAugmentation', rotation=False, flip_x_prob=0.0, flip_y_prob=0.0),
        dict(type='PackImageLidarInputs'),
    ]


def small_pretrain_overrides(cfg) -> None:
    """Shrink a MinkUNet pretraining config in place: small student and random small
    teacher (CPU tests)."""
    cfg.model.student.backbone.update(SMALL_MINKUNET)
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.backbone.update(SMALL_TEACHER)
    cfg.model.image_head.in_channels = SMALL_TEACHER_CHANNELS


ST_CONFIG = REPO_ROOT / 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py'


def write_small_pretrain_config(path: Path, root: Path, ann: Path, iters: int,
                                batch_size: int, gather: bool) -> Path:
    """A small, deterministic pretraining config inheriting the repository's ST-SLidR one,
    for runs through the command-line tools (distributed, Slurm)."""
    cfg = Config.fromfile(str(ST_CONFIG))
    small_pretrain_overrides(cfg)
    path.write_text(f'''
_base_ = ['{ST_CONFIG}']
model = dict(
    gather_features={gather},
    sync_bn=True,
    student=dict(backbone={cfg.model.student.backbone.to_dict()!r}),
    teacher=dict(checkpoint=None, backbone={cfg.model.teacher.backbone.to_dict()!r}),
    image_head=dict(in_channels={cfg.model.image_head.in_channels}))
train_pipeline = {deterministic_pretrain_pipeline()!r}
data = dict(data_root='{root}', ann_file='{ann}',
            data_prefix=dict(_delete_=True, pts='', img='', sp='superpixels'),
            pipeline=train_pipeline)
train_dataloader = dict(
    batch_size={batch_size}, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False), dataset=data)
val_dataloader = dict(
    batch_size={batch_size}, num_workers=0, persistent_workers=False, dataset=data)
test_dataloader = val_dataloader
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters},
                 val_interval={iters + 1})
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr=0.05))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={iters}, by_epoch=False))
log_processor = dict(window_size=1, by_epoch=False)
randomness = dict(seed=0)
''')
    return path


def short_schedule(cfg: Config, iters: int, shuffle: bool) -> None:
    """Make a config's training ``iters`` iterations of batch 1 in this process (no workers),
    at a constant lr 0.05, without validation, testing or custom hooks, with a log row per
    iteration and a checkpoint at the end."""
    cfg.train_dataloader.update(batch_size=1, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=shuffle)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    cfg.param_scheduler = []
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.custom_hooks = []
    cfg.optim_wrapper.optimizer.lr = 0.05
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=iters, by_epoch=False)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    cfg.randomness = dict(seed=0)


def small_pretrain_cfg(config: str, root: Path, work_dir: Path, iters: int,
                       crop=(112, 208)) -> Config:
    """A shipped pretraining config made small for CPU tests on the real sample: small
    student (Cylinder3D: base_channels 8) and random small teacher, quarter-size crops, batch
    1, ``iters`` iterations with a constant lr 0.05, a log row and a checkpoint at the end."""
    cfg = Config.fromfile(str(REPO_ROOT / config))
    ds = cfg.train_dataloader.dataset
    ds.data_root = str(root)
    ds.ann_file = str(sample_info_file(root))
    ds.data_prefix = dict(pts='', img='', sp='superpixels')
    for t in ds.pipeline:  # quarter-size crops keep the CPU test short
        if t['type'] == 'PairedRandomResizedCrop':
            t.update(size=crop, min_pairs_per_image=128, min_pairs=256)
    short_schedule(cfg, iters, shuffle=True)
    cfg.work_dir = str(work_dir)
    if cfg.model.student.type == 'Cylinder3DStudent':
        cfg.model.student.backbone.base_channels = 8
        cfg.model.teacher.checkpoint = None
        cfg.model.teacher.backbone.update(SMALL_TEACHER)
        cfg.model.image_head.in_channels = SMALL_TEACHER_CHANNELS
    else:
        small_pretrain_overrides(cfg)
    return cfg


def train_in_process(cfg: Config):
    """Train with mmengine's Runner in this process; returns the runner and its log rows."""
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner, read_scalars(Path(cfg.work_dir))


#: the small MinkUNet backbone of the finetuning tests
FINETUNE_BACKBONE = dict(type='MinkUNetBackbone', in_channels=4, num_stages=4, base_channels=16,
                encoder_channels=[16, 32, 64, 128], encoder_blocks=[1, 1, 1, 1],
                decoder_channels=[128, 64, 48, 48], decoder_blocks=[1, 1, 1, 1],
                block_type='basic', sparseconv_backend='spconv')


def pretrained_distiller_checkpoint(path: Path) -> dict:
    """A checkpoint of a small distillation model (student keys at the top level, random
    weights) at ``path``; returns its backbone state dict (segmentor keys)."""
    cfg = Config.fromfile(str(ST_CONFIG))
    cfg.model.student.backbone = dict(FINETUNE_BACKBONE)
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.backbone.update(depth=18, base_channels=16, stem_channels=16)
    cfg.model.image_head.in_channels = 128
    model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return {k[len('backbone.'):]: v for k, v in model.state_dict().items()
            if k.startswith('backbone.')}


def finetune_config(path: Path, root: Path, ckpt: Path, model_type: str = 'MinkUNet',
                    iters: int = 2) -> Path:
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
    backbone=dict({FINETUNE_BACKBONE!r},
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


#: tiny random configs of every ViT teacher family (transformers class names, config)
TINY_VIT_FAMILIES = {
    'vit': ('ViTConfig', 'ViTModel', dict(hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, intermediate_size=64,
                                          image_size=32, patch_size=8, layer_norm_eps=1e-6)),
    'dinov2': ('Dinov2Config', 'Dinov2Model', dict(hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=2, mlp_ratio=4,
                                                   image_size=28, patch_size=14)),
    'dinov2_with_registers': ('Dinov2WithRegistersConfig', 'Dinov2WithRegistersModel',
                              dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   mlp_ratio=4, image_size=28, patch_size=14,
                                   num_register_tokens=4)),
    'dinov3_vit': ('DINOv3ViTConfig', 'DINOv3ViTModel', dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        patch_size=16, num_register_tokens=4)),
    'dinov3_convnext': ('DINOv3ConvNextConfig', 'DINOv3ConvNextModel', dict(
        depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])),
}
def save_tiny_vit(family: str, path: Path, seed: int = 0):
    """A tiny random transformers model of ``family`` saved to ``path``; returns it."""
    import transformers
    config_cls, model_cls, kwargs = TINY_VIT_FAMILIES[family]
    torch.manual_seed(seed)
    extra = dict(add_pooling_layer=False) if family == 'vit' else {}
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs),
                                             **extra).eval()
    model.save_pretrained(path)
    return model


def random_sparse(batch: int = 2, shape=(10, 12, 9), sites: int = 250, channels: int = 5,
                  seed: int = 0, dtype: torch.dtype = torch.float64, device: str = 'cpu'):
    """``sites`` distinct random voxels per sample: int32 indices (batch * sites, 4) as
    (b, z, y, x), random features (batch * sites, channels) and the spatial shape as a list."""
    g = torch.Generator().manual_seed(seed)
    idx = []
    for b in range(batch):
        flat = torch.randperm(math.prod(shape), generator=g)[:sites]
        zyx = torch.stack(torch.unravel_index(flat, shape), dim=1)
        idx.append(torch.cat([torch.full((sites, 1), b), zyx], dim=1))
    indices = torch.cat(idx).int()
    feats = torch.randn(indices.shape[0], channels, generator=g, dtype=dtype)
    return indices.to(device), feats.to(device), list(shape)


def dense_weight(w):
    """spconv 2 KRSC weight (out, kD, kH, kW, in) -> conv3d weight (out, in, kD, kH, kW)."""
    return w.permute(0, 4, 1, 2, 3)


def assert_same_vjp(out, ref, wrt, ref_wrt, **tolerance) -> None:
    """The gradients of ``out`` and of its reference ``ref`` along one random probe agree:
    those of ``out`` with respect to each of ``wrt`` equal those of ``ref`` with respect to the
    matching ``ref_wrt`` (``torch.testing.assert_close`` with ``tolerance``)."""
    probe = torch.randn_like(ref)
    got = torch.autograd.grad((out * probe).sum(), list(wrt))
    exp = torch.autograd.grad((ref * probe).sum(), list(ref_wrt))
    for a, r in zip(got, exp):
        torch.testing.assert_close(a, r, **tolerance)


def to_dense(indices, feats, shape, batch: int = 2):
    """Sparse features (N, C) at (batch, z, y, x) indices as a dense (B, C, *shape) tensor."""
    out = feats.new_zeros(batch, feats.shape[1], *shape)
    i = indices.long()
    out[i[:, 0], :, i[:, 1], i[:, 2], i[:, 3]] = feats
    return out


def at_sites(dense, indices):
    """The rows of a dense (B, C, *shape) tensor at sparse indices, (N, C)."""
    i = indices.long()
    return dense[i[:, 0], :, i[:, 1], i[:, 2], i[:, 3]]


def two_clouds(sweep: np.ndarray):
    """The sweep (x, y, z, intensity) and a transformed copy (rotated by 30 degrees, x flipped,
    shifted up by 0.3 m), as a batch of two clouds."""
    import math
    pts = torch.from_numpy(sweep[:, :4].copy())
    a = math.radians(30)
    rot = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.]])
    other = pts.clone()
    other[:, :3] = pts[:, :3] @ rot.T
    other[:, 0] = -other[:, 0]
    other[:, 2] += 0.3
    return [pts, other]


def read_scalars(work_dir: Path, run: int = -1) -> List[dict]:
    """Rows of ``vis_data/scalars.json`` of one run of an mmengine work dir (the newest by
    default; -2 the one before...)."""
    logs = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    assert logs, f'no scalars.json in {work_dir}'
    with open(logs[run]) as f:
        return [json.loads(line) for line in f]


def values(rows: Sequence[dict], key: str) -> List[float]:
    """The values of ``key`` in log rows that have it, in order."""
    return [r[key] for r in rows if key in r]


def free_port() -> int:
    """A TCP port no process listens on now (the system's pick), for a test's process group:
    fixed ports collide between test runs side by side."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(cmd: Sequence[str], env: Optional[Dict[str, str]] = None,
             timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command from the repository root as a user would (one OpenMP thread), and
    fail with its output when it fails."""
    res = subprocess.run(list(cmd), cwd=REPO_ROOT,
                         env=dict(os.environ, OMP_NUM_THREADS='1', **(env or {})),
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res
