"""tools/create_semantickitti_infos.py as a user runs it: mmdet3d 1.4's info files of a
SemanticKITTI root made of the fixture's real scan, read by the shipped 1% finetune config."""
import os
import pickle
import sys

import numpy as np
import pytest
from mmdet3d.registry import DATASETS
from mmengine.config import Config

from conftest import REPO_ROOT, SEMANTICKITTI_FIXTURE, run_tool

CONFIG = 'configs/finetune/minkunet34_2xb8-100e_semantickitti-1pct.py'
TOOL = 'tools/create_semantickitti_infos.py'
#: SemanticKITTI's splits as mmdet3d 1.4's converter writes them (written out here, not read
#: from the code under test)
TRAIN = ['00', '01', '02', '03', '04', '05', '06', '07', '09', '10']
VAL = ['08']
TEST = [f'{s:02d}' for s in range(11, 22)]
#: scans per sequence in the world built below: 150 in sequence 00, 3 in 08, 1 elsewhere
SCANS = dict({s: 1 for s in TRAIN + VAL + TEST}, **{'00': 150, '08': 3})
SCAN = SEMANTICKITTI_FIXTURE / 'sequences' / '00' / 'velodyne' / '000000.bin'
LABEL = SEMANTICKITTI_FIXTURE / 'sequences' / '00' / 'labels' / '000000.label'


def make_root(root):
    """A SemanticKITTI root in the standard layout whose every scan is the fixture's (links):
    :data:`SCANS` scans per sequence, labels for the train and val sequences only (as the
    official release)."""
    for seq, count in SCANS.items():
        velodyne = root / 'sequences' / seq / 'velodyne'
        velodyne.mkdir(parents=True)
        labels = root / 'sequences' / seq / 'labels'
        if seq in TRAIN + VAL:
            labels.mkdir()
        for frame in range(count):
            os.symlink(SCAN, velodyne / f'{frame:06d}.bin')
            if seq in TRAIN + VAL:
                os.symlink(LABEL, labels / f'{frame:06d}.label')
    return root


def test_fixture_alone_is_refused_naming_the_missing_folders(tmp_path):
    """The fixture holds sequence 00 only: the missing folders are named, nothing is written."""
    from projects.img2lidar.preparation.semantickitti_infos import create_semantickitti_infos
    with pytest.raises(FileNotFoundError) as error:
        create_semantickitti_infos(str(SEMANTICKITTI_FIXTURE), str(tmp_path / 'out'))
    assert str(SEMANTICKITTI_FIXTURE / 'sequences' / '01' / 'velodyne') in str(error.value)
    assert '08, 09, 10, 11' in str(error.value)  # every sequence with a missing folder is listed
    assert not (tmp_path / 'out').exists()


def test_missing_label_file_is_named(tmp_path):
    root = make_root(tmp_path / 'semantickitti')
    (root / 'sequences' / '08' / 'labels' / '000002.label').unlink()
    from projects.img2lidar.preparation.semantickitti_infos import create_semantickitti_infos
    with pytest.raises(FileNotFoundError, match=r'1 scans of the val split have no label file.*'
                       r'sequences/08/labels/000002\.label'):
        create_semantickitti_infos(str(root))


def test_infos_in_mmdet3d_layout_feed_the_shipped_finetune_config(tmp_path):
    root = make_root(tmp_path / 'semantickitti')
    out = run_tool([sys.executable, TOOL, '--root', str(root), '--out-dir', str(root)])
    assert 'note: sequence 00 has 150 scans' in out.stdout  # SemanticKITTI has 4541

    # exactly mmdet3d 1.4's layout (tools/dataset_converters/semantickitti_converter.py)
    counts = {}
    for split, seqs in (('train', TRAIN), ('val', VAL), ('test', TEST)):
        with open(root / f'semantickitti_infos_{split}.pkl', 'rb') as f:
            info = pickle.load(f)
        assert set(info) == {'metainfo', 'data_list'}
        assert info['metainfo'] == {'DATASET': 'SemanticKITTI'}
        expected = [
            {'lidar_points': {'lidar_path': f'sequences/{s}/velodyne/{j:06d}.bin',
                              'num_pts_feats': 4},
             'pts_semantic_mask_path': f'sequences/{s}/labels/{j:06d}.label',
             'sample_id': str(int(s)) + str(j)}
            for s in seqs for j in range(SCANS[s])]
        assert info['data_list'] == expected
        counts[split] = len(info['data_list'])
    assert counts == {'train': 159, 'val': 3, 'test': 11}
    with open(root / 'semantickitti_infos_train.pkl', 'rb') as f:
        entries = pickle.load(f)['data_list']
    assert entries[150]['sample_id'] == '10' and entries[-1]['sample_id'] == '100'  # seqs 01, 10

    # the shipped 1% config on the result: every 100th of the 159 sorted train scans, all of 08
    cfg = Config.fromfile(str(REPO_ROOT / CONFIG))
    train = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(root)))
    val = DATASETS.build(dict(cfg.val_dataloader.dataset, data_root=str(root)))
    assert len(train) == 2 and len(val) == 3
    assert [train.get_data_info(i)['lidar_path'] for i in range(2)] == [
        str(root / 'sequences/00/velodyne/000000.bin'),
        str(root / 'sequences/00/velodyne/000100.bin')]
    assert val.get_data_info(2)['lidar_path'] == str(root / 'sequences/08/velodyne/000002.bin')

    # one sample through the config's pipelines: the scan's points, its labels mapped by
    # semantic-kitti.yaml's learning map (raw 0, 52 -> ignored 19; 50 building 12;
    # 70 vegetation 14; 71 trunk 15; 80 pole 17)
    raw = np.fromfile(LABEL, dtype=np.uint32) & 0xFFFF
    learning_map = {0: 19, 50: 12, 52: 19, 70: 14, 71: 15, 80: 17}
    expected_labels = np.array([learning_map[int(r)] for r in raw])
    sample = val[0]
    points = np.fromfile(SCAN, dtype=np.float32).reshape(-1, 4)
    np.testing.assert_array_equal(sample['inputs']['points'].numpy(), points)
    np.testing.assert_array_equal(sample['data_samples'].eval_ann_info['pts_semantic_mask'],
                                  expected_labels)
    augmented = train[0]  # rotated, scaled, flipped: the labels stay with their points
    np.testing.assert_array_equal(augmented['data_samples'].gt_pts_seg.pts_semantic_mask.numpy(),
                                  expected_labels)
    assert augmented['inputs']['points'].shape == (50, 4)
