"""Vision-transformer teachers (DINO, DINOv2, DINOv2 with registers, DINOv3 ViT and ConvNeXt)
from tiny random transformers models saved with ``save_pretrained``, the DINOv2 release
converter, and a short pretraining run with a ViT teacher through tools/train.py."""
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS

from conftest import (REPO_ROOT, SMALL_MINKUNET, TINY_VIT_FAMILIES as FAMILIES, read_scalars,
                      run_tool, sample_info_file, save_tiny_vit, values)
from projects.img2lidar.preparation.teacher_checkpoints import (ConversionError,
                                                                convert_checkpoint)

PATCH = {'vit': 8, 'dinov2': 14, 'dinov2_with_registers': 14, 'dinov3_vit': 16,
         'dinov3_convnext': 32}
PREFIX = {'vit': 1, 'dinov2': 1, 'dinov2_with_registers': 5, 'dinov3_vit': 5,
          'dinov3_convnext': 1}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    out = {}
    for family in FAMILIES:
        path = tmp_path_factory.mktemp(family)
        out[family] = (path, save_tiny_vit(family, path))
    return out


def _images(h, w, n=2, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255


def _tokens_to_map(tokens, prefix, h, w):
    patches = tokens[:, prefix:]
    return patches.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)


@pytest.mark.parametrize('family', list(FAMILIES))
def test_teacher_equals_the_transformers_model(tiny, family):
    path, model = tiny[family]
    p = PATCH[family]
    teacher = MODELS.build(dict(type='ViTTeacher', checkpoint=str(path)))
    assert teacher.patch_size == p and teacher.family == family
    imgs = _images(2 * p, 3 * p)  # non-square: position embeddings are interpolated
    out = teacher(imgs)
    assert out.shape == (2, teacher.embed_dim, 2, 3) and not out.requires_grad
    pixels = teacher.normalize(imgs)
    kwargs = dict(interpolate_pos_encoding=True) if family == 'vit' else {}
    with torch.no_grad():
        ref = model(pixel_values=pixels, output_hidden_states=True, **kwargs)
    torch.testing.assert_close(out, _tokens_to_map(ref.last_hidden_state, PREFIX[family], 2, 3))
    # the pre-norm output of the last block (ScaLR, SuperFlow): hidden_states[-1]
    pre = MODELS.build(dict(type='ViTTeacher', checkpoint=str(path), final_norm=False))
    expected = ref.hidden_states[-1] if family == 'dinov3_convnext' else _tokens_to_map(
        ref.hidden_states[-1], PREFIX[family], 2, 3)
    torch.testing.assert_close(pre(imgs), expected)
    assert (pre(imgs) - out).abs().max() > 1e-3


def test_teacher_layer_option(tiny):
    path, model = tiny['dinov2']
    first = MODELS.build(dict(type='ViTTeacher', checkpoint=str(path), layer=1))
    imgs = _images(28, 42)
    with torch.no_grad():
        ref = model(pixel_values=first.normalize(imgs), output_hidden_states=True)
    torch.testing.assert_close(first(imgs), _tokens_to_map(model.layernorm(ref.hidden_states[1]),
                                                           1, 2, 3))
    with pytest.raises(ValueError, match='layer must be in 1..2'):
        MODELS.build(dict(type='ViTTeacher', checkpoint=str(path), layer=3))
    with pytest.raises(ValueError, match='not divisible by the patch size 14'):
        first(_images(30, 42))
    # a ConvNeXt stage has its own stride and width: stage 1 is (N, hidden_sizes[0], H/4, W/4)
    path, model = tiny['dinov3_convnext']
    stage1 = MODELS.build(dict(type='ViTTeacher', checkpoint=str(path), layer=1,
                               final_norm=False))
    width = model.config.hidden_sizes[0]
    assert (stage1.patch_size, stage1.embed_dim) == (4, width)
    assert stage1(_images(64, 96)).shape == (2, width, 16, 24)


def test_dinov2_at_224x448_gives_16x32_patches(tiny):
    teacher = MODELS.build(dict(type='ViTTeacher', checkpoint=str(tiny['dinov2'][0])))
    assert teacher(_images(224, 448, n=1)).shape == (1, 32, 16, 32)


