"""Zero-shot segmentation: the CLIP teacher's dense features, the text-embedding tool and the
ZeroShotSegmentor evaluated through mmdet3d's SegMetric.

Everything is built locally: a tiny random CLIP (``CLIPConfig`` with 2-layer, 32-wide
towers, patch 8) and a byte-level tokenizer vocabulary are written with ``save_pretrained``
and read back with ``local_files_only=True``; nothing is downloaded.
"""
import math
import re

import pytest
import torch
from mmdet3d.evaluation.metrics import SegMetric
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample, PointData
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.model import BaseModule
from mmengine.runner import load_checkpoint
from torch.nn import functional as F

from conftest import REPO_ROOT
from projects.img2lidar.datasets import NuScenesLidarSegDataset, SemanticKittiFewShotDataset
from projects.img2lidar.preparation.text_embeddings import (class_names, create_text_embeddings,
                                                            parse_classes, readable_name)

PROJ_DIM = 16


# -- a tiny local CLIP -------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_clip(tmp_path_factory):
    """A random CLIP (hidden 32, 2 layers, patch 8, image 32, projection 16) and a CLIP
    tokenizer whose vocabulary is the printable ASCII characters (no merges), saved as a
    transformers directory."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    path = tmp_path_factory.mktemp('tiny_clip')
    vocab = {'<|startoftext|>': 0, '<|endoftext|>': 1}
    for c in range(33, 127):  # bytes that byte-level BPE maps to themselves
        vocab[chr(c)] = len(vocab)
        vocab[chr(c) + '</w>'] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(path)
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=len(vocab), max_position_embeddings=64,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(tower, patch_size=8, image_size=32),
        projection_dim=PROJ_DIM)
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    model.save_pretrained(path)
    return path, model


def test_clip_teacher_dense_features(tiny_clip):
    path, clip = tiny_clip
    teacher = MODELS.build(dict(type='CLIPImageTeacher', checkpoint=str(path)))
    assert teacher.embed_dim == PROJ_DIM and teacher.patch_size == 8
    imgs = torch.randn(2, 3, 48, 64)
    out = teacher(imgs)
    assert out.shape == (2, PROJ_DIM, 6, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, 6, 8))
    assert not out.requires_grad
    assert not any(p.requires_grad for p in teacher.parameters())

    # frozen and always eval, also inside a parent in train mode; init_weights keeps weights
    parent = BaseModule()
    parent.teacher = teacher
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    parent.init_weights()
    parent.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    torch.testing.assert_close(teacher(imgs), out)

    # reference: transformers' own forward (position embeddings interpolated to 6x8) with the
    # last block's attention replaced by its value path, i.e. attention = out_proj(v_proj(.));
    # the block's residual and MLP then run as usual (MaskCLIP's reference implementation)
    vision = clip.vision_model
    attn = vision.encoder.layers[-1].self_attn
    pixels = teacher.normalize(imgs)  # the teacher normalises with CLIP's statistics
    hidden = vision(pixel_values=pixels, interpolate_pos_encoding=True,
                    output_hidden_states=True).hidden_states
    original = attn.forward
    attn.forward = lambda hidden_states, *a, **k: (attn.out_proj(attn.v_proj(hidden_states)),
                                                   None)
    try:
        with torch.no_grad():
            tokens = vision(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
    finally:
        attn.forward = original
    with torch.no_grad():
        ref = clip.visual_projection(vision.post_layernorm(tokens))[:, 1:]
        ref = F.normalize(ref, dim=-1).transpose(1, 2).reshape(2, PROJ_DIM, 6, 8)
        # without residual and MLP: post_layernorm(out_proj(v_proj(layer_norm1(x_last))))
        last = vision.encoder.layers[-1]
        v_only = attn.out_proj(attn.v_proj(last.layer_norm1(hidden[-2])))
        ref_v = clip.visual_projection(vision.post_layernorm(v_only))[:, 1:]
        ref_v = F.normalize(ref_v, dim=-1).transpose(1, 2).reshape(2, PROJ_DIM, 6, 8)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    plain = MODELS.build(dict(type='CLIPImageTeacher', checkpoint=str(path), residual_ffn=False))
    torch.testing.assert_close(plain(imgs), ref_v, atol=1e-5, rtol=1e-5)
    assert (out - ref_v).abs().max() > 1e-2  # the two variants differ

    with pytest.raises(ValueError, match='divisible'):
        teacher(torch.randn(1, 3, 50, 64))


def test_text_embeddings_tool(tiny_clip, tmp_path):
    path, clip = tiny_clip
    out = tmp_path / 'nus.pth'
    create_text_embeddings(str(path), parse_classes('nuscenes'), str(out), progress=False)
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {'embeddings', 'classes', 'templates', 'checkpoint'}
    emb = saved['embeddings']
    assert emb.shape == (16, PROJ_DIM) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(16))
    # the class table is the dataset's own, so prompts cannot drift from the scored labels
    assert saved['classes'] == list(NuScenesLidarSegDataset.METAINFO['classes'])
    assert len(saved['templates']) > 5
    kitti = class_names('semantickitti')
    assert kitti == list(SemanticKittiFewShotDataset.METAINFO['classes']) and len(kitti) == 19
    assert readable_name(kitti[4]) == 'vehicle' and readable_name(kitti[15]) == 'tree trunk'
    assert readable_name(kitti[16]) == 'terrain'
    assert parse_classes('car, road') == ['car', 'road']
    assert readable_name('traffic_cone') == 'traffic cone'
    assert readable_name('driveable_surface') == 'driveable surface'
    # reproducible, and distinct classes get distinct embeddings
    again = create_text_embeddings(str(path), class_names('nuscenes'), str(tmp_path / 'again.pth'),
                                   progress=False)
    torch.testing.assert_close(again['embeddings'], emb, atol=0, rtol=0)
    assert (emb @ emb.T - torch.eye(16)).abs().max() < 0.999

    # one template: the normalised projected feature at the end-of-text token
    single = create_text_embeddings(str(path), ['car', 'traffic_cone'],
                                    str(tmp_path / 'single.pth'), templates='single',
                                    progress=False)
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    for row, text in zip(single['embeddings'], ['a photo of a car.', 'a photo of a traffic cone.']):
        ids = tok([text], return_tensors='pt')['input_ids']
        with torch.no_grad():
            hidden = clip.text_model(input_ids=ids).last_hidden_state[0]
            eot = int((ids[0] == 1).nonzero()[0])
            ref = F.normalize(clip.text_projection(hidden[eot]), dim=0)
        torch.testing.assert_close(row, ref, atol=1e-5, rtol=1e-5)


# -- zero-shot segmentation through SegMetric --------------------------------------------------
NUM_CLASSES = 5
IGNORE = NUM_CLASSES
BACKBONE = dict(type='MinkUNetBackbone', in_channels=4, num_stages=4, base_channels=8,
                encoder_channels=[8, 16, 16, 32], encoder_blocks=[1, 1, 1, 1],
                decoder_channels=[32, 16, 16, 16], decoder_blocks=[1, 1, 1, 1],
                block_type='basic', sparseconv_backend='spconv')


def _clouds(sweep):
    """The real sweep and a transformed copy (rotated 30 degrees, x flipped, subsampled)."""
    pts = torch.from_numpy(sweep[:, :4].copy())
    a = math.radians(30)
    rot = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0],
                        [0, 0, 1.]])
    other = pts[::2].clone()
    other[:, :3] = other[:, :3] @ rot.T
    other[:, 0] = -other[:, 0]
    return [pts, other]


def _spherical_kmeans(feats, k, iters=100):
    """Cluster unit vectors by cosine until the assignment is stable; returns the labels."""
    gen = torch.Generator().manual_seed(0)
    centers = feats[torch.randperm(feats.shape[0], generator=gen)[:k]]
    labels = None
    for _ in range(iters):
        new = (feats @ centers.T).argmax(1)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        centers = F.normalize(torch.zeros(k, feats.shape[1]).index_add_(0, labels, feats), dim=1)
    return labels


@pytest.fixture(scope='module')
def zero_shot_setup(nuscenes_sweep, tmp_path_factory):
    """A random-init student saved as a distillation checkpoint, two labelled clouds and the
    'text embeddings' (per-class mean features)."""
    tmp = tmp_path_factory.mktemp('zero_shot')
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/_base_/models/minkunet34_student.py'))
    student_cfg = dict(type='MinkUNetStudent', out_channels=PROJ_DIM, backbone=BACKBONE)
    torch.manual_seed(1)
    student = MODELS.build(student_cfg).eval()
    # the distiller's layout: student keys at the top level, plus keys the segmentor ignores
    state = dict(student.state_dict())
    assert all(k.startswith(('backbone.', 'projection.')) for k in state)
    state['teacher.vision_model.embeddings.class_embedding'] = torch.randn(32)
    state['image_head.conv.weight'] = torch.randn(PROJ_DIM, 32, 1, 1)
    ckpt = tmp / 'pretrain.pth'
    torch.save({'state_dict': state, 'meta': {}}, ckpt)

    # per-cloud features, computed alone (not batched), as a labelled set would be
    pre = MODELS.build(cfg.model.data_preprocessor)
    clouds = _clouds(nuscenes_sweep)
    feats = []
    with torch.no_grad():
        for pts in clouds:
            data = pre(dict(inputs=dict(points=[pts]), data_samples=[Det3DDataSample()]), False)
            feats.append(student(data['inputs']['voxels'],
                                 [data['data_samples'][0].point2voxel_map]))
    sizes = [f.shape[0] for f in feats]
    labels = _spherical_kmeans(torch.cat(feats), NUM_CLASSES)
    counts = torch.bincount(labels, minlength=NUM_CLASSES)
    assert (counts > 500).all(), counts  # every class is well populated
    labels[::37] = IGNORE  # a few unlabelled points, ignored by the metric
    keep = labels != IGNORE
    means = torch.zeros(NUM_CLASSES, PROJ_DIM).index_add_(0, labels[keep], torch.cat(feats)[keep])
    emb = F.normalize(means, dim=1)
    names = [f'cluster{i}' for i in range(NUM_CLASSES)]
    torch.save({'embeddings': emb, 'classes': names, 'templates': [], 'checkpoint': str(ckpt)},
               tmp / 'text.pth')
    shifted = emb.roll(1, dims=0)  # every class gets another class's embedding
    torch.save({'embeddings': shifted, 'classes': names}, tmp / 'shuffled.pth')
    torch.save(emb.flip(0), tmp / 'flipped.pth')  # a bare tensor, rows reversed
    model_cfg = dict(type='ZeroShotSegmentor', data_preprocessor=cfg.model.data_preprocessor,
                     student=student_cfg)
    return dict(tmp=tmp, ckpt=str(ckpt), clouds=clouds, labels=list(labels.split(sizes)),
                names=names, model_cfg=model_cfg, student=student)


def _evaluate(model, setup):
    """Run ``test_step`` on the batch of two clouds and SegMetric through mmengine's
    Evaluator, as the test loop of tools/test.py does."""
    samples = []
    for lab in setup['labels']:
        s = Det3DDataSample()
        s.gt_pts_seg = PointData(pts_semantic_mask=lab.clone())
        s.eval_ann_info = dict(pts_semantic_mask=lab.numpy().copy())
        samples.append(s)
    data = dict(inputs=dict(points=[p.clone() for p in setup['clouds']]), data_samples=samples)
    model.eval()
    with torch.no_grad():
        outputs = model.test_step(data)
    evaluator = Evaluator(SegMetric())
    evaluator.dataset_meta = dict(label2cat=dict(enumerate(setup['names'])), ignore_index=IGNORE)
    evaluator.process(data_samples=outputs, data_batch=data)
    return evaluator.evaluate(len(outputs)), outputs


def test_zero_shot_recovers_labels_through_segmetric(zero_shot_setup):
    """Labels are the spherical k-means clusters of the pretrained features, so they are
    separable in feature space by construction: a converged k-means assignment is the argmax
    cosine to the normalised class means. With those means as 'text embeddings', the
    zero-shot segmentor must give back the labels (mIoU ~ 1) if, and only if, everything in
    between is right: the student is read from the distillation checkpoint, points get their
    own voxel's feature, the batch is split back per cloud in order, and rows map to labels.
    Shuffled embeddings or an unloaded student must fail."""
    setup = zero_shot_setup
    tmp = setup['tmp']
    cfg = dict(setup['model_cfg'], text_embeddings=str(tmp / 'text.pth'),
               checkpoint=setup['ckpt'])
    model = MODELS.build(cfg)
    assert model.class_names == setup['names']
    metrics, outputs = _evaluate(model, setup)
    assert metrics['miou'] > 0.99, metrics
    for out, lab in zip(outputs, setup['labels']):
        pred = out.pred_pts_seg.pts_semantic_mask
        assert pred.dtype == torch.long and pred.shape == lab.shape
        assert out.pts_seg_logits.pts_seg_logits.shape == (NUM_CLASSES, lab.shape[0])
        keep = lab != IGNORE
        assert (pred[keep] == lab[keep]).float().mean() > 0.99

    # shuffled embeddings: every class predicted as another one
    shuffled = MODELS.build(dict(cfg, text_embeddings=str(tmp / 'shuffled.pth')))
    metrics_shuffled, _ = _evaluate(shuffled, setup)
    assert metrics_shuffled['miou'] < 0.05, metrics_shuffled

    # the student not loaded (another random init): the features mean nothing
    torch.manual_seed(123)
    unloaded = MODELS.build(dict(cfg, checkpoint=None))
    metrics_unloaded, _ = _evaluate(unloaded, setup)
    assert metrics_unloaded['miou'] < 0.6, metrics_unloaded

    # tools/test.py's path: load_from fills the student through the state-dict pre-hook
    load_checkpoint(unloaded, setup['ckpt'], map_location='cpu', strict=False)
    for k, v in setup['student'].state_dict().items():
        assert torch.equal(unloaded.student.state_dict()[k], v), k
    assert set(unloaded.state_dict()) == set(setup['student'].state_dict())
    metrics_loaded, _ = _evaluate(unloaded, setup)
    assert metrics_loaded['miou'] == pytest.approx(metrics['miou'])


def test_zero_shot_label_map_and_offset(zero_shot_setup):
    setup = zero_shot_setup
    tmp = setup['tmp']
    base = dict(setup['model_cfg'], checkpoint=setup['ckpt'])
    model = MODELS.build(dict(base, text_embeddings=str(tmp / 'text.pth'))).eval()
    # reversed rows (a bare tensor file) with the reversed label map: the same labels
    flipped = MODELS.build(dict(base, text_embeddings=str(tmp / 'flipped.pth'),
                                label_map=list(range(NUM_CLASSES))[::-1], label_offset=1))
    assert flipped.class_names is None
    data = dict(inputs=dict(points=[p.clone() for p in setup['clouds']]),
                data_samples=[Det3DDataSample() for _ in setup['clouds']])
    with torch.no_grad():
        ref = model.test_step(dict(data, data_samples=[Det3DDataSample() for _ in range(2)]))
        got = flipped.eval().test_step(data)
        logits = model(**model.data_preprocessor(
            dict(data, data_samples=[Det3DDataSample() for _ in range(2)]), False),
            mode='tensor')
    assert logits.shape == (sum(p.shape[0] for p in setup['clouds']), NUM_CLASSES)
    for r, g in zip(ref, got):
        assert torch.equal(g.pred_pts_seg.pts_semantic_mask, r.pred_pts_seg.pts_semantic_mask + 1)
    with pytest.raises(NotImplementedError):
        model.loss({}, [])
    with pytest.raises(ValueError, match='label_map'):
        MODELS.build(dict(base, text_embeddings=str(tmp / 'text.pth'), label_map=[0, 1]))
    with pytest.raises(ValueError, match='student outputs'):
        bad = dict(base, text_embeddings=str(tmp / 'text.pth'), checkpoint=None)
        bad['student'] = dict(bad['student'], out_channels=8)
        MODELS.build(bad)
    with pytest.raises(KeyError, match='student keys missing'):
        torch.save({'state_dict': {'teacher.x': torch.zeros(1)}}, tmp / 'empty.pth')
        MODELS.build(dict(base, text_embeddings=str(tmp / 'text.pth'),
                          checkpoint=str(tmp / 'empty.pth')))


def test_zero_shot_config_through_tools_test(zero_shot_setup, tmp_path, nuscenes_sweep):
    """configs/zero_shot through tools/test.py on the real sweep, its nuScenes lidarseg label
    file written with raw ids whose evaluation classes are the clusters (raw 9, 14, 15, 17, 18
    are barrier, bicycle, bus, car, construction_vehicle = labels 0-4; raw 0 = ignored), and
    mmdet3d's SegMetric."""
    import pickle
    import subprocess
    import sys

    from conftest import NUSCENES_SAMPLE
    setup = zero_shot_setup
    labels = setup['labels'][0]
    raw_of_label = torch.tensor([9, 14, 15, 17, 18, 0])  # index IGNORE (5) -> raw 0
    raw = raw_of_label[labels.clamp(max=IGNORE)].to(torch.uint8).numpy()
    assert raw.shape == (34688, )
    raw.tofile(tmp_path / 'labels.bin')
    with open(next(NUSCENES_SAMPLE.glob('*.pkl')), 'rb') as f:
        info = pickle.load(f)
    entry = info['data_list'][0]
    entry['pts_semantic_mask_path'] = str(tmp_path / 'labels.bin')
    with open(tmp_path / 'val.pkl', 'wb') as f:
        pickle.dump(dict(metainfo=info['metainfo'], data_list=[entry]), f)
    base = REPO_ROOT / 'configs/zero_shot/zeroshot_minkunet34_clip-vitb16_nuscenes-lidarseg.py'
    cfg = tmp_path / 'zs.py'
    cfg.write_text(f'''
_base_ = ['{base}']
model = dict(student=dict(_delete_=True, **{setup['model_cfg']['student']!r}),
             text_embeddings='{setup['tmp'] / 'text.pth'}')
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root='{NUSCENES_SAMPLE}',
                                    ann_file='{tmp_path / 'val.pkl'}',
                                    data_prefix=dict(pts='', pts_semantic_mask='')))
''')
    res = subprocess.run([sys.executable, 'tools/test.py', str(cfg), setup['ckpt'], '--work-dir',
                          str(tmp_path / 'work')], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    miou = float(re.search(r'miou: ([0-9.]+)', out).group(1))
    assert miou > 0.99, out[-2000:]
