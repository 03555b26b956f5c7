"""One height frame for every dataset (configs/_base_/datasets/sensor_heights.py): nuScenes'
frame, the road 1.84 m below the origin. PandaSet's points, whose ego origin lies about 0.22 m
above the road, are shifted by -1.62 m in every PandaSet pipeline (pretraining, the mixed
nuScenes + PandaSet pretraining, segmentation, the real-data check), nuScenes' are not, and no
point leaves its pixel.

Tolerance of the road heights measured on real frames: roads are not flat and cars pitch. On the
PandaSet sample, the median height of a frame's road points (class 7, within 20 m) lies from
0.17 m above to 0.07 m below the mean over its 10 frames; the nuScenes sample's ground 3-12 m
around the car lies about 0.15 m above or below -1.84 m depending on the direction. A
frame's road is therefore checked to 0.2 m, eight times less than the 1.62 m corrected, and
PandaSet's mean over the sample to 0.01 m (its stated height is that mean, rounded)."""
import pickle

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS, TRANSFORMS
from mmdet3d.structures import LiDARPoints
from mmengine.config import Config

import synthetic_pandaset as synth
from conftest import NUSCENES_SAMPLE, PANDASET_SAMPLE, REPO_ROOT, require
from projects.img2lidar.datasets.transforms import PointPixelPairing, ShiftHeight
from projects.img2lidar.datasets.transforms.point_pixel_pairing import project_to_cameras

#: the facts the docs state: the height of each dataset's origin above the road, the reference
NUSCENES_HEIGHT, PANDASET_HEIGHT = 1.84, 0.22
REFERENCE_ROAD_Z = -1.84
PANDASET_Z_OFFSET = -1.62
#: a frame's road on real data, and the mean over the PandaSet sample (see the module doc)
ROAD_TOLERANCE, MEAN_TOLERANCE = 0.2, 0.01
DATASETS_DIR = REPO_ROOT / 'configs' / '_base_' / 'datasets'
REAL_DATA_CONFIG = REPO_ROOT / 'configs' / 'real_data' / (
    'slidr_minkunet-w16_mobilenetv2-imagenet_1xb2-10e_pandaset-sample.py')
#: every config that reads PandaSet: each pipeline of its PandaSet datasets is checked
PANDASET_CONFIGS = sorted(str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.glob('configs/**/*.py')
                          if 'pandaset' in p.name and 'layout' not in p.name)
NUSCENES_CONFIGS = ['configs/_base_/datasets/nuscenes_pretrain.py',
                    'configs/_base_/datasets/nuscenes_pretrain_slidr.py',
                    'configs/_base_/datasets/nuscenes_pretrain_224x448.py',
                    'configs/_base_/datasets/nuscenes_lidarseg.py']
LOADERS = ('LoadLidarPoints', 'LoadPointsFromFile')


