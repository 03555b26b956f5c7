"""The pretraining dataset on the real nuScenes and KITTI samples."""
import copy
import pickle

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS

from conftest import CAMERAS as CAMS
from conftest import KITTI_SAMPLE, sample_info_file
EXPECTED = dict(CAM_FRONT=3067, CAM_FRONT_RIGHT=3079, CAM_FRONT_LEFT=3704, CAM_BACK=4826,
                CAM_BACK_LEFT=4097, CAM_BACK_RIGHT=3379)


def _dataset(root, pipeline, ann=None, **kw):
    ann = ann or str(sample_info_file(root))
    return DATASETS.build(dict(type='ImageLidarPretrainDataset', ann_file=ann, data_root=str(root),
                               data_prefix=dict(pts='', img='', sp='superpixels'),
                               pipeline=pipeline, **kw))


LOAD = [dict(type='LoadLidarPoints', load_dim=5),
        dict(type='LoadMultiViewImagesAndSuperpixels'),
        dict(type='PointPixelPairing', min_depth=1.0)]


def test_pairing_counts_on_real_sample(nuscenes_root):
    results = _dataset(nuscenes_root, LOAD)[0]
    pairs = results['pairs']
    assert results['points'].shape == (34688, 5)
    assert results['cam_names'] == CAMS
    assert len(np.unique(pairs['point'])) == 20206
    for c, cam in enumerate(CAMS):
        assert int((pairs['cam'] == c).sum()) == EXPECTED[cam], cam
    assert sorted(pairs) == ['cam', 'pixel', 'point']  # the superpixel is read by the model


AUG = LOAD + [
    dict(type='PairedRandomResizedCrop', size=(224, 416), min_pairs_per_image=300),
    dict(type='PairedRandomFlip', prob=0.5),
    dict(type='PairedCloudAugmentation', cuboid_drop=dict(num=2, size=(2.0, 6.0))),
    dict(type='PackImageLidarInputs')
]


@pytest.mark.parametrize('seed', range(8))
def test_augmentations_keep_pairs_exact(nuscenes_root, seed):
    ref = _dataset(nuscenes_root, LOAD)[0]
    np.random.seed(seed)
    out = _dataset(nuscenes_root, AUG)[0]
    sample, points = out['data_samples'], out['inputs']['points'].numpy()
    meta = sample.metainfo
    pairs = {k: v.numpy() for k, v in out['inputs']['pairs'].items()}
    maps = out['inputs']['superpixels']
    assert out['inputs']['img'].shape == (6, 3, 224, 416) and out['inputs']['img'].dtype == torch.uint8
    assert maps.shape == (6, 224, 416) and maps.dtype == torch.int16
    assert {v.dtype for v in out['inputs']['pairs'].values()} == {torch.int32}
    assert len(pairs['point']) > 1000
    # the 3D points: new = original @ M.T, for the points that survived the cuboid drop
    ids = meta['point_ids']
    expected = ref['points'][ids, :3].astype(np.float64) @ meta['pcd_aug_matrix'].T
    np.testing.assert_allclose(points[:, :3], expected, atol=1e-4)
    np.testing.assert_array_equal(points[:, 3:], ref['points'][ids, 3:])
    # pairs: match each kept pair to its original by (original point id, camera)
    ref_key = {(int(p), int(c)): i for i, (p, c) in enumerate(zip(ref['pairs']['point'],
                                                                ref['pairs']['cam']))}
    orig = np.array([ref_key[(int(ids[p]), int(c))] for p, c in zip(pairs['point'], pairs['cam'])])
    assert meta['superpixel_sizes'] == [int(sp.max()) + 1 for sp in ref['superpixels']]
    checked_interior = 0
    for c in range(6):
        rows = pairs['cam'] == c
        x0, y0, w, h = meta['img_aug'][c]['crop']
        src = ref['pairs']['pixel'][orig[rows]]
        # every original pixel in the crop box is kept
        in_box = ((ref['pairs']['pixel'][:, 0] >= x0) & (ref['pairs']['pixel'][:, 0] < x0 + w)
                  & (ref['pairs']['pixel'][:, 1] >= y0) & (ref['pairs']['pixel'][:, 1] < y0 + h)
                  & (ref['pairs']['cam'] == c))
        dropped_points = ~np.isin(ref['pairs']['point'], ids)
        assert rows.sum() == (in_box & ~dropped_points).sum()
        # pixel: the transformed original pixel centre, to rounding
        u = (src[:, 0] + 0.5 - x0) * 416 / w - 0.5
        v = (src[:, 1] + 0.5 - y0) * 224 / h - 0.5
        if meta['img_aug'][c]['flip']:
            u = 415 - u
        assert np.abs(pairs['pixel'][rows, 0] - u).max() <= 0.5 + 1e-9
        assert np.abs(pairs['pixel'][rows, 1] - v).max() <= 0.5 + 1e-9
        # the transformed map, read at the pair's new pixel (where the model reads the pair's
        # superpixel), agrees with the original map at its original pixel wherever the
        # original map is constant around that pixel
        orig_ids = ref['superpixels'][c][src[:, 1], src[:, 0]].astype(np.int64)
        r = int(np.ceil(max(w / 416, h / 224))) + 1
        sp = ref['superpixels'][c]
        pad = np.pad(sp, r, mode='edge')
        win = np.stack([pad[src[:, 1] + r + dy, src[:, 0] + r + dx]
                        for dy in range(-r, r + 1) for dx in range(-r, r + 1)])
        uniform = (win == win[0]).all(0)
        new_px = pairs['pixel'][rows]
        under = maps[c].numpy()[new_px[:, 1], new_px[:, 0]]
        np.testing.assert_array_equal(under[uniform], orig_ids[uniform])
        checked_interior += int(uniform.sum())
    assert checked_interior > 0.5 * len(pairs['point'])


