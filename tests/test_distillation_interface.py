"""The seam between the distiller and its losses: a new loss is one class and one config entry.

The loss is the example of docs/extending.md, read from the doc and registered here. It reads
what no shipped loss reads together (per-sample row ranges of the superpixel level, superpixel
ids, and the pair level's indices); the distiller trains with it unchanged.
"""
import copy

import numpy as np
import pytest
import torch
from mmdet3d.registry import MODELS
from mmengine.dataset import pseudo_collate
from torch.nn import functional as F

from conftest import small_pretrain_cfg, train_in_process, values
from doc_commands import code_block
from projects.img2lidar.models import BatchPairs

ST = 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py'


# the example loss of docs/extending.md, run exactly as the doc prints it
_example = {}
exec(compile(code_block('example-loss'), 'docs/extending.md (example-loss)', 'exec'), _example)
PerSampleAgreementLoss = _example['PerSampleAgreementLoss']
assert MODELS.get('PerSampleAgreementLoss') is PerSampleAgreementLoss


def _batch(model, dataset, n=2):
    data = model.data_preprocessor(pseudo_collate([dataset[0] for _ in range(n)]), True)
    return data['inputs'], data['data_samples']


@pytest.fixture(scope='module')
def built(nuscenes_root, tmp_path_factory):
    """A small distiller and dataset on the real sample, with the test's loss."""
    from mmdet3d.registry import DATASETS
    cfg = small_pretrain_cfg(ST, nuscenes_root, tmp_path_factory.mktemp('iface'), 2)
    cfg.model.losses = dict(loss_custom=dict(type='PerSampleAgreementLoss', loss_weight=0.5))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    return cfg, model, ds


def test_a_new_loss_reads_ranges_ids_and_pairs(built):
    cfg, model, ds = built
    assert model.levels == ('superpixel', 'pair') and not model.pool_teacher
    np.random.seed(0)
    inputs, samples = _batch(model, ds)
    with torch.no_grad():
        feats = model.extract_features(inputs, samples, gather=False)
        out = model(inputs, samples, mode='loss')
    assert feats.superpixel.e is None  # no loss reads the teacher features: not pooled
    # the terms by hand, from the model's own parts
    with torch.no_grad():
        point_feats = model.extract_point_feat(inputs, samples)
        pixel_feats = model.extract_img_feat(inputs)[1].dense()
    pairs = BatchPairs(**inputs['pairs'])
    id_map = pairs.id_map()
    k_pair = point_feats[pairs.point.long()]
    q_pair = pixel_feats[pairs.image.long(), :, pairs.pixel[:, 1].long(), pairs.pixel[:, 0].long()]
    per_sample, counts = [], {}
    for b in range(2):
        rows = slice(int(pairs.pair_offsets[b]), int(pairs.pair_offsets[b + 1]))
        sps = pairs.superpixel[rows]
        ids = sps.unique()
        ids = ids[ids >= 0]
        agree = []
        for i in ids.tolist():
            sel = sps == i
            counts[i] = int(sel.sum())
            k = k_pair[rows][sel].mean(0)
            mask = id_map == i
            q = pixel_feats.permute(0, 2, 3, 1)[mask].mean(0)
            agree.append(1 - float(k @ q))
        per_sample.append(np.mean(agree))
    big = [i for i, c in counts.items() if c >= 5]
    keep = torch.isin(pairs.superpixel, torch.tensor(big))
    pair_term = float((1 - (k_pair[keep] * q_pair[keep]).sum(1)).mean())
    assert out['loss_custom_sample'].item() == pytest.approx(0.5 * np.mean(per_sample), rel=1e-4)
    assert out['loss_custom_pairs'].item() == pytest.approx(0.5 * pair_term, rel=1e-4)


def test_a_new_loss_trains_through_the_runner(built, tmp_path):
    cfg = copy.deepcopy(built[0])
    cfg.work_dir = str(tmp_path)
    _, logs = train_in_process(cfg)
    terms = values(logs, 'loss_custom_sample'), values(logs, 'loss_custom_pairs')
    assert len(terms[0]) == len(terms[1]) == 2 and np.isfinite(terms).all()
    np.testing.assert_allclose(values(logs, 'loss'), np.sum(terms, axis=0), rtol=1e-5)


@pytest.mark.parametrize('level', ['superpixel', 'pair'])
def test_similarity_loss_at_either_level(built, level):
    _, model, ds = built
    head = MODELS.build(dict(type='SimilarityLoss', level=level))
    assert head.required_levels() == (level, )
    np.random.seed(1)
    inputs, samples = _batch(model, ds)
    with torch.no_grad():
        feats = model.extract_features(inputs, samples, gather=False, levels=(level, ))
        got = head.loss(feats)['loss']
        point_feats = model.extract_point_feat(inputs, samples)
        pixel_feats = model.extract_img_feat(inputs)[1].dense()
    pairs = BatchPairs(**inputs['pairs'])
    if level == 'pair':
        k = point_feats[pairs.point.long()]
        q = pixel_feats[pairs.image.long(), :, pairs.pixel[:, 1].long(), pairs.pixel[:, 0].long()]
        assert k.shape[0] == pairs.point.shape[0] > 1000
    else:
        k, q = feats.superpixel.k, feats.superpixel.q
        assert feats.superpixel.k.shape[0] < 1000
    expected = (1 - F.cosine_similarity(k, q, dim=1)).mean()
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match='works on'):
        MODELS.build(dict(type='PPKTLoss', level='superpixel'))


def test_losses_must_declare_what_they_consume(built):
    cfg = copy.deepcopy(built[0])
    cfg.model.losses = dict(loss_mse=dict(type='mmdet.MSELoss'))
    with pytest.raises(TypeError, match='not a DistillationLoss'):
        MODELS.build(cfg.model)
