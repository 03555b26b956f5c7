"""The nuScenes lidarseg dataset: raw -> eval mapping and SLidR's few-shot subsets."""
import os
import pickle

import numpy as np
import pytest
from mmdet3d.registry import DATASETS

from conftest import NUSCENES_SAMPLE
from projects.img2lidar.datasets import few_shot_scenes

# docs/methods.md section 6.6 (RAW_TO_EVAL), written out: raw id -> eval id (0 = ignored)
TABLE = {0: 0, 1: 0, 2: 7, 3: 7, 4: 7, 5: 0, 6: 7, 7: 0, 8: 0, 9: 1, 10: 0, 11: 0, 12: 8, 13: 0,
         14: 2, 15: 3, 16: 3, 17: 4, 18: 5, 19: 0, 20: 0, 21: 6, 22: 9, 23: 10, 24: 11, 25: 12,
         26: 13, 27: 14, 28: 15, 29: 0, 30: 16, 31: 0}
NAMES = ['barrier', 'bicycle', 'bus', 'car', 'construction_vehicle', 'motorcycle', 'pedestrian',
         'traffic_cone', 'trailer', 'truck', 'driveable_surface', 'other_flat', 'sidewalk',
         'terrain', 'manmade', 'vegetation']


def test_raw_ids_map_to_eval_ids_on_the_real_sample(tmp_path):
    src = NUSCENES_SAMPLE
    with open(next(src.glob('*.pkl')), 'rb') as f:
        info = pickle.load(f)
    entry = info['data_list'][0]
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 32, size=34688).astype(np.uint8)
    raw.tofile(tmp_path / 'labels.bin')
    entry['pts_semantic_mask_path'] = str(tmp_path / 'labels.bin')
    ann = tmp_path / 'seg.pkl'
    with open(ann, 'wb') as f:
        pickle.dump(dict(metainfo=info['metainfo'], data_list=[entry]), f)
    ds = DATASETS.build(dict(
        type='NuScenesLidarSegDataset', data_root=str(src), ann_file=str(ann),
        data_prefix=dict(pts='', pts_semantic_mask=''),
        pipeline=[dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=4),
                  dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False,
                       with_seg_3d=True, seg_3d_dtype='np.uint8'),
                  dict(type='PointSegClassMapping')]))
    out = ds[0]
    assert out['points'].shape == (34688, 4)
    labels = out['pts_semantic_mask']
    for r in range(32):
        ev = TABLE[r]
        expected = ev - 1 if ev > 0 else 16
        assert (labels[raw == r] == expected).all(), r
    assert ds.metainfo['classes'] == tuple(NAMES)
    assert ds.metainfo['ignore_index'] == 16


def _scene_table():
    """850 scenes in table order: every 6th one is a val scene, the others the 700 train
    scenes (plus 8 more val ones at the end)."""
    names, train = [], []
    for i in range(850):
        name = f'scene-{i:04d}'
        names.append(name)
        if i % 6 != 5 and len(train) < 700:
            train.append(name)
    return names, train


@pytest.mark.parametrize('percent,step', [(1, 100), (5, 20), (10, 10), (25, 4), (100, 1)])
def test_few_shot_keeps_every_kth_train_scene(percent, step):
    names, train = _scene_table()
    kept = few_shot_scenes(names, train, step)
    assert kept == train[step - 1::step]
    assert len(kept) == 700 // step
    if percent == 1:
        assert kept == [train[i - 1] for i in range(100, 701, 100)]


def test_dataset_few_shot_subset_of_700_scenes(tmp_path):
    names, train = _scene_table()
    index = {n: i for i, n in enumerate(names)}
    # infos list the train scenes in a different (split) order, two samples per scene
    data_list = [dict(lidar_points=dict(lidar_path=f'{n}_{k}.bin', num_pts_feats=5),
                      scene_name=n, scene_index=index[n])
                 for n in sorted(train, reverse=True) for k in range(2)]
    ann = tmp_path / 'train.pkl'
    with open(ann, 'wb') as f:
        pickle.dump(dict(metainfo=dict(dataset='nuscenes'), data_list=data_list), f)
    ds = DATASETS.build(dict(type='NuScenesLidarSegDataset', data_root=str(tmp_path),
                             ann_file=str(ann), few_shot=1, pipeline=[]))
    kept = sorted({ds.get_data_info(i)['scene_name'] for i in range(len(ds))})
    assert kept == sorted(train[i - 1] for i in range(100, 701, 100))
    assert len(ds) == 14
    with pytest.raises(ValueError, match='few_shot must be one of'):
        DATASETS.build(dict(type='NuScenesLidarSegDataset', data_root=str(tmp_path),
                            ann_file=str(ann), few_shot=3, pipeline=[]))


def test_semantickitti_one_percent_keeps_every_100th_sorted_scan(tmp_path):
    scans = [f'sequences/{s:02d}/velodyne/{i:06d}.bin' for s in (0, 1, 2) for i in range(150)]
    shuffled = list(np.random.default_rng(0).permutation(scans))
    ann = tmp_path / 'kitti.pkl'
    with open(ann, 'wb') as f:
        pickle.dump(dict(metainfo=dict(DATASET='SemanticKITTI'),
                         data_list=[dict(lidar_points=dict(lidar_path=p, num_pts_feats=4))
                                    for p in shuffled]), f)
    ds = DATASETS.build(dict(type='SemanticKittiFewShotDataset', data_root=str(tmp_path),
                             ann_file=str(ann), every_nth=100, pipeline=[],
                             metainfo=dict(classes=('car', 'road'), seg_label_mapping={0: 2},
                                           max_label=1)))
    kept = [os.path.relpath(ds.get_data_info(i)['lidar_points']['lidar_path'], tmp_path)
            for i in range(len(ds))]
    assert kept == sorted(scans)[::100] == [scans[0], scans[100], scans[200], scans[300],
                                            scans[400]]
    # a config naming its own classes gets METAINFO's colours for them
    table = ds.METAINFO
    assert ds.metainfo['palette'] == [table['palette'][table['classes'].index(c)]
                                      for c in ('car', 'road')]