def dataset_pipelines(cfg: Config):
    """(data_root, pipeline) of every dataset the config's loaders build."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if 'pipeline' in node and 'data_root' in node:
                found.append((node['data_root'], node['pipeline']))
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        walk(cfg.get(key))
    return found


def test_configs_state_the_heights_and_shift_pandaset_only():
    heights = Config.fromfile(str(DATASETS_DIR / 'sensor_heights.py'))
    assert heights.nuscenes_origin_height == NUSCENES_HEIGHT
    assert heights.pandaset_origin_height == PANDASET_HEIGHT
    assert heights.reference_origin_height == NUSCENES_HEIGHT  # the reference: nuScenes' frame
    layout = Config.fromfile(str(DATASETS_DIR / 'pandaset_layout.py'))
    assert layout.pandaset_z_offset == pytest.approx(PANDASET_Z_OFFSET, abs=1e-12)
    assert len(PANDASET_CONFIGS) >= 10
    checked = {'pandaset': 0, 'nuscenes': 0}
    for path in PANDASET_CONFIGS + NUSCENES_CONFIGS:
        for root, pipeline in dataset_pipelines(Config.fromfile(str(REPO_ROOT / path))):
            types = [t['type'] for t in pipeline]
            assert types[0] in LOADERS, (path, types)
            if 'pandaset' not in root:
                assert 'ShiftHeight' not in types, (path, root, types)
                checked['nuscenes'] += 1
                continue
            # once, right after the pairing (pretraining) or the loading (segmentation)
            assert types.count('ShiftHeight') == 1, (path, types)
            shift = types.index('ShiftHeight')
            before = 'PointPixelPairing' if 'PointPixelPairing' in types else types[0]
            assert types[shift - 1] == before, (path, types)
            assert pipeline[shift]['z_offset'] == pytest.approx(PANDASET_Z_OFFSET, abs=1e-12)
            checked['pandaset'] += 1
    assert checked['pandaset'] >= 20 and checked['nuscenes'] >= 8


def _nuscenes_results(points) -> dict:
    with open(next(NUSCENES_SAMPLE.glob('*.pkl')), 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    cams = list(info['images'])
    return dict(points=points, cam_names=cams, img_shape=[(900, 1600)] * len(cams),
                cam2img=[np.asarray(info['images'][c]['cam2img']) for c in cams],
                lidar2cam=[np.asarray(info['images'][c]['lidar2cam']) for c in cams],
                images={c: dict(info['images'][c]) for c in cams})


def test_shift_height_moves_z_and_keeps_the_cameras(nuscenes_sweep):
    """On the nuScenes sample's six cameras: z moves by the offset, nothing else does, and the
    compensated lidar2cam (the pretraining's list and mmdet3d's images dict) project every
    shifted point as before, to 2e-4 px: the float32 rounding of the shifted z (at most
    1.2e-7 m at |z| < 4 m) times the focal length over the depth (1273 px / 1 m at most)."""
    points = nuscenes_sweep[:, :4].copy()
    before = _nuscenes_results(points)
    pairs = PointPixelPairing().transform(dict(before))['pairs']
    assert len(pairs['point']) == 22152
    after = TRANSFORMS.build(dict(type='ShiftHeight', z_offset=PANDASET_Z_OFFSET)).transform(
        _nuscenes_results(points.copy()))
    np.testing.assert_array_equal(points, nuscenes_sweep[:, :4])  # the input is not modified
    shifted = after['points']
    assert shifted.dtype == np.float32
    np.testing.assert_array_equal(shifted[:, [0, 1, 3]], points[:, [0, 1, 3]])
    np.testing.assert_array_equal(shifted[:, 2], points[:, 2] + np.float32(PANDASET_Z_OFFSET))
    for c, cam in enumerate(before['cam_names']):
        for lidar2cam in (after['lidar2cam'][c], after['images'][cam]['lidar2cam']):
            _, idx, _ = project_to_cameras(points[:, :3], [before['cam2img'][c]],
                                           [before['lidar2cam'][c]], [(900, 1600)])
            k = np.asarray(before['cam2img'][c])
            old = np.c_[points[idx, :3], np.ones(len(idx))] @ before['lidar2cam'][c].T
            new = np.c_[shifted[idx, :3], np.ones(len(idx))] @ np.asarray(lidar2cam).T
            old, new = old[:, :3] @ k.T, new[:, :3] @ k.T
            np.testing.assert_allclose(new[:, :2] / new[:, 2:], old[:, :2] / old[:, 2:],
                                       atol=2e-4, rtol=0)
    # mmdet3d's points move the same way
    lidar = LiDARPoints(torch.from_numpy(points.copy()), points_dim=4)
    out = ShiftHeight(PANDASET_Z_OFFSET).transform(dict(points=lidar))['points']
    np.testing.assert_array_equal(out.tensor.numpy(), shifted)
    with pytest.raises(ValueError, match='finite'):
        ShiftHeight(float('nan'))


def test_nuscenes_is_the_reference_frame(nuscenes_sweep):
    """nuScenes' pipelines read the points as stored, and the sample's ground lies at the
    reference: the points 3-6 m around the car (mostly ground) have a median z of -1.82 m."""
    path = str(next(NUSCENES_SAMPLE.glob('*LIDAR_TOP*.pcd.bin')))
    for config, key in (('nuscenes_pretrain.py', 'load'), ('nuscenes_lidarseg.py', 'load')):
        load = Config.fromfile(str(DATASETS_DIR / config))[key][0]
        points = TRANSFORMS.build(load).transform(
            dict(lidar_path=path, lidar_points=dict(lidar_path=path), num_pts_feats=5))
        points = points['points']
        points = points.tensor.numpy() if hasattr(points, 'tensor') else points
        np.testing.assert_array_equal(points, nuscenes_sweep[:, :4])
    r = np.hypot(nuscenes_sweep[:, 0], nuscenes_sweep[:, 1])
    ground = float(np.median(nuscenes_sweep[(r >= 3) & (r < 6), 2]))
    assert ground == pytest.approx(-1.822, abs=1e-3)
    assert abs(ground - REFERENCE_ROAD_Z) < ROAD_TOLERANCE


@pytest.fixture(scope='module')
def synthetic_converted(tmp_path_factory):
    """The synthetic PandaSet root (its road at PandaSet's height, z = -0.22 m in the ego
    frame) converted with both lidars, with SLIC maps of its two images."""
    from projects.img2lidar.preparation.pandaset_infos import create_pandaset_infos
    from projects.img2lidar.preparation.superpixels import create_superpixels
    tmp = tmp_path_factory.mktemp('synthetic_height')
    frames = synth.write_synthetic_pandaset(tmp / 'root')
    out = tmp / 'out'
    create_pandaset_infos(str(tmp / 'root'), str(out), dict(train=['001']), lidar='both',
                          progress=False)
    listed, made = create_superpixels(str(out / 'pandaset_infos_train.pkl'), str(out),
                                      str(out / 'superpixels'), img_prefix='camera/{cam}',
                                      progress=False)
    assert listed == made == 2
    return out, frames


def _build(dataset, out, pipeline):
    dataset = dict(dataset, data_root=str(out), ann_file='pandaset_infos_train.pkl',
                   pipeline=pipeline)
    dataset['data_prefix'] = dict(dataset['data_prefix'], sp=str(out / 'superpixels'))
    return DATASETS.build(dataset)


def test_pandaset_pipelines_put_the_synthetic_road_at_the_reference(synthetic_converted):
    """The synthetic road, made at z = -0.22 m in the ego frame, lies at -1.84 m after the
    loading steps of PandaSet pretraining, of the mixed pretraining and of segmentation; every
    point moved by -1.62 m and nothing else; the pairs are the constructed pixels; the
    segmentation sample's lidar2cam still puts each camera point on its pixel."""
    out, frames = synthetic_converted
    pretrain = Config.fromfile(str(DATASETS_DIR / 'pandaset_pretrain.py'))
    mixed = Config.fromfile(str(DATASETS_DIR / 'nuscenes-pandaset_pretrain.py'))
    seg = Config.fromfile(str(DATASETS_DIR / 'pandaset_seg.py'))
    datasets = {
        'pretrain': _build(pretrain.train_dataloader.dataset, out, pretrain.load),
        'mixed': _build(mixed.train_dataloader.dataset.datasets[1], out,
                        mixed.pandaset_load),
        'seg': _build(seg.train_dataloader.dataset, out,
                      seg.load + [dict(type='PointSegClassMapping')]),
    }
    for i, (stem, frame) in enumerate(frames.items()):
        stored = np.fromfile(out / 'points' / f'001_{stem}.bin', np.float32).reshape(-1, 6)
        road = frame.label == 7
        camera = np.flatnonzero(frame.kind == 'camera')
        for name, ds in datasets.items():
            sample = ds[i]
            points = sample['points']
            points = points.tensor.numpy() if hasattr(points, 'tensor') else points
            assert points.shape == (len(frame.ego), 4), name
            np.testing.assert_array_equal(points[:, 2],
                                          stored[:, 2] + np.float32(PANDASET_Z_OFFSET))
            np.testing.assert_allclose(points[road, 2], REFERENCE_ROAD_Z, atol=2e-6)
            np.testing.assert_array_equal(points[:, [0, 1, 3]], stored[:, [0, 1, 3]])
            if name == 'seg':
                assert (sample['pts_semantic_mask'][road] == 0).all()  # 'road'
                cam = sample['images'][synth.CAMERA]
                _, idx, pix = project_to_cameras(points[:, :3], [cam['cam2img']],
                                                 [cam['lidar2cam']], [synth.IMAGE_HW])
            else:
                idx, pix = sample['pairs']['point'], sample['pairs']['pixel']
            np.testing.assert_array_equal(idx, camera)
            np.testing.assert_array_equal(pix, np.floor(frame.pixel[camera]).astype(int))


