"""PandaSet: the converter (tools/create_pandaset_infos.py), the segmentation dataset and its
class table, the pretraining dataset, and nuScenes + PandaSet pretraining in one ConcatDataset.

The converter runs in the default suite on a synthetic root in PandaSet's layout whose points
are placed by construction (tests/synthetic_pandaset.py); the other tests read the real PandaSet
frames (outside the repository; they skip without them)."""
import gzip
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mmdet3d.registry import DATASETS
from mmengine.config import Config

from conftest import (PANDASET_SAMPLE, PYTHON, REPO_ROOT, deterministic_pretrain_pipeline,
                      require, run_tool, sample_info_file, small_pretrain_overrides,
                      short_schedule, train_in_process, values)
import synthetic_pandaset as synth
from projects.img2lidar.datasets import LoadLidarPoints, PandaSetSegDataset
from projects.img2lidar.datasets.transforms.point_pixel_pairing import project_to_cameras
from projects.img2lidar.preparation.pandaset_infos import POINT_COLUMNS, create_pandaset_infos

SPLITS = dict(train=['001', '002'], val=['003'])
MIXED_CONFIG = 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes-pandaset.py'
#: raw class counts of frame 001/00 (both lidars), read from annotations/semseg/00.pkl.gz
RAW_COUNTS_001_00 = {2: 1, 4: 787, 5: 26775, 6: 2288, 7: 57746, 8: 826, 9: 193, 10: 518,
                     11: 4137, 13: 20052, 14: 3759, 16: 9, 17: 23, 18: 146, 19: 163, 20: 1194,
                     24: 11, 30: 184, 36: 1630, 37: 7, 38: 241, 41: 34429, 42: 14052}
#: the same frame in the 17 evaluation classes, summed by hand from the counts above with the
#: table of PandaSetSegDataset's docstring
MAPPED_COUNTS_001_00 = {
    'road': 57746,  # Road
    'traffic_sign': 1630 + 241,  # Signs + Construction Signs
    'barrier': 0,
    'pedestrian': 184,  # Pedestrian
    'vegetation': 26775,
    'road_marking': 826 + 193 + 518,  # Lane Line + Stop Line + Other Road Marking
    'sidewalk': 4137,
    'manmade': 34429 + 14052,  # Building + Other Static Object
    'traffic_cone': 7,  # Cones
    'car': 20052,
    'motorcycle': 146,
    'truck': 3759 + 9,  # Pickup Truck + Semi-truck
    'bus': 0,
    'bicycle': 0,
    'other_vehicle': 23 + 163 + 1194,  # Towed Object + Construction + Uncommon
    'ground': 2288,
    'driveway': 0,
    'ignored': 1 + 787 + 11,  # Exhaust + Reflection + Personal Mobility Device
}


