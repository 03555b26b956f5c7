"""The pretraining dataset on the real nuScenes and KITTI samples."""
import copy
import os
import pickle
import re
import shutil

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS

from conftest import KITTI_SAMPLE, NUSCENES_SAMPLE, require
from projects.img2lidar.datasets import BadSampleError

CAMS = ['CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT',
        'CAM_BACK_RIGHT']
EXPECTED = dict(CAM_FRONT=3067, CAM_FRONT_RIGHT=3079, CAM_FRONT_LEFT=3704, CAM_BACK=4826,
                CAM_BACK_LEFT=4097, CAM_BACK_RIGHT=3379)


@pytest.fixture(scope='module')
def nus_root(tmp_path_factory):
    """A data root with the real nuScenes sample and superpixels made by the project's tool."""
    import cv2
    from tools.create_superpixels import slic_superpixels, write_labels
    src = require(NUSCENES_SAMPLE)
    root = tmp_path_factory.mktemp('nus')
    for f in src.iterdir():
        os.symlink(f, root / f.name)
    with open(next(src.glob('*.pkl')), 'rb') as f:
        info = pickle.load(f)
    for cam, img in info['data_list'][0]['images'].items():
        labels = slic_superpixels(cv2.imread(str(src / img['img_path'])), downscale=4)
        stem = os.path.splitext(img['img_path'])[0]
        write_labels(str(root / 'sp' / cam / (stem + '.npz')), labels)
    return root


def _dataset(root, pipeline, ann=None, **kw):
    ann = ann or str(next(root.glob('*.pkl')))
    return DATASETS.build(dict(type='ImageLidarPretrainDataset', ann_file=ann, data_root=str(root),
                               data_prefix=dict(pts='', img='', sp='sp'), pipeline=pipeline,
                               **kw))


LOAD = [dict(type='LoadLidarPoints', load_dim=5),
        dict(type='LoadMultiViewImagesAndSuperpixels'),
        dict(type='PointPixelPairing', min_depth=1.0)]


def test_pairing_counts_on_real_sample(nus_root):
    results = _dataset(nus_root, LOAD)[0]
    pairs = results['pairs']
    assert results['points'].shape == (34688, 5)
    assert results['cam_names'] == CAMS
    assert len(np.unique(pairs['point'])) == 20206
    for c, cam in enumerate(CAMS):
        assert int((pairs['cam'] == c).sum()) == EXPECTED[cam], cam
    # each pair's superpixel is the id under its pixel
    for c in range(6):
        rows = pairs['cam'] == c
        px = pairs['pixel'][rows]
        np.testing.assert_array_equal(results['superpixels'][c][px[:, 1], px[:, 0]],
                                      pairs['superpixel'][rows])


AUG = LOAD + [
    dict(type='PairedRandomResizedCrop', size=(224, 416), min_pairs_per_image=300),
    dict(type='PairedRandomFlip', prob=0.5),
    dict(type='PairedCloudAugmentation', cuboid_drop=dict(num=2, size=(2.0, 6.0))),
    dict(type='PackImageLidarInputs')
]


@pytest.mark.parametrize('seed', range(8))
def test_augmentations_keep_pairs_exact(nus_root, seed):
    ref = _dataset(nus_root, LOAD)[0]
    np.random.seed(seed)
    out = _dataset(nus_root, AUG)[0]
    sample, points = out['data_samples'], out['inputs']['points'].numpy()
    meta = sample.metainfo
    pairs = {k: v.numpy() for k, v in sample.pairs.items()}
    assert out['inputs']['img'].shape == (6, 3, 224, 416)
    assert sample.superpixels.shape == (6, 224, 416)
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
    sizes = [int(sp.max()) + 1 for sp in ref['superpixels']]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
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
        # superpixel id travels with the pair exactly
        orig_ids = ref['superpixels'][c][src[:, 1], src[:, 0]].astype(np.int64) + offsets[c]
        np.testing.assert_array_equal(pairs['superpixel'][rows], orig_ids)
        # the transformed map agrees wherever the original map is constant around the pixel
        r = int(np.ceil(max(w / 416, h / 224))) + 1
        sp = ref['superpixels'][c]
        pad = np.pad(sp, r, mode='edge')
        win = np.stack([pad[src[:, 1] + r + dy, src[:, 0] + r + dx]
                        for dy in range(-r, r + 1) for dx in range(-r, r + 1)])
        uniform = (win == win[0]).all(0)
        new_px = pairs['pixel'][rows]
        under = sample.superpixels[c].numpy()[new_px[:, 1], new_px[:, 0]]
        np.testing.assert_array_equal(under[uniform], orig_ids[uniform])
        checked_interior += int(uniform.sum())
    assert checked_interior > 0.5 * len(pairs['point'])


def _copy_sample(root, tmp_path):
    """A writable copy of the sample (files, not links) and its info."""
    dst = tmp_path / 'root'
    shutil.copytree(root, dst, symlinks=False)
    with open(next(dst.glob('*.pkl')), 'rb') as f:
        info = pickle.load(f)
    return dst, info