def test_real_data_check_reads_the_points_as_its_pipeline(synthetic_converted):
    """The real-data check probes the points its pretraining saw: shifted as its config's
    pipeline shifts them, within its 30 m, with the camera points in the camera."""
    from projects.img2lidar.evaluation.real_data_check import load_frames
    out, frames = synthetic_converted
    cfg = Config.fromfile(str(REAL_DATA_CONFIG))
    shifts = [t['z_offset'] for t in cfg.train_pipeline if t['type'] == 'ShiftHeight']
    assert shifts == [pytest.approx(PANDASET_Z_OFFSET, abs=1e-12)]
    max_range = cfg.train_pipeline[0]['max_range']
    pipeline = TRANSFORMS.build(cfg.train_pipeline[0]), TRANSFORMS.build(
        dict(type='ShiftHeight', z_offset=shifts[0]))
    for frame, got in zip(frames.values(), load_frames(str(out), 'train', max_range, shifts[0])):
        results = dict(lidar_path=str(out / 'points' / f'{got.token}.bin'), num_pts_feats=6)
        for t in pipeline:
            results = t.transform(results)
        np.testing.assert_array_equal(got.points.numpy(), results['points'])
        near = np.hypot(frame.ego[:, 0], frame.ego[:, 1]) <= max_range
        np.testing.assert_array_equal(got.in_camera, (frame.kind == 'camera')[near])
        assert int(got.in_camera.sum()) == int((frame.kind == 'camera').sum()) - 1  # 36.8 m