def test_kitti_frame_loads_and_pairs():
    root = KITTI_SAMPLE
    pipeline = [dict(type='LoadLidarPoints', load_dim=4),
                dict(type='LoadMultiViewImagesAndSuperpixels', with_superpixels=False),
                dict(type='PointPixelPairing')]
    ds = DATASETS.build(dict(type='ImageLidarPretrainDataset', ann_file=str(root / '000008.pkl'),
                             data_root=str(root), data_prefix=dict(pts='', img=''),
                             cameras=['CAM2'], pipeline=pipeline))
    out = ds[0]
    assert out['points'].shape == (17238, 4)
    assert out['img'][0].shape == (375, 1242, 3)
    # oracle: the info's own lidar2img matrix
    with open(root / '000008.pkl', 'rb') as f:
        cam = pickle.load(f)['data_list'][0]['images']['CAM2']
    p = np.c_[out['points'][:, :3].astype(np.float64), np.ones(len(out['points']))]
    q = p @ np.asarray(cam['lidar2img']).T
    u, v = q[:, 0] / q[:, 2], q[:, 1] / q[:, 2]
    ok = (q[:, 2] > 1) & (u >= 0) & (u < 1242) & (v >= 0) & (v < 375)
    assert len(out['pairs']['point']) == int(ok.sum()) > 1000
    np.testing.assert_array_equal(np.sort(out['pairs']['point']), np.flatnonzero(ok))


def test_reduced_decoding_keeps_image_content_aligned(nuscenes_root):
    """Decoding at half resolution samples the same full-resolution positions: the crops agree
    with full decoding up to JPEG's reduced-size filtering, and pairs and maps are identical."""
    outs = []
    for scale in (1, 2):
        pipeline = copy.deepcopy(AUG)
        pipeline[1] = dict(type='LoadMultiViewImagesAndSuperpixels', decode_scale=scale)
        np.random.seed(3)
        outs.append(_dataset(nuscenes_root, pipeline)[0])
    full, half = (o['inputs']['img'].float() for o in outs)
    assert torch.equal(outs[0]['inputs']['pairs']['pixel'], outs[1]['inputs']['pairs']['pixel'])
    assert torch.equal(outs[0]['inputs']['superpixels'], outs[1]['inputs']['superpixels'])
    assert (full - half).abs().mean() < 4.0
    # a one-pixel misalignment would cost much more than the filtering does
    shifted = torch.roll(half, 1, dims=-1)
    assert (full - shifted).abs().mean() > 1.5 * (full - half).abs().mean()


def test_a_wrong_load_dim_is_an_error_and_max_range_crops(nuscenes_root, nuscenes_sweep):
    """The info file says 5 floats per point: reading 4 would scramble the columns silently
    (34,688 x 5 floats are also a whole number of 4-float points), so it is an error naming the
    file. ``max_range`` keeps the points within a horizontal distance."""
    with pytest.raises(ValueError, match=r'LIDAR_TOP.*says 5 floats per point, the pipeline '
                                         r'reads 4'):
        _dataset(nuscenes_root, [dict(type='LoadLidarPoints', load_dim=4)])[0]
    out = _dataset(nuscenes_root, [dict(type='LoadLidarPoints', load_dim=5, max_range=20.0)])[0]
    near = np.hypot(nuscenes_sweep[:, 0], nuscenes_sweep[:, 1]) <= 20.0
    assert 1000 < near.sum() < len(near)
    np.testing.assert_array_equal(out['points'], nuscenes_sweep[near])
