"""tools/convert_teacher_checkpoint.py turns MoCo / SwAV / DINO / OBoW / torchvision ResNet-50
checkpoints into mmdet ResNet keys that load strictly.

Each source layout is fabricated from a real mmdet ``ResNet(depth=50)`` state dict (random
values, so a wrong key mapping cannot pass), with the prefixes and extra heads the released
checkpoints have. The converted file is loaded with ``mmengine.runner.load_checkpoint(...,
strict=True)`` and compared tensor by tensor with the original.
"""
import argparse
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
import torch
from mmdet.models.backbones import ResNet
from mmengine.runner import load_checkpoint

from conftest import REPO_ROOT
from projects.img2lidar.preparation.teacher_checkpoints import (ConversionError,
                                                                convert_checkpoint,
                                                                convert_state_dict,
                                                                resnet_key_shapes)

SCRIPT = REPO_ROOT / 'tools' / 'convert_teacher_checkpoint.py'

Sd = Dict[str, torch.Tensor]


def _randomized(sd: Sd, seed: int) -> 'OrderedDict[str, torch.Tensor]':
    """Same keys and shapes as ``sd`` with random values (positive running_var)."""
    gen = torch.Generator().manual_seed(seed)
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for key, value in sd.items():
        if key.endswith('num_batches_tracked'):
            out[key] = torch.randint(1, 10**6, (), generator=gen)
        elif key.endswith('running_var'):
            out[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            out[key] = torch.randn(value.shape, generator=gen)
    return out


@pytest.fixture(scope='module')
def resnet() -> ResNet:
    """One mmdet ResNet-50 for the module (building it takes about a second)."""
    return ResNet(depth=50)


@pytest.fixture(scope='module')
def reference(resnet: ResNet) -> 'OrderedDict[str, torch.Tensor]':
    """The weights every fabricated checkpoint holds for its backbone."""
    return _randomized(resnet.state_dict(), seed=0)


@pytest.fixture(scope='module')
def other(resnet: ResNet) -> 'OrderedDict[str, torch.Tensor]':
    """Different weights, for the branches that must not be picked (key encoder, student)."""
    return _randomized(resnet.state_dict(), seed=1)


def _prefixed(sd: Sd, prefix: str) -> Sd:
    return {prefix + k: v for k, v in sd.items()}


def _obow_blocks(sd: Sd) -> Sd:
    """torchvision keys to OBoW's SequentialFeatureExtractor keys (_feature_blocks.0..4)."""
    out = {}
    for key, value in sd.items():
        if key.startswith('conv1.'):
            out['_feature_blocks.0.Conv.' + key[len('conv1.'):]] = value
        elif key.startswith('bn1.'):
            out['_feature_blocks.0.bn.' + key[len('bn1.'):]] = value
        else:
            layer, rest = key.split('.', 1)
            out[f'_feature_blocks.{layer[len("layer"):]}.{rest}'] = value
    return out


def _r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def _bn(prefix: str, c: int) -> Sd:
    return {f'{prefix}.weight': _r(c), f'{prefix}.bias': _r(c), f'{prefix}.running_mean': _r(c),
            f'{prefix}.running_var': torch.rand(c) + 0.5,
            f'{prefix}.num_batches_tracked': torch.tensor(5)}


# Each builder returns (checkpoint, expected auto format, substrings the dropped list must hold).
Case = Tuple[object, str, List[str]]


def moco_v2(ref: Sd, oth: Sd) -> Case:
    q = {**ref, 'fc.0.weight': _r(2048, 2048), 'fc.0.bias': _r(2048), 'fc.2.weight': _r(128, 2048),
         'fc.2.bias': _r(128)}
    k = {**oth, 'fc.0.weight': _r(2048, 2048), 'fc.0.bias': _r(2048), 'fc.2.weight': _r(128, 2048),
         'fc.2.bias': _r(128)}
    state = {**_prefixed(q, 'module.encoder_q.'), **_prefixed(k, 'module.encoder_k.'),
             'module.queue': _r(128, 64), 'module.queue_ptr': torch.zeros(1, dtype=torch.long)}
    ckpt = {'epoch': 800, 'arch': 'resnet50', 'state_dict': state,
            'optimizer': {'state': {}, 'param_groups': [{'lr': 0.03, 'params': [0, 1]}]}}
    return ckpt, 'moco', ['state_dict/module.encoder_k.* (322 keys)',
                          'state_dict/module.encoder_q.fc.* (4 keys)', 'state_dict/module.queue ',
                          'state_dict/module.queue_ptr', 'optimizer', 'epoch']


def moco_v1(ref: Sd, oth: Sd) -> Case:
    state = {**_prefixed({**ref, 'fc.weight': _r(128, 2048), 'fc.bias': _r(128)},
                         'module.encoder_q.'),
             **_prefixed({**oth, 'fc.weight': _r(128, 2048), 'fc.bias': _r(128)},
                         'module.encoder_k.'),
             'module.queue': _r(128, 64), 'module.queue_ptr': torch.zeros(1, dtype=torch.long)}
    return {'epoch': 200, 'arch': 'resnet50', 'state_dict': state}, 'moco', [
        'module.encoder_k.*', 'module.encoder_q.fc.* (2 keys)', 'module.queue']


def moco_v3(ref: Sd, oth: Sd) -> Case:
    head = {'fc.0.weight': _r(64, 2048), 'fc.1.weight': _r(64), 'fc.3.weight': _r(32, 64)}
    state = {**_prefixed({**ref, **head}, 'module.base_encoder.'),
             **_prefixed({**oth, **head}, 'module.momentum_encoder.'),
             'module.predictor.0.weight': _r(64, 32), 'module.predictor.3.weight': _r(32, 64)}
    return {'epoch': 1000, 'arch': 'resnet50', 'state_dict': state}, 'moco', [
        'module.momentum_encoder.*', 'module.base_encoder.fc.* (3 keys)', 'module.predictor.*']


def swav(ref: Sd, oth: Sd) -> Case:
    # swav_800ep_pretrain.pth.tar: a bare dict saved from the DDP model (module.*)
    heads = {'projection_head.0.weight': _r(256, 2048), 'projection_head.0.bias': _r(256),
             **_bn('projection_head.1', 256), 'projection_head.3.weight': _r(128, 256),
             'projection_head.3.bias': _r(128), 'prototypes.weight': _r(300, 128)}
    return _prefixed({**ref, **heads}, 'module.'), 'swav', [
        'module.projection_head.* (9 keys)', 'module.prototypes.* (1 key)']


def swav_hub(ref: Sd, oth: Sd) -> Case:
    # torch hub / training checkpoint: bare keys under 'state_dict' with the heads
    heads = {'projection_head.0.weight': _r(256, 2048), 'prototypes.weight': _r(300, 128)}
    return {'epoch': 800, 'state_dict': {**ref, **heads}, 'amp': {'loss_scaler0': {}}}, 'swav', [
        'state_dict/projection_head.* (1 key)', 'state_dict/prototypes.* (1 key)', 'amp']


def dino_full(ref: Sd, oth: Sd) -> Case:
    # dino_resnet50_pretrain_full_checkpoint.pth: the BN teacher is DDP-wrapped too
    head = {'head.mlp.0.weight': _r(64, 2048), 'head.mlp.0.bias': _r(64),
            'head.last_layer.weight_g': _r(100, 1), 'head.last_layer.weight_v': _r(100, 64)}
    ckpt = {'student': _prefixed({**oth, **head}, 'module.backbone.'),
            'teacher': {**_prefixed(ref, 'module.backbone.'), **_prefixed(head, 'module.')},
            'optimizer': {'state': {}, 'param_groups': []}, 'epoch': 800,
            'args': argparse.Namespace(arch='resnet50', out_dim=60000),
            'dino_loss': {'center': _r(1, 100)}}
    return ckpt, 'dino', ['teacher/module.head.* (4 keys)', 'student/* (322 keys)', 'args',
                          'dino_loss/* (1 key)']


def dino_teacher_bare(ref: Sd, oth: Sd) -> Case:
    # teacher saved without DDP (teacher_without_ddp): backbone.* and head.*
    head = {'head.mlp.0.weight': _r(64, 2048), 'head.last_layer.weight_v': _r(100, 64)}
    ckpt = {'student': _prefixed(oth, 'module.backbone.'),
            'teacher': {**_prefixed(ref, 'backbone.'), **head}, 'epoch': 100}
    return ckpt, 'dino', ['teacher/head.* (2 keys)', 'student/*']


def dino_backbone(ref: Sd, oth: Sd) -> Case:
    # dino_resnet50_pretrain.pth: bare torchvision keys, fc replaced by Identity (no fc keys);
    # indistinguishable from torchvision, so auto reports 'torchvision'.
    return dict(ref), 'torchvision', []


def obow_full(ref: Sd, oth: Sd) -> Case:
    # model_net_checkpoint_200.pth.tar: OBoW.state_dict() saved from the DDP model
    rest = {'bow_predictor.layers_w.0.0.weight': _r(64, 1024),
            'bow_predictor.scale': _r(2),
            'bow_extractor.bow_extractor.0._embedding': _r(8192, 1024),
            'bow_extractor.bow_extractor.0._track_num_batches': torch.zeros(1),
            'linear_classifier.layers.weight': _r(1000, 2048),
            '_alpha': torch.tensor([0.99]), '_iteration': torch.zeros(1)}
    network = {**_prefixed(_obow_blocks(ref), 'feature_extractor.'),
               **_prefixed(_obow_blocks(oth), 'feature_extractor_teacher.'), **rest}
    ckpt = {'epoch': 200, 'network': _prefixed(network, 'module.'), 'meters': None}
    return ckpt, 'obow', ['network/module.feature_extractor_teacher.* (318 keys)',
                          'network/module.bow_extractor.* (2 keys)',
                          'network/module.bow_predictor.*', 'network/module.linear_classifier.*',
                          'network/module._alpha (1 key)', 'meters']


def obow_feature_extractor(ref: Sd, oth: Sd) -> Case:
    # feature_extractor_net_checkpoint_<epoch>.pth.tar: the student's SequentialFeatureExtractor
    return {'epoch': 200, 'network': _obow_blocks(ref), 'meters': None}, 'obow', ['epoch']


def obow_torchvision(ref: Sd, oth: Sd) -> Case:
    # tochvision_resnet50_student_K8192_epoch200.pth.tar: fc is the BoW classifier
    network = {**ref, 'fc.weight': _r(512, 2048), 'fc.bias': torch.zeros(512)}
    return {'network': network}, 'obow', ['network/fc.* (2 keys)']


def torchvision(ref: Sd, oth: Sd) -> Case:
    # resnet50-19c8e357.pth is older than BN's num_batches_tracked: those are filled with 0
    sd = {k: v for k, v in ref.items() if not k.endswith('num_batches_tracked')}
    ckpt = {**sd, 'fc.weight': _r(1000, 2048), 'fc.bias': _r(1000)}
    return ckpt, 'torchvision', ['fc.* (2 keys)']


BUILDERS: Dict[str, Callable[[Sd, Sd], Case]] = {
    f.__name__: f
    for f in (moco_v2, moco_v1, moco_v3, swav, swav_hub, dino_full, dino_teacher_bare,
              dino_backbone, obow_full, obow_feature_extractor, obow_torchvision, torchvision)
}


def _assert_loads_equal(resnet: ResNet, path: Path, reference: Sd, name: str) -> None:
    """Load ``path`` strictly into ``resnet`` (zeroed first) and compare with ``reference``."""
    with torch.no_grad():
        for tensor in resnet.state_dict().values():
            tensor.zero_()
    load_checkpoint(resnet, str(path), map_location='cpu', strict=True)
    loaded = resnet.state_dict()
    assert list(loaded) == list(reference)
    for key, value in reference.items():
        if key.endswith('num_batches_tracked') and name == 'torchvision':
            assert loaded[key].item() == 0, key  # absent in the source, filled with 0
            continue
        assert torch.equal(loaded[key], value), f'{name}: {key} differs'


def test_key_spec_matches_mmdet_resnet50(resnet: ResNet) -> None:
    """The converter's analytic key list is exactly mmdet ResNet-50's state dict."""
    spec = resnet_key_shapes(50)
    actual = OrderedDict((k, tuple(v.shape)) for k, v in resnet.state_dict().items())
    assert spec == actual
    assert list(spec) == list(actual)


@pytest.mark.parametrize('name', list(BUILDERS))
def test_convert_and_load_strict(name: str, resnet: ResNet, reference: Sd, other: Sd,
                                 tmp_path: Path) -> None:
    """Each fabricated layout converts (auto-detected) and loads strictly with equal tensors."""
    ckpt, fmt, expected_drops = BUILDERS[name](reference, other)
    state, resolved, dropped = convert_state_dict(ckpt)
    assert resolved == fmt
    text = '\n'.join(dropped)
    for needle in expected_drops:
        assert needle in text, f'{needle!r} not in dropped list:\n{text}'
    if not expected_drops:
        assert dropped == []

    dst = tmp_path / f'{name}_mmdet.pth'
    torch.save({'state_dict': state, 'meta': {'format': resolved, 'dropped': dropped}}, dst)
    _assert_loads_equal(resnet, dst, reference, name)


def test_convert_checkpoint_file(resnet: ResNet, reference: Sd, other: Sd,
                                 tmp_path: Path) -> None:
    """File to file: torch's safe loader reads a DINO checkpoint (argparse.Namespace inside),
    the output holds the documented meta and loads strictly."""
    ckpt, fmt, _ = dino_full(reference, other)
    src, dst = tmp_path / 'dino_full_checkpoint.pth', tmp_path / 'sub' / 'r50_dino.pth'
    torch.save(ckpt, src)
    resolved, dropped = convert_checkpoint(str(src), str(dst))
    assert resolved == fmt == 'dino'
    saved = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(saved) == {'state_dict', 'meta'}
    assert saved['meta'] == {'source': str(src), 'format': 'dino', 'dropped': dropped}
    assert 'teacher/module.head.* (4 keys)' in dropped
    _assert_loads_equal(resnet, dst, reference, 'dino_full')


@pytest.mark.parametrize('name,fmt', [('dino_backbone', 'dino'), ('moco_v2', 'moco'),
                                      ('obow_full', 'obow'), ('swav', 'swav'),
                                      ('torchvision', 'torchvision')])
def test_explicit_format(name: str, fmt: str, reference: Sd, other: Sd) -> None:
    """The pure function with an explicit format gives the original tensors."""
    ckpt, _, _ = BUILDERS[name](reference, other)
    state, resolved, _ = convert_state_dict(ckpt, fmt)
    assert resolved == fmt
    assert list(state) == list(reference)
    for key, value in reference.items():
        if not key.endswith('num_batches_tracked'):
            assert torch.equal(state[key], value), key


def test_cli_moco(resnet: ResNet, reference: Sd, other: Sd, tmp_path: Path) -> None:
    """The command line converts a MoCo v2 file and prints what it kept and dropped."""
    ckpt, _, _ = moco_v2(reference, other)
    src, dst = tmp_path / 'moco_v2_800ep_pretrain.pth.tar', tmp_path / 'out' / 'r50_moco.pth'
    torch.save(ckpt, src)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(src), str(dst), '--format', 'auto'],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'format: moco' in proc.stdout
    assert 'kept 318 tensors' in proc.stdout
    assert 'state_dict/module.encoder_k.* (322 keys)' in proc.stdout
    _assert_loads_equal(resnet, dst, reference, 'moco_v2')