def test_real_pandaset_roads_at_the_reference(tmp_path):
    """The 10 frames of the PandaSet sample through the pretraining config's loading: each
    frame's road (class 7, within 20 m) at -1.84 m to 0.2 m, their mean to 0.01 m, and the
    pairs of 001/00 those of the stored points (68,430 points in the front camera)."""
    from projects.img2lidar.preparation.pandaset_infos import create_pandaset_infos
    require(PANDASET_SAMPLE)
    out = tmp_path / 'out'
    create_pandaset_infos(str(PANDASET_SAMPLE), str(out), dict(train=['001', '002', '003']),
                          lidar='both', progress=False)
    cfg = Config.fromfile(str(DATASETS_DIR / 'pandaset_pretrain.py'))
    load = [dict(t, with_superpixels=False) if t['type'] == 'LoadMultiViewImagesAndSuperpixels'
            else t for t in cfg.load]
    ds = _build(cfg.train_dataloader.dataset, out, load)
    unshifted = _build(cfg.train_dataloader.dataset, out,
                       [t for t in load if t['type'] != 'ShiftHeight'])
    medians = []
    for i in range(len(ds)):
        sample = ds[i]
        token = sample['token']
        labels = np.fromfile(out / 'labels' / f'{token}.bin', np.uint8)
        points = sample['points']
        road = (labels == 7) & (np.hypot(points[:, 0], points[:, 1]) < 20)
        medians.append(float(np.median(points[road, 2])))
        assert abs(medians[-1] - REFERENCE_ROAD_Z) < ROAD_TOLERANCE, (token, medians[-1])
        if token == '001_00':
            before = unshifted[i]['pairs']
            assert len(sample['pairs']['point']) == 68430
            for key in ('point', 'cam', 'pixel'):
                np.testing.assert_array_equal(sample['pairs'][key], before[key])
    assert len(medians) == 10
    assert abs(np.mean(medians) - REFERENCE_ROAD_Z) < MEAN_TOLERANCE