def quaternion_pose(pose: dict) -> np.ndarray:
    """4x4 from a PandaSet pose, written out (independent of the converter's pyquaternion)."""
    q = pose['heading']
    w, x, y, z = (q[k] for k in 'wxyz')
    n = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    m = np.eye(4)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                 [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                 [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = [pose['position'][k] for k in 'xyz']
    return m


def raw_frame(seq: str, stem: str):
    """PandaSet's own lidar DataFrame and labels of one frame, and the frame's JSON files."""
    root = PANDASET_SAMPLE / seq
    lidar = pd.read_pickle(root / 'lidar' / f'{stem}.pkl.gz')
    labels = pd.read_pickle(root / 'annotations' / 'semseg' / f'{stem}.pkl.gz')['class']
    read = lambda p: json.loads((root / p).read_text())  # noqa: E731
    return lidar, labels.to_numpy(), read


def load_points(out, token: str) -> np.ndarray:
    return np.fromfile(out / 'points' / f'{token}.bin', dtype=np.float32).reshape(
        -1, len(POINT_COLUMNS))


def read_infos(path) -> dict:
    with open(path, 'rb') as f:
        return pickle.load(f)


# -- the synthetic root: counts and pixels known by construction (default suite) ----------------
@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    """The synthetic root (tests/synthetic_pandaset.py) converted by the command line with both
    lidars, as a user runs it: (root, out dir, the frames as constructed)."""
    tmp = tmp_path_factory.mktemp('synthetic_pandaset')
    frames = synth.write_synthetic_pandaset(tmp / 'root')
    run_tool([PYTHON, 'tools/create_pandaset_infos.py', '--root', str(tmp / 'root'),
              '--out-dir', str(tmp / 'out'), '--lidar', 'both', '--split', 'train=001'])
    return tmp / 'root', tmp / 'out', frames


def _synthetic_infos(out) -> dict:
    return {d['token']: d for d in read_infos(out / 'pandaset_infos_train.pkl')['data_list']}


def test_synthetic_infos_list_each_frame_with_its_own_pose(synthetic):
    root, out, frames = synthetic
    infos = read_infos(out / 'pandaset_infos_train.pkl')
    assert infos['metainfo']['sequences'] == ['001'] and infos['metainfo']['lidar'] == 'both'
    data = infos['data_list']
    assert [(d['token'], d['frame'], d['sample_idx']) for d in data] == [
        ('001_00', 0, 0), ('001_02', 2, 1)]
    for d in data:
        stem = d['token'][-2:]
        # frame 02 takes pose 2 of the three, not the second pose of the list
        np.testing.assert_allclose(d['ego2global'], synth.ego2world(int(stem)), atol=1e-12)
        assert d['timestamp'] == synth.LIDAR_STAMPS[int(stem)]
        assert d['lidar_points'] == dict(lidar_path=f'001_{stem}.bin', num_pts_feats=6,
                                         lidar2ego=np.eye(4).tolist())
        assert d['pts_semantic_mask_path'] == f'001_{stem}.bin'
        assert list(d['images']) == [synth.CAMERA]
        cam = d['images'][synth.CAMERA]
        assert cam['img_path'] == f'001_{stem}.jpg'
        assert cam['cam2img'] == synth.CAM2IMG
        assert cam['timestamp'] == synth.LIDAR_STAMPS[int(stem)] - synth.CAMERA_LEAD
        link = out / 'camera' / synth.CAMERA / cam['img_path']
        assert link.is_symlink() and not Path(os.readlink(link)).is_absolute()
        assert link.read_bytes() == (root / '001' / 'camera' / synth.CAMERA /
                                     f'{stem}.jpg').read_bytes()


def test_synthetic_points_labels_and_counts(synthetic):
    """Frame 00: 14 points on pixel rays (8 on the image: 5 Pandar64, 3 PandarGT; 6 that it
    does not see: 4 Pandar64, 2 PandarGT), 15 road and 2 far points: 31 rows, 26 Pandar64;
    frame 02: 29 rows, 6 on the image (5 and 1). Every row in its file order, in the ego
    frame, with its intensity, lidar, time offset and class."""
    _, out, frames = synthetic
    expected = {'00': (31, 26, 5, 8), '02': (29, 26, 3, 6)}  # rows, Pandar64, PandarGT, seen
    for stem, frame in frames.items():
        points = load_points(out, f'001_{stem}')
        rows, p64, gt, seen = expected[stem]
        assert points.shape == (rows, 6)
        assert int((points[:, 4] == 0).sum()) == p64 and int((points[:, 4] == 1).sum()) == gt
        assert int((frame.kind == 'camera').sum()) == seen
        np.testing.assert_allclose(points[:, :3], frame.ego, atol=2e-6, rtol=0)
        np.testing.assert_array_equal(points[:, 3], frame.intensity)
        np.testing.assert_array_equal(points[:, 4], frame.lidar)
        np.testing.assert_allclose(points[:, 5], frame.time_offset, atol=1e-6, rtol=0)
        labels = np.fromfile(out / 'labels' / f'001_{stem}.bin', dtype=np.uint8)
        np.testing.assert_array_equal(labels, frame.label)
        assert int((labels == 7).sum()) == 15 and int((labels == 6).sum()) == 2
        # the road lies at its height in the ego frame whatever the pose
        np.testing.assert_allclose(points[labels == 7, 2], synth.ROAD_Z, atol=2e-6)
        # a 30 m range drops the far ground and the Pandar64 camera point 36.8 m away
        near = LoadLidarPoints(load_dim=6, max_range=30.0).transform(
            dict(lidar_path=str(out / 'points' / f'001_{stem}.bin')))['points']
        assert len(near) == rows - 3


def test_synthetic_points_land_on_their_pixels(synthetic):
    """Through the written calibration, every camera point lands on the pixel centre and at
    the depth it was made from; ``lidar2cam`` is the construction's (undo the 0.5 m of ego
    motion since the camera fired, then the camera's mounting), not the converter's formula;
    the pairing keeps the camera points only: not those behind the camera on the same pixel
    rays, nearer than 1 m, or off the image."""
    _, out, frames = synthetic
    infos = _synthetic_infos(out)
    for stem, frame in frames.items():
        cam = infos[f'001_{stem}']['images'][synth.CAMERA]
        np.testing.assert_allclose(cam['lidar2cam'], synth.expected_lidar2cam(), atol=1e-12)
        points = load_points(out, f'001_{stem}')[:, :3].astype(np.float64)
        in_cam = np.c_[points, np.ones(len(points))] @ np.asarray(cam['lidar2cam']).T
        on_ray = ~np.isnan(frame.depth)
        depth = in_cam[on_ray, 2]
        pixel = (in_cam[on_ray, :2] / depth[:, None] * [synth.FX, synth.FY] +
                 [synth.CX, synth.CY])
        np.testing.assert_allclose(depth, frame.depth[on_ray], atol=1e-5)
        np.testing.assert_allclose(pixel, frame.pixel[on_ray], atol=1e-4)
        _, idx, pix = project_to_cameras(points, [cam['cam2img']], [cam['lidar2cam']],
                                         [synth.IMAGE_HW], min_depth=1.0)
        camera = np.flatnonzero(frame.kind == 'camera')
        np.testing.assert_array_equal(idx, camera)
        np.testing.assert_array_equal(pix, np.floor(frame.pixel[camera]).astype(np.int64))


def test_synthetic_lidar_choices_keep_their_rows(synthetic, tmp_path):
    root, out, frames = synthetic
    for lidar, d in (('pandar64', 0), ('pandargt', 1)):
        create_pandaset_infos(str(root), str(tmp_path / lidar), lidar=lidar, progress=False)
        for stem, frame in frames.items():
            points = load_points(tmp_path / lidar, f'001_{stem}')
            keep = frame.lidar == d
            assert len(points) == {('00', 0): 26, ('00', 1): 5, ('02', 0): 26,
                                   ('02', 1): 3}[(stem, d)] == int(keep.sum())
            np.testing.assert_array_equal(points, load_points(out, f'001_{stem}')[keep])
            np.testing.assert_array_equal(
                np.fromfile(tmp_path / lidar / 'labels' / f'001_{stem}.bin', np.uint8),
                frame.label[keep])


def test_synthetic_pretrain_dataset_pairs_the_constructed_pixels(synthetic):
    """The pretraining dataset reads the converted infos (cameras=None: the info's own) and
    pairs each camera point with its pixel."""
    _, out, frames = synthetic
    ds = DATASETS.build(dict(
        type='ImageLidarPretrainDataset', data_root=str(out),
        ann_file='pandaset_infos_train.pkl', cameras=None,
        data_prefix=dict(pts='points', sp='superpixels', front_camera='camera/front_camera'),
        pipeline=[dict(type='LoadLidarPoints', load_dim=6),
                  dict(type='LoadMultiViewImagesAndSuperpixels', with_superpixels=False),
                  dict(type='PointPixelPairing', min_depth=1.0)]))
    assert len(ds) == 2
    for i, frame in enumerate(frames.values()):
        out_i = ds[i]
        assert out_i['cam_names'] == [synth.CAMERA]
        assert [tuple(hw) for hw in out_i['img_shape']] == [synth.IMAGE_HW]
        camera = np.flatnonzero(frame.kind == 'camera')
        np.testing.assert_array_equal(out_i['pairs']['point'], camera)
        np.testing.assert_array_equal(out_i['pairs']['pixel'],
                                      np.floor(frame.pixel[camera]).astype(np.int64))


# -- the real sample ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """The whole sample converted with both lidars: train = 001 + 002, val = 003."""
    require(PANDASET_SAMPLE)
    out = tmp_path_factory.mktemp('pandaset_both')
    written = create_pandaset_infos(str(PANDASET_SAMPLE), str(out), SPLITS, lidar='both',
                                    progress=False)
    assert sorted(written) == ['train', 'val']
    return out


@pytest.fixture(scope='module')
def superpixels(converted, tmp_path_factory):
    """SLIC maps of the converted sample's 10 images (1/4 resolution), with the project's
    tool, in the layout the pretraining dataset reads."""
    from projects.img2lidar.preparation.superpixels import create_superpixels
    sp = tmp_path_factory.mktemp('pandaset_sp')
    for split in SPLITS:
        listed, made = create_superpixels(str(converted / f'pandaset_infos_{split}.pkl'),
                                          str(converted), str(sp), img_prefix='camera/{cam}',
                                          workers=1, progress=False, downscale=4)
        assert listed == made == (8 if split == 'train' else 2)
    # one map per frame: PandaSet's own image names (00.jpg ...) repeat in every sequence
    assert len(list(sp.glob('front_camera/*.npz'))) == 10
    return sp


def frame_info(out, token: str) -> dict:
    for split in SPLITS:
        for d in read_infos(out / f'pandaset_infos_{split}.pkl')['data_list']:
            if d['token'] == token:
                return d
    raise KeyError(token)


def test_infos_layout_and_splits(converted):
    train = read_infos(converted / 'pandaset_infos_train.pkl')
    val = read_infos(converted / 'pandaset_infos_val.pkl')
    assert train['metainfo']['sequences'] == ['001', '002']
    assert train['metainfo']['point_columns'] == POINT_COLUMNS
    assert [d['token'] for d in train['data_list']] == [
        f'{s}_{f:02d}' for s in ('001', '002') for f in range(4)]
    assert [(d['sequence'], d['frame']) for d in val['data_list']] == [('003', 0), ('003', 3)]
    assert [d['sample_idx'] for d in val['data_list']] == [0, 1]
    info = train['data_list'][0]
    assert info['lidar_points'] == dict(lidar_path='001_00.bin', num_pts_feats=6,
                                        lidar2ego=np.eye(4).tolist())
    assert info['pts_semantic_mask_path'] == '001_00.bin'
    cam = info['images']['front_camera']
    assert list(info['images']) == ['front_camera']
    assert cam['img_path'] == '001_00.jpg'
    assert np.asarray(cam['cam2img']).shape == (3, 3)
    assert np.asarray(cam['lidar2cam']).shape == (4, 4)
    # the image under its unique name is the sequence's own frame
    assert (converted / 'camera' / 'front_camera' / '003_03.jpg').read_bytes() == (
        PANDASET_SAMPLE / '003' / 'camera' / 'front_camera' / '03.jpg').read_bytes()


def test_frame_001_00_counts_and_labels(converted):
    points = load_points(converted, '001_00')
    assert points.shape == (169171, 6)
    assert int((points[:, 4] == 0).sum()) == 106886  # Pandar64
    assert int((points[:, 4] == 1).sum()) == 62285  # PandarGT
    labels = np.fromfile(converted / 'labels' / '001_00.bin', dtype=np.uint8)
    assert labels.shape == (169171, )
    assert len(np.unique(labels)) == 23
    _, raw_labels, _ = raw_frame('001', '00')
    np.testing.assert_array_equal(labels, raw_labels)
    ids, counts = np.unique(labels, return_counts=True)
    assert dict(zip(ids.tolist(), counts.tolist())) == RAW_COUNTS_001_00


@pytest.mark.parametrize('seq,stem', [('001', '00'), ('003', '03')])
def test_ego_points_are_world_points_moved_by_inverse_pose(converted, seq, stem):
    """003 lacks frames 01 and 02: frame 03 must take pose 3 of the 80, by its file name."""
    lidar, _, read = raw_frame(seq, stem)
    ego2world = quaternion_pose(read('lidar/poses.json')[int(stem)])
    world = np.c_[lidar[['x', 'y', 'z']].to_numpy(), np.ones(len(lidar))]
    expected = (world @ np.linalg.inv(ego2world).T)[:, :3]
    points = load_points(converted, f'{seq}_{stem}')
    np.testing.assert_allclose(points[:, :3], expected, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(points[:, 3], lidar['i'].to_numpy(np.float32))
    np.testing.assert_array_equal(points[:, 4], lidar['d'].to_numpy(np.float32))
    stamp = read('lidar/timestamps.json')[int(stem)]
    np.testing.assert_allclose(points[:, 5], lidar['t'].to_numpy() - stamp, atol=1e-6)
    assert np.abs(points[:, 5]).max() < 0.2
    info = frame_info(converted, f'{seq}_{stem}')
    np.testing.assert_allclose(info['ego2global'], ego2world, atol=1e-9)


def test_projection_into_front_camera(converted):
    """The sample's oracle: 68,430 points (13,533 Pandar64) land in the 1920x1080 front image
    with depth > 1 m, projected from the ego-frame points with the info's calibration."""
    points = load_points(converted, '001_00')
    cam = frame_info(converted, '001_00')['images']['front_camera']
    _, _, read = raw_frame('001', '00')
    cam2world = quaternion_pose(read('camera/front_camera/poses.json')[0])
    ego2world = quaternion_pose(read('lidar/poses.json')[0])
    np.testing.assert_allclose(cam['lidar2cam'], np.linalg.inv(cam2world) @ ego2world,
                               atol=1e-9)
    intr = read('camera/front_camera/intrinsics.json')
    np.testing.assert_array_equal(cam['cam2img'], [[intr['fx'], 0, intr['cx']],
                                                   [0, intr['fy'], intr['cy']], [0, 0, 1]])
    p = np.c_[points[:, :3].astype(np.float64), np.ones(len(points))] @ np.asarray(
        cam['lidar2cam']).T
    uvw = p[:, :3] @ np.asarray(cam['cam2img']).T
    u, v, depth = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2], p[:, 2]
    seen = (depth > 1) & (u >= 0) & (u < 1920) & (v >= 0) & (v < 1080)
    assert int(seen.sum()) == 68430
    assert int((seen & (points[:, 4] == 0)).sum()) == 13533


def test_lidar_choice_keeps_its_rows(converted, tmp_path):
    both = load_points(converted, '001_00')
    both_labels = np.fromfile(converted / 'labels' / '001_00.bin', dtype=np.uint8)
    for lidar, d, count in (('pandar64', 0, 106886), ('pandargt', 1, 62285)):
        out = tmp_path / lidar
        create_pandaset_infos(str(PANDASET_SAMPLE), str(out), dict(one=['001']), lidar=lidar,
                              progress=False)
        points = load_points(out, '001_00')
        assert points.shape == (count, 6)
        np.testing.assert_array_equal(points, both[both[:, 4] == d])
        np.testing.assert_array_equal(np.fromfile(out / 'labels' / '001_00.bin', np.uint8),
                                      both_labels[both[:, 4] == d])
        assert read_infos(out / 'pandaset_infos_one.pkl')['metainfo']['lidar'] == lidar


def _pretrain_dataset(converted, sp, pipeline, ann='pandaset_infos_train.pkl'):
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/_base_/datasets/pandaset_pretrain.py'))
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=str(converted), ann_file=ann, pipeline=pipeline)
    ds.data_prefix.sp = str(sp)
    return DATASETS.build(ds)


def test_pretrain_dataset_pairs_and_pipeline(converted, superpixels):
    load = [dict(type='LoadLidarPoints', load_dim=6),
            dict(type='LoadMultiViewImagesAndSuperpixels'),
            dict(type='PointPixelPairing', min_depth=1.0)]
    out = _pretrain_dataset(converted, superpixels, load)[0]
    assert out['cam_names'] == ['front_camera']  # the info's own cameras (cameras=None)
    assert out['points'].shape == (169171, 6)
    pairs = out['pairs']
    assert len(pairs['point']) == len(np.unique(pairs['point'])) == 68430
    assert int((out['points'][pairs['point'], 4] == 0).sum()) == 13533
    assert out['superpixels'][0].shape == (1080, 1920)  # the map of 001_00, found by its name
    # the project's deterministic pipeline, reading the first four of PandaSet's six columns
    pipeline = deterministic_pretrain_pipeline()
    pipeline[0] = dict(type='LoadLidarPoints', load_dim=6, use_dim=[0, 1, 2, 3])
    packed = _pretrain_dataset(converted, superpixels, pipeline)[4]  # 002_00
    assert packed['inputs']['points'].shape[1] == 4
    assert packed['inputs']['img'].shape == (1, 3, 112, 208)
    assert packed['data_samples'].metainfo['token'] == '002_00'
    assert packed['data_samples'].metainfo['cam_names'] == ['front_camera']
    # the config's own (random) training pipeline
    np.random.seed(0)
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/_base_/datasets/pandaset_pretrain.py'))
    trained = _pretrain_dataset(converted, superpixels, cfg.train_pipeline)[0]
    assert trained['inputs']['img'].shape == (1, 3, 224, 416)
    assert trained['inputs']['points'].shape == (169171, 4)


def _seg_dataset(converted, split='train', test_mode=False):
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/_base_/datasets/pandaset_seg.py'))
    loader = cfg.val_dataloader if test_mode else cfg.train_dataloader
    ds = loader.dataset
    ds.update(data_root=str(converted), ann_file=f'pandaset_infos_{split}.pkl',
              pipeline=cfg.load + [dict(type='PointSegClassMapping')] +
              ([dict(type='Pack3DDetInputs', keys=['points'])] if test_mode else []))
    return DATASETS.build(ds)


def test_seg_dataset_maps_raw_ids_by_the_table(converted):
    ds = _seg_dataset(converted)
    assert len(ds) == 8
    out = ds[0]
    assert out['points'].shape == (169171, 4)
    labels = out['pts_semantic_mask']
    raw = np.fromfile(converted / 'labels' / '001_00.bin', dtype=np.uint8)
    table = PandaSetSegDataset.METAINFO['seg_label_mapping']
    np.testing.assert_array_equal(labels, [table[int(r)] for r in raw])
    names = list(PandaSetSegDataset.METAINFO['classes']) + ['ignored']
    assert {n: int((labels == i).sum()) for i, n in enumerate(names)} == MAPPED_COUNTS_001_00
    assert ds.metainfo['classes'] == PandaSetSegDataset.METAINFO['classes']
    assert ds.metainfo['ignore_index'] == 17
    assert len(ds.metainfo['palette']) == 17
    # every raw id of classes.json is in the table, and nothing else but 0
    classes = json.loads((PANDASET_SAMPLE / '001/annotations/semseg/classes.json').read_text())
    assert sorted(table) == [0] + sorted(int(k) for k in classes)


def test_seg_metric_on_the_mapped_labels(converted):
    """mmdet3d's SegMetric on the val frames with the ground truth as prediction, except that
    every car is predicted as a truck."""
    from mmdet3d.evaluation.metrics import SegMetric
    ds = _seg_dataset(converted, 'val', test_mode=True)
    metric = SegMetric()
    metric.dataset_meta = ds.metainfo
    car, truck = (ds.metainfo['classes'].index(c) for c in ('car', 'truck'))
    n_car = n_truck = 0
    for i in range(len(ds)):
        gt = ds[i]['data_samples'].eval_ann_info['pts_semantic_mask']
        pred = np.where(gt == car, truck, gt)
        pred[gt == 17] = 0  # ignored points do not count, whatever is predicted
        n_car, n_truck = n_car + int((gt == car).sum()), n_truck + int((gt == truck).sum())
        metric.process({}, [dict(pred_pts_seg=dict(pts_semantic_mask=pred),
                                 eval_ann_info=dict(pts_semantic_mask=gt))])
    res = metric.compute_metrics(metric.results)
    assert n_car > 1000 and n_truck > 100
    assert res['car'] == 0
    assert res['truck'] == pytest.approx(n_truck / (n_truck + n_car))
    assert res['road'] == 1.0


def test_mixed_nuscenes_pandaset_pretraining_trains(converted, superpixels, nuscenes_root,
                                                    tmp_path):
    """The shipped nuScenes + PandaSet config, made small (as conftest's small_pretrain_cfg
    does for single datasets; that helper sets one dataset's paths, so this one sets each of
    the ConcatDataset's): iteration 1 is the nuScenes sample (6 cameras, 5 columns), iteration
    2 PandaSet's 001/00 (1 camera, 6 columns)."""
    cfg = Config.fromfile(str(REPO_ROOT / MIXED_CONFIG))
    nus, panda = cfg.train_dataloader.dataset.datasets
    nus.update(data_root=str(nuscenes_root), ann_file=str(sample_info_file(nuscenes_root)))
    nus.data_prefix = dict(pts='', img='', sp='superpixels')  # replaced, not merged
    panda.update(data_root=str(converted), ann_file='pandaset_infos_train.pkl')
    panda.data_prefix.sp = str(superpixels)
    for ds in (nus, panda):
        for t in ds.pipeline:
            if t['type'] == 'PairedRandomResizedCrop':
                t.update(size=(112, 208), min_pairs_per_image=128, min_pairs=256)
    assert nus.pipeline[0].load_dim == 5 and panda.pipeline[0].load_dim == 6
    assert nus.pipeline[0].use_dim == panda.pipeline[0].use_dim == [0, 1, 2, 3]
    short_schedule(cfg, iters=2, shuffle=False)
    cfg.work_dir = str(tmp_path / 'work')
    small_pretrain_overrides(cfg)
    runner, logs = train_in_process(cfg)
    concat = runner.train_dataloader.dataset
    assert len(concat) == 1 + 8
    first, second = concat[0]['data_samples'], concat[1]['data_samples']
    assert len(first.metainfo['cam_names']) == 6 and second.metainfo['cam_names'] == [
        'front_camera']
    assert second.metainfo['token'] == '001_00'
    losses = values(logs, 'loss')
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert (tmp_path / 'work' / 'iter_2.pth').is_file()


def _fake_sequence(tmp_path, semseg: pd.DataFrame):
    """A root with one sequence: 003's files, and ``semseg`` as frame 00's labels."""
    seq = tmp_path / 'root' / '003'
    (seq / 'annotations' / 'semseg').mkdir(parents=True)
    for sub in ('lidar', 'camera'):
        (seq / sub).symlink_to(PANDASET_SAMPLE / '003' / sub)
    src = PANDASET_SAMPLE / '003' / 'annotations' / 'semseg' / 'classes.json'
    (seq / 'annotations' / 'semseg' / 'classes.json').write_bytes(src.read_bytes())
    with gzip.open(seq / 'annotations' / 'semseg' / '00.pkl.gz', 'wb') as f:
        pickle.dump(semseg, f)
    return tmp_path / 'root', seq / 'annotations' / 'semseg' / '00.pkl.gz'


@pytest.mark.parametrize('bad,message', [
    ('short', r'labels for the \d+ points'),
    ('unknown_id', r'class ids \[99\] are not in classes.json'),
    ('no_column', 'lacks the column class'),
])
def test_bad_labels_are_errors_naming_the_file(tmp_path, bad, message):
    require(PANDASET_SAMPLE)
    n = len(pd.read_pickle(PANDASET_SAMPLE / '003' / 'lidar' / '00.pkl.gz'))
    labels = np.full(n, 7)
    if bad == 'unknown_id':
        labels[5] = 99
    frame = pd.DataFrame({'label' if bad == 'no_column' else 'class':
                          labels[:n - 1] if bad == 'short' else labels})
    root, path = _fake_sequence(tmp_path, frame)
    with pytest.raises(ValueError, match=message) as err:
        create_pandaset_infos(str(root), str(tmp_path / 'out'), progress=False)
    assert str(path) in str(err.value)


def test_bad_arguments(tmp_path):
    require(PANDASET_SAMPLE)
    with pytest.raises(ValueError, match=r"names sequences the root lacks: \['004'\]"):
        create_pandaset_infos(str(PANDASET_SAMPLE), str(tmp_path), dict(val=['003', '004']),
                              progress=False)
    with pytest.raises(ValueError, match='lidar must be one of'):
        create_pandaset_infos(str(PANDASET_SAMPLE), str(tmp_path), lidar='gt', progress=False)
    with pytest.raises(FileNotFoundError, match='PandaSet root not found'):
        create_pandaset_infos(str(tmp_path / 'nowhere'), str(tmp_path), progress=False)


def test_command_line(tmp_path):
    require(PANDASET_SAMPLE)
    (tmp_path / 'val.txt').write_text('003\n')
    run_tool([PYTHON, 'tools/create_pandaset_infos.py', '--root', str(PANDASET_SAMPLE),
              '--out-dir', str(tmp_path / 'out'), '--lidar', 'pandargt',
              '--split', 'val=@' + str(tmp_path / 'val.txt'), '--images', 'copy'])
    infos = read_infos(tmp_path / 'out' / 'pandaset_infos_val.pkl')
    assert [d['token'] for d in infos['data_list']] == ['003_00', '003_03']
    assert infos['metainfo']['lidar'] == 'pandargt'
    img = tmp_path / 'out' / 'camera' / 'front_camera' / '003_00.jpg'
    assert img.is_file() and not img.is_symlink()
    assert set(load_points(tmp_path / 'out', '003_03')[:, 4]) == {1.0}