def test_missing_key_names_file(reference: Sd, other: Sd, tmp_path: Path) -> None:
    """A missing ResNet key fails with the file name and the key, in the API and the CLI."""
    ckpt, _, _ = torchvision(reference, other)
    del ckpt['layer3.2.conv2.weight']
    src = tmp_path / 'broken_resnet50.pth'
    torch.save(ckpt, src)
    with pytest.raises(ConversionError, match='broken_resnet50.pth') as info:
        convert_checkpoint(str(src), str(tmp_path / 'out.pth'))
    assert 'layer3.2.conv2.weight' in str(info.value)
    assert not (tmp_path / 'out.pth').exists()

    proc = subprocess.run([sys.executable, str(SCRIPT), str(src), str(tmp_path / 'out.pth')],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 1 and 'broken_resnet50.pth' in proc.stderr


def test_shape_mismatch_and_wrong_format(reference: Sd, other: Sd) -> None:
    """Shape mismatches, extra ResNet blocks (wrong depth) and a wrong --format fail clearly."""
    ckpt, _, _ = swav(reference, other)
    ckpt['module.layer1.0.conv1.weight'] = torch.randn(64, 64, 3, 3)
    with pytest.raises(ConversionError, match=r'shape mismatch.*swav_800ep\.pth.*layer1\.0\.conv1'):
        convert_state_dict(ckpt, source='swav_800ep.pth')

    deeper = dict(reference)
    deeper['layer3.6.conv1.weight'] = torch.randn(256, 1024, 1, 1)  # a ResNet-101 block
    with pytest.raises(ConversionError, match='layer3.6.conv1.weight'):
        convert_state_dict(deeper)

    ckpt, _, _ = swav(reference, other)
    with pytest.raises(ConversionError, match='encoder_q'):
        convert_state_dict(ckpt, 'moco', source='swav.pth')
    with pytest.raises(ConversionError, match='cannot detect'):
        convert_state_dict({'foo.weight': torch.zeros(1)})
