"""The demo world: nuscenes-devkit opens it, and lidar and images agree."""
import numpy as np
import pytest
from pyquaternion import Quaternion

from projects.img2lidar.demo import write_world
from projects.img2lidar.demo.world import RAW

OBJECTS = {RAW[k] for k in ('pedestrian', 'barrier', 'car', 'truck', 'manmade', 'vegetation')}


@pytest.fixture(scope='module')
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    write_world(str(root), ['scene-0061'], samples_per_scene=2, seed=0)
    return root


def test_devkit_opens_world_and_points_land_on_their_objects(tiny_world):
    from nuscenes import NuScenes
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import view_points
    nusc = NuScenes(version='v1.0-mini', dataroot=str(tiny_world), verbose=False)
    assert len(nusc.scene) == 1 and len(nusc.sample) == 2
    assert len(nusc.lidarseg) == 2
    agree = total = 0
    seen_classes = set()
    for sample in nusc.sample:
        lidar = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
        pc = LidarPointCloud.from_file(str(tiny_world / lidar['filename']))
        labels = np.fromfile(tiny_world / nusc.get('lidarseg', lidar['token'])['filename'],
                             dtype=np.uint8)
        assert labels.shape[0] == pc.points.shape[1] > 10000
        seen_classes |= set(np.unique(labels).tolist())
        # lidar -> ego -> world (lidar time) with the devkit's records
        cs = nusc.get('calibrated_sensor', lidar['calibrated_sensor_token'])
        pose = nusc.get('ego_pose', lidar['ego_pose_token'])
        pc.rotate(Quaternion(cs['rotation']).rotation_matrix)
        pc.translate(np.array(cs['translation']))
        pc.rotate(Quaternion(pose['rotation']).rotation_matrix)
        pc.translate(np.array(pose['translation']))
        world = pc.points[:3].copy()
        for cam in [c for c in sample['data'] if c.startswith('CAM')]:
            sd = nusc.get('sample_data', sample['data'][cam])
            cs_c = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
            pose_c = nusc.get('ego_pose', sd['ego_pose_token'])
            p = world - np.array(pose_c['translation'])[:, None]
            p = Quaternion(pose_c['rotation']).rotation_matrix.T @ p
            p = p - np.array(cs_c['translation'])[:, None]
            p = Quaternion(cs_c['rotation']).rotation_matrix.T @ p
            uv = view_points(p, np.array(cs_c['camera_intrinsic']), normalize=True)
            u, v = np.floor(uv[0]).astype(int), np.floor(uv[1]).astype(int)
            ok = (p[2] > 1.0) & (u >= 0) & (u < sd['width']) & (v >= 0) & (v < sd['height'])
            ok &= np.isin(labels, list(OBJECTS))
            stem = sd['filename'].split('/')[-1][:-4]
            rendered = np.load(tiny_world / 'demo_gt' / cam / (stem + '.npz'))['labels']
            agree += int((rendered[v[ok], u[ok]] == labels[ok]).sum())
            total += int(ok.sum())
    print(f'{agree} of {total} object points land on pixels rendered for their class')
    assert total > 2000
    assert agree / total >= 0.95, agree / total
    assert {RAW['road'], RAW['sidewalk'], RAW['car'], RAW['manmade']} <= seen_classes