def test_truncated_lidar_file_names_the_file(nus_root, tmp_path):
    root, info = _copy_sample(nus_root, tmp_path)
    lidar = root / info['data_list'][0]['lidar_points']['lidar_path']
    data = lidar.read_bytes()
    lidar.write_bytes(data[:-6])
    with pytest.raises(ValueError, match=re.escape(lidar.name) + '.*not a whole number of points'):
        _dataset(root, LOAD)[0]


def test_missing_and_unreadable_images_name_the_file(nus_root, tmp_path):
    root, info = _copy_sample(nus_root, tmp_path)
    img = root / info['data_list'][0]['images']['CAM_BACK']['img_path']
    img.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(img.name)):
        _dataset(root, LOAD)[0]
    img.write_bytes(b'not a jpeg')
    with pytest.raises(ValueError, match=re.escape(f'{img.name}: unreadable image')):
        _dataset(root, LOAD)[0]


def test_bad_superpixel_maps_name_the_file(nus_root, tmp_path):
    root, info = _copy_sample(nus_root, tmp_path)
    stem = os.path.splitext(info['data_list'][0]['images']['CAM_FRONT']['img_path'])[0]
    sp = root / 'sp' / 'CAM_FRONT' / (stem + '.npz')
    sp.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(sp.name)):
        _dataset(root, LOAD)[0]
    sp.write_bytes(b'garbage')
    with pytest.raises(ValueError, match=re.escape(f'{sp.name}: unreadable superpixel map')):
        _dataset(root, LOAD)[0]
    with open(sp, 'wb') as f:
        np.savez_compressed(f, labels=np.zeros((450, 800), np.uint8))
    msg = re.escape(f'{sp.name}: superpixel map is 800x450 but its image')
    with pytest.raises(ValueError, match=msg):
        _dataset(root, LOAD)[0]


def _two_sample_info(root, info, bad_lidar):
    """An info whose first entry points at ``bad_lidar`` and second at the real sweep."""
    bad = copy.deepcopy(info['data_list'][0])
    bad['lidar_points']['lidar_path'] = bad_lidar
    info = dict(info, data_list=[bad, info['data_list'][0]])
    path = root / 'two.pkl'
    with open(path, 'wb') as f:
        pickle.dump(info, f)
    return str(path)


def test_nan_coordinates_raise_or_are_skipped(nus_root, tmp_path):
    root, info = _copy_sample(nus_root, tmp_path)
    pts = np.fromfile(root / info['data_list'][0]['lidar_points']['lidar_path'], np.float32)
    pts = pts.reshape(-1, 5)
    pts[10, 1] = np.nan
    pts[20, 0] = np.inf
    pts.tofile(root / 'nan.bin')
    ann = _two_sample_info(root, info, 'nan.bin')
    with pytest.raises(BadSampleError, match='nan.bin: 2 points have NaN or infinite'):
        _dataset(root, LOAD, ann=ann)[0]
    ds = _dataset(root, LOAD, ann=ann, skip_bad_samples=True)
    out = ds[0]  # replaced by the good sample
    assert out['lidar_path'].endswith('.pcd.bin')
    assert ds.num_skipped >= 1


def test_too_few_pairs_raise_or_are_skipped(nus_root, tmp_path):
    pipeline = LOAD + [dict(type='PairedRandomResizedCrop', min_pairs=10**6, max_tries=3)]
    with pytest.raises(BadSampleError, match=r'pcd.bin: only \d+ point-pixel pairs left after 3'):
        _dataset(nus_root, pipeline)[0]
    # with skipping, mmengine redraws until max_refetch and then reports the dataset as broken
    ds = _dataset(nus_root, pipeline, skip_bad_samples=True, max_refetch=3)
    with pytest.raises(Exception, match='Cannot find valid'):
        ds[0]
    assert ds.num_skipped == 4


def test_kitti_frame_loads_and_pairs():
    root = require(KITTI_SAMPLE)
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


def test_reduced_decoding_keeps_image_content_aligned(nus_root):
    """Decoding at half resolution samples the same full-resolution positions: the crops agree
    with full decoding up to JPEG's reduced-size filtering, and pairs and maps are identical."""
    outs = []
    for scale in (1, 2):
        pipeline = copy.deepcopy(AUG)
        pipeline[1] = dict(type='LoadMultiViewImagesAndSuperpixels', decode_scale=scale)
        np.random.seed(3)
        outs.append(_dataset(nus_root, pipeline)[0])
    full, half = (o['inputs']['img'].float() for o in outs)
    assert torch.equal(outs[0]['data_samples'].pairs.pixel, outs[1]['data_samples'].pairs.pixel)
    assert torch.equal(outs[0]['data_samples'].superpixels, outs[1]['data_samples'].superpixels)
    assert (full - half).abs().mean() < 4.0
    # a one-pixel misalignment would cost much more than the filtering does
    shifted = torch.roll(half, 1, dims=-1)
    assert (full - shifted).abs().mean() > 1.5 * (full - half).abs().mean()
