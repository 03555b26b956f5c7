"""The info files of tools/create_pretrain_infos.py on a small synthetic database in the nuScenes
format."""
import json
import os
import pickle

import numpy as np
import pytest
from pyquaternion import Quaternion

from projects.img2lidar.preparation.pretrain_infos import CAMERAS, create_pretrain_infos

SCENES = ['scene-0061', 'scene-0553', 'scene-0103']  # mini_train, mini_train, mini_val


def _pose(token, yaw, xyz, timestamp=None):
    rec = dict(token=token, rotation=list(Quaternion(axis=[0, 0, 1], angle=yaw).elements),
               translation=list(xyz))
    if timestamp is not None:
        rec['timestamp'] = timestamp
    return rec


def _write_database(root):
    """Three scenes of two keyframes; the cameras fire 40 ms before the lidar while the ego
    moves and turns, so lidar2cam must fold the ego motion in."""
    t = dict(category=[dict(token='cat0', name='noise', description='', index=0)],
             attribute=[], visibility=[], instance=[], sample_annotation=[],
             sensor=[dict(token='s_lidar', channel='LIDAR_TOP', modality='lidar')] +
             [dict(token=f's_{c}', channel=c, modality='camera') for c in CAMERAS],
             calibrated_sensor=[], ego_pose=[], log=[], scene=[], sample=[], sample_data=[],
             map=[dict(token='map0', log_tokens=[], category='semantic_prior', filename='')],
             lidarseg=[])
    t['calibrated_sensor'].append(
        dict(_pose('cs_lidar', 0.01, [0.94, 0.0, 1.84]), sensor_token='s_lidar',
             camera_intrinsic=[]))
    for i, c in enumerate(CAMERAS):
        rot = Quaternion(axis=[0, 0, 1], angle=i * np.pi / 3) * Quaternion(
            axis=[1, 0, 0], angle=-np.pi / 2) * Quaternion(axis=[0, 1, 0], angle=np.pi / 2)
        t['calibrated_sensor'].append(
            dict(token=f'cs_{c}', sensor_token=f's_{c}', rotation=list(rot.elements),
                 translation=[1.0 + 0.1 * i, 0.1 * i, 1.5],
                 camera_intrinsic=[[1260.0, 0, 800.0], [0, 1260.0, 450.0], [0, 0, 1]]))
    for s, name in enumerate(SCENES):
        t['log'].append(dict(token=f'log{s}', logfile='', vehicle='', date_captured='',
                             location='boston-seaport'))
        t['map'][0]['log_tokens'].append(f'log{s}')
        samples = [f'smp{s}_{k}' for k in range(2)]
        t['scene'].append(dict(token=f'scn{s}', log_token=f'log{s}', nbr_samples=2, name=name,
                               first_sample_token=samples[0], last_sample_token=samples[1],
                               description=''))
        for k, tok in enumerate(samples):
            ts = 10**15 + (s * 10 + k) * 500_000
            t['sample'].append(dict(token=tok, timestamp=ts, scene_token=f'scn{s}',
                                    prev=samples[k - 1] if k else '',
                                    next=samples[k + 1] if k + 1 < 2 else ''))
            x = 100.0 * s + 5.0 * k
            t['ego_pose'].append(_pose(f'ep_{tok}_lidar', 0.3 * k, [x, 2.0, 0.0], ts))
            lidar_sd = f'sd_{tok}_lidar'
            t['sample_data'].append(dict(
                token=lidar_sd, sample_token=tok, ego_pose_token=f'ep_{tok}_lidar',
                calibrated_sensor_token='cs_lidar', timestamp=ts, fileformat='pcd',
                is_key_frame=True, height=0, width=0, prev='', next='',
                filename=f'samples/LIDAR_TOP/{tok}__LIDAR_TOP.pcd.bin'))
            t['lidarseg'].append(dict(token=lidar_sd, sample_data_token=lidar_sd,
                                      filename=f'lidarseg/v1.0-mini/{lidar_sd}_lidarseg.bin'))
            for c in CAMERAS:
                # 40 ms earlier, 0.5 m behind and 0.02 rad less turned
                t['ego_pose'].append(_pose(f'ep_{tok}_{c}', 0.3 * k - 0.02, [x - 0.5, 2.0, 0.0],
                                           ts - 40_000))
                t['sample_data'].append(dict(
                    token=f'sd_{tok}_{c}', sample_token=tok, ego_pose_token=f'ep_{tok}_{c}',
                    calibrated_sensor_token=f'cs_{c}', timestamp=ts - 40_000, fileformat='jpg',
                    is_key_frame=True, height=900, width=1600, prev='', next='',
                    filename=f'samples/{c}/{tok}__{c}.jpg'))
    table_root = os.path.join(root, 'v1.0-mini')
    os.makedirs(table_root)
    for name, rows in t.items():
        with open(os.path.join(table_root, name + '.json'), 'w') as f:
            json.dump(rows, f)
    label_dir = os.path.join(root, 'lidarseg', 'v1.0-mini')
    os.makedirs(label_dir)
    for rec in t['lidarseg']:
        np.zeros(4, np.uint8).tofile(os.path.join(root, rec['filename']))
    return t


def _matrix(rec):
    m = np.eye(4)
    m[:3, :3] = Quaternion(rec['rotation']).rotation_matrix
    m[:3, 3] = rec['translation']
    return m


def test_infos_splits_and_calibration(tmp_path):
    pytest.importorskip('nuscenes')
    tables = _write_database(str(tmp_path))
    held = tmp_path / 'held.txt'
    held.write_text('scene-0553\n')
    written = create_pretrain_infos(str(tmp_path), 'v1.0-mini', str(tmp_path / 'infos'),
                                    str(held))
    assert sorted(written) == ['pretrain', 'pretrain_val', 'train', 'val']
    infos = {}
    for split in ('pretrain', 'pretrain_val', 'train', 'val'):
        with open(tmp_path / 'infos' / f'nuscenes_infos_{split}.pkl', 'rb') as f:
            infos[split] = pickle.load(f)
    assert infos['pretrain']['metainfo']['scenes'] == ['scene-0061']
    assert infos['pretrain_val']['metainfo']['scenes'] == ['scene-0553']
    assert sorted(infos['train']['metainfo']['scenes']) == ['scene-0061', 'scene-0553']
    assert infos['val']['metainfo']['scenes'] == ['scene-0103']
    assert [len(infos[s]['data_list']) for s in ('pretrain', 'pretrain_val', 'train', 'val')] \
        == [2, 2, 4, 2]

    info = infos['pretrain']['data_list'][1]
    assert info['token'] == 'smp0_1'
    assert (info['scene_name'], info['scene_index']) == ('scene-0061', 0)
    assert [(d['scene_name'], d['scene_index']) for d in infos['val']['data_list']] == [
        ('scene-0103', 2)] * 2
    assert info['lidar_points']['lidar_path'] == 'smp0_1__LIDAR_TOP.pcd.bin'
    assert info['pts_semantic_mask_path'] == 'lidarseg/v1.0-mini/sd_smp0_1_lidar_lidarseg.bin'
    assert list(info['images']) == list(CAMERAS)
    # a world point seen from the lidar (at the lidar time) and from each camera (at the
    # camera time): lidar2cam must map the first onto the second
    poses = {r['token']: r for r in tables['ego_pose']}
    cs = {r['token']: r for r in tables['calibrated_sensor']}
    world = np.array([[8.0, 9.0, 1.0, 1.0], [-20.0, -3.0, 2.0, 1.0], [3.0, 30.0, 0.5, 1.0]]).T
    in_lidar = np.linalg.inv(_matrix(poses['ep_smp0_1_lidar']) @ _matrix(cs['cs_lidar'])) @ world
    for c in CAMERAS:
        cam = info['images'][c]
        in_cam = np.linalg.inv(_matrix(poses[f'ep_smp0_1_{c}']) @ _matrix(cs[f'cs_{c}'])) @ world
        np.testing.assert_allclose(np.asarray(cam['lidar2cam']) @ in_lidar, in_cam, atol=1e-9)
        assert cam['img_path'] == f'smp0_1__{c}.jpg'
        np.testing.assert_allclose(cam['cam2img'], cs[f'cs_{c}']['camera_intrinsic'])
    # ego motion matters here: the static lidar->ego->cam chain would be off by about 0.5 m
    static = np.linalg.inv(_matrix(cs['cs_CAM_FRONT'])) @ _matrix(cs['cs_lidar'])
    moved = np.asarray(info['images']['CAM_FRONT']['lidar2cam'])
    assert np.abs(static @ in_lidar - moved @ in_lidar).max() > 0.3


def test_the_shipped_hold_out_is_slidrs_100_train_scenes():
    """The default list ships with the package: 100 distinct official train scenes, so the
    pretraining split is the other 600 of v1.0-trainval's 700."""
    from nuscenes.utils import splits

    from projects.img2lidar.preparation.pretrain_infos import split_scenes
    from projects.img2lidar.splits import NUSCENES_PRETRAIN_VAL_SCENES, read_name_list
    names = read_name_list(NUSCENES_PRETRAIN_VAL_SCENES)
    assert len(names) == len(set(names)) == 100
    assert set(names) <= set(splits.train) and not set(names) & set(splits.val)
    scenes = split_scenes('v1.0-trainval', names)
    assert (len(scenes['pretrain']), len(scenes['pretrain_val']), len(scenes['train'])) == \
        (600, 100, 700)
    import inspect
    default = inspect.signature(create_pretrain_infos).parameters['pretrain_val_scenes'].default
    assert default == str(NUSCENES_PRETRAIN_VAL_SCENES)


def test_a_missing_hold_out_list_is_an_error_naming_it(tmp_path):
    """A missing list would hold out nothing and change the experiment: it is an error, before
    any nuScenes file is read; only None holds out no scene."""
    missing = tmp_path / 'nowhere' / 'scenes.txt'
    with pytest.raises(FileNotFoundError, match=str(missing)):
        create_pretrain_infos(str(tmp_path / 'no_root'), pretrain_val_scenes=str(missing))


def test_the_hold_out_is_found_from_any_working_directory(tmp_path):
    """After ``pip install -e .`` the package and its split list load from anywhere."""
    import subprocess
    import sys
    code = ('from projects.img2lidar.splits import NUSCENES_PRETRAIN_VAL_SCENES as p, '
            'read_name_list; print(len(read_name_list(p)))')
    out = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=''))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '100'