def test_teacher_stays_frozen_and_in_eval_mode(tiny):
    """After an optimizer step over a model holding it, the teacher (here DINOv3, whose RoPE is
    randomised in train mode) has its weights and gives the same features."""
    path = tiny['dinov3_vit'][0]
    teacher = MODELS.build(dict(type='ViTTeacher', checkpoint=str(path)))
    head = MODELS.build(dict(type='ImageProjectionHead', in_channels=32, out_channels=8,
                             scale_factor=16))
    parent = torch.nn.ModuleDict(dict(teacher=teacher, head=head)).train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    imgs = _images(32, 64)
    first = teacher(imgs)
    optimizer = torch.optim.SGD(parent.parameters(), lr=1.0)
    loss = head(teacher(imgs), (32, 64)).sum()
    loss.backward()
    optimizer.step()
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    torch.testing.assert_close(teacher(imgs), first, rtol=0, atol=0)
    assert head.proj.weight.grad is not None


def test_unknown_family_names_the_directory(tmp_path):
    from transformers import BertConfig, BertModel
    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, vocab_size=30)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"{tmp_path}: model_type 'bert'"):
        MODELS.build(dict(type='ViTTeacher', checkpoint=str(tmp_path)))


# -- the DINOv2 release converter ---------------------------------------------------------------
def dinov2_release(width=384, depth=1, swiglu=False, registers=0, grid=2, seed=0):
    """A state dict with the official DINOv2 release's keys and shapes (dinov2_vits14_pretrain
    .pth layout), random values."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.02):
        return torch.randn(*shape, generator=g) * scale

    sd = {'cls_token': r(1, 1, width), 'pos_embed': r(1, grid * grid + 1, width),
          'mask_token': r(1, width), 'patch_embed.proj.weight': r(width, 3, 14, 14),
          'patch_embed.proj.bias': r(width), 'norm.weight': 1 + r(width), 'norm.bias': r(width)}
    if registers:
        sd['register_tokens'] = r(1, registers, width)
    hidden = (int(width * 4 * 2 / 3) + 7) // 8 * 8 if swiglu else 4 * width
    for i in range(depth):
        b = f'blocks.{i}.'
        sd.update({b + 'norm1.weight': 1 + r(width), b + 'norm1.bias': r(width),
                   b + 'attn.qkv.weight': r(3 * width, width), b + 'attn.qkv.bias': r(3 * width),
                   b + 'attn.proj.weight': r(width, width), b + 'attn.proj.bias': r(width),
                   b + 'ls1.gamma': 1 + r(width), b + 'norm2.weight': 1 + r(width),
                   b + 'norm2.bias': r(width), b + 'ls2.gamma': 1 + r(width)})
        if swiglu:
            sd.update({b + 'mlp.w12.weight': r(2 * hidden, width),
                       b + 'mlp.w12.bias': r(2 * hidden), b + 'mlp.w3.weight': r(width, hidden),
                       b + 'mlp.w3.bias': r(width)})
        else:
            sd.update({b + 'mlp.fc1.weight': r(hidden, width), b + 'mlp.fc1.bias': r(hidden),
                       b + 'mlp.fc2.weight': r(width, hidden), b + 'mlp.fc2.bias': r(width)})
    return sd


def reference_forward(sd, pixels, heads):
    """The official DinoVisionTransformer's forward, written out on the release's own keys
    (pre-norm blocks with layer scale, fused qkv, GELU MLP or SwiGLU, final norm), at the
    release's native grid (no position-embedding interpolation)."""
    width = sd['cls_token'].shape[-1]
    x = F.conv2d(pixels, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=14)
    n, _, h, w = x.shape
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd['cls_token'].expand(n, -1, -1), x], 1) + sd['pos_embed']
    if 'register_tokens' in sd:
        x = torch.cat([x[:, :1], sd['register_tokens'].expand(n, -1, -1), x[:, 1:]], 1)
    depth = 1 + max(int(k.split('.')[1]) for k in sd if k.startswith('blocks.'))
    for i in range(depth):
        p = lambda k: sd[f'blocks.{i}.{k}']  # noqa: E731
        y = F.layer_norm(x, (width, ), p('norm1.weight'), p('norm1.bias'), 1e-6)
        qkv = (y @ p('attn.qkv.weight').T + p('attn.qkv.bias')).reshape(n, -1, 3, heads,
                                                                          width // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(width // heads)).softmax(-1) @ v
        att = att.transpose(1, 2).reshape(n, -1, width) @ p('attn.proj.weight').T
        x = x + p('ls1.gamma') * (att + p('attn.proj.bias'))
        y = F.layer_norm(x, (width, ), p('norm2.weight'), p('norm2.bias'), 1e-6)
        if f'blocks.{i}.mlp.w12.weight' in sd:
            x1, x2 = (y @ p('mlp.w12.weight').T + p('mlp.w12.bias')).chunk(2, dim=-1)
            y = (F.silu(x1) * x2) @ p('mlp.w3.weight').T + p('mlp.w3.bias')
        else:
            y = F.gelu(y @ p('mlp.fc1.weight').T + p('mlp.fc1.bias'))
            y = y @ p('mlp.fc2.weight').T + p('mlp.fc2.bias')
        x = x + p('ls2.gamma') * y
    x = F.layer_norm(x, (width, ), sd['norm.weight'], sd['norm.bias'], 1e-6)
    prefix = 1 + (sd['register_tokens'].shape[1] if 'register_tokens' in sd else 0)
    return x[:, prefix:].transpose(1, 2).reshape(n, width, h, w)


@pytest.mark.parametrize('swiglu,registers', [(False, 0), (True, 0), (False, 4)])
def test_converter_round_trips_a_dinov2_release(tmp_path, swiglu, registers):
    sd = dinov2_release(swiglu=swiglu, registers=registers)
    src = tmp_path / 'dinov2_vits14_pretrain.pth'
    torch.save(sd, src)
    fmt, dropped = convert_checkpoint(str(src), str(tmp_path / 'out'))
    assert fmt == 'dinov2' and dropped == []
    import transformers
    model, info = transformers.AutoModel.from_pretrained(str(tmp_path / 'out'),
                                                         local_files_only=True,
                                                         output_loading_info=True)
    assert not info['missing_keys'] and not info['unexpected_keys']
    assert type(model).__name__ == ('Dinov2WithRegistersModel' if registers else 'Dinov2Model')
    teacher = MODELS.build(dict(type='ViTTeacher', checkpoint=str(tmp_path / 'out')))
    imgs = _images(28, 28)  # the release's native 2 x 2 grid here
    with torch.no_grad():
        expected = reference_forward(sd, teacher.normalize(imgs), heads=6)
    torch.testing.assert_close(teacher(imgs), expected, rtol=1e-4, atol=1e-4)


def test_converter_refuses_unknown_keys_naming_the_file(tmp_path):
    sd = dinov2_release()
    sd['head.weight'] = torch.zeros(10, 384)
    src = tmp_path / 'odd_dinov2.pth'
    torch.save(sd, src)
    with pytest.raises(ConversionError, match=r'odd_dinov2\.pth: 1 keys are not part of a '
                                              r'DINOv2 release: head\.weight'):
        convert_checkpoint(str(src), str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()


# -- pretraining with a ViT teacher through tools/train.py -----------------------------------
def test_dinov2_stslidr_config_lowers_the_loss(tmp_path, nuscenes_root):
    """Twenty CPU iterations of the DINOv2 ST-SLidR config (a tiny random DINOv2, the small
    student, 112x224 images: 8 x 16 patches) on the real nuScenes sample."""
    save_tiny_vit('dinov2', tmp_path / 'dinov2')
    base = REPO_ROOT / 'configs/st-slidr/stslidr_minkunet34-cyl_dinov2-vitb14_8xb4-100e_nuscenes.py'
    cfg = tmp_path / 'vit.py'
    cfg.write_text(f'''
_base_ = ['{base}']
model = dict(student=dict(backbone={SMALL_MINKUNET!r}),
             teacher=dict(checkpoint='{tmp_path / 'dinov2'}'),
             image_head=dict(in_channels=32))
train_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root='{nuscenes_root}', ann_file='{sample_info_file(nuscenes_root)}',
                 data_prefix=dict(_delete_=True, pts='', img='', sp='superpixels'),
                 pipeline=[t if t['type'] != 'PairedRandomResizedCrop' else dict(t, size=(112, 224))
                           for t in _base_.train_dataloader.dataset.pipeline]))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=20)
val_dataloader = val_cfg = val_evaluator = None
param_scheduler = []
custom_hooks = []
optim_wrapper = dict(optimizer=dict(lr=0.002))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=20, by_epoch=False))
log_processor = dict(window_size=1, by_epoch=False)
randomness = dict(seed=0)
''')
    run_tool([sys.executable, 'tools/train.py', str(cfg), '--work-dir', str(tmp_path / 'work')])
    losses = values(read_scalars(tmp_path / 'work'), 'loss_st')
    assert len(losses) == 20 and np.isfinite(losses).all()
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses
