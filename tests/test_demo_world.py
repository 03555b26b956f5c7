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


def test_demo_data_tools_and_pictures(tiny_world, tmp_path):
    """The demo world goes through the project's own data tools and the picture tool."""
    import subprocess
    import sys

    import torch
    from mmdet3d.registry import MODELS
    from mmengine.config import Config

    from conftest import REPO_ROOT
    py = sys.executable

    def run(*cmd):
        res = subprocess.run([py, *cmd], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        return res.stdout

    run('tools/create_pretrain_infos.py', '--root', str(tiny_world), '--version', 'v1.0-mini',
        '--out-dir', str(tiny_world))
    # the demo configs, with random weights saved as checkpoints
    ckpts = {}
    for name, cfg in (('pretrain', 'stslidr_minkunet-w16_mobilenetv2-imagenet_1xb2-6e_demo.py'),
                      ('seg', 'minkunet-w16_1xb2-30e_demo-fewshot.py')):
        model = MODELS.build(Config.fromfile(str(REPO_ROOT / 'configs/demo' / cfg)).model)
        ckpts[name] = tmp_path / f'{name}.pth'
        torch.save({'state_dict': model.state_dict()}, ckpts[name])
    out = tmp_path / 'vis'
    printed = run('tools/visualize.py', '--data-root', str(tiny_world), '--ann-file',
                  str(tiny_world / 'nuscenes_infos_train.pkl'), '--pretrain-config',
                  'configs/demo/stslidr_minkunet-w16_mobilenetv2-imagenet_1xb2-6e_demo.py',
                  '--checkpoint', str(ckpts['pretrain']), '--segmentor-config',
                  'configs/demo/minkunet-w16_1xb2-30e_demo-fewshot.py',
                  '--segmentor-checkpoint', str(ckpts['seg']), '--out-dir', str(out))
    assert 'point accuracy' in printed
    import cv2
    for name in ('superpixels_points.png', 'features_pca.png', 'bev_labels.png'):
        img = cv2.imread(str(out / name))
        assert img is not None and img.std() > 10, name  # a real picture, not a blank
