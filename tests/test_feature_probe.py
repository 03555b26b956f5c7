"""The linear probe on frozen features and the real-data check's frames."""
import numpy as np
import pytest
import torch

from conftest import PANDASET_SAMPLE, require
from projects.img2lidar.evaluation.feature_probe import class_iou, fit_linear_probe, miou


def test_class_iou_by_hand():
    gt = np.array([0, 0, 1, 1, 2, 5])  # 5: outside the 3 classes, ignored
    pred = np.array([0, 1, 1, 1, 0, 0])
    # class 0: tp 1, fp 1 (the 2), fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: 0/1
    np.testing.assert_allclose(class_iou(pred, gt, 3), [1 / 3, 2 / 3, 0.0])
    out = miou(pred, gt, 4)  # class 3 has no true point: left out of the mean
    assert out['classes_present'] == 3
    assert out['miou'] == pytest.approx(100 / 3)
    assert np.isnan(out['per_class'][3])


def test_probe_learns_separable_classes_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 5
    labels = torch.randint(0, 4, (3000, ), generator=g)
    feats = centres[labels] + torch.randn(3000, 16, generator=g) * 0.5 + 100  # far from 0
    labels[:50] = 7  # ignored rows
    probe = fit_linear_probe(feats, labels, 4, seed=1, steps=200)
    pred = probe.predict(feats)
    keep = labels < 4
    assert (pred[keep] == labels[keep]).float().mean() > 0.99
    again = fit_linear_probe(feats, labels, 4, seed=1, steps=200)
    assert torch.equal(again.weight, probe.weight)


def test_real_data_frames_pair_like_the_sample_facts(tmp_path):
    """The check's frames: 001/00 has 169,171 points, 68,430 of them in the front camera (the
    sample's facts), and the 30 m range keeps exactly the points that close."""
    from projects.img2lidar.evaluation.real_data_check import load_frames
    from projects.img2lidar.preparation.pandaset_infos import create_pandaset_infos
    root = require(PANDASET_SAMPLE)
    out = tmp_path / 'pandaset'
    create_pandaset_infos(str(root), str(out), lidar='both', splits=dict(train=['001']),
                          progress=False)
    frames = {f.token: f for f in load_frames(str(out), 'train')}
    first = frames['001_00']
    assert len(first.labels) == 169171 and int(first.in_camera.sum()) == 68430
    assert len(first.pixels) == 68430 and (first.labels <= 17).all()
    near = load_frames(str(out), 'train', max_range=30.0)[0]
    pts = first.points.numpy()
    keep = np.hypot(pts[:, 0], pts[:, 1]) <= 30.0
    np.testing.assert_array_equal(near.points.numpy(), pts[keep])
    np.testing.assert_array_equal(near.labels, first.labels[keep])
