"""mmdet3d v1.1 info files of a nuScenes root for image-to-lidar pretraining.

The command line is ``tools/create_pretrain_infos.py``. :func:`create_pretrain_infos` writes,
each with only the entries this project reads (lidar path and ``lidar2ego``, ``ego2global``, per
camera ``img_path`` / ``cam2img`` / ``cam2ego`` / ``lidar2cam`` with the ego motion between the
lidar and camera timestamps folded in, and ``pts_semantic_mask_path`` when lidarseg is present):

- ``nuscenes_infos_pretrain.pkl``: train scenes not in the pretraining validation list
  (600 on v1.0-trainval);
- ``nuscenes_infos_pretrain_val.pkl``: the scenes of ``--pretrain-val-scenes`` (by default
  the list that ships with the project, :data:`projects.img2lidar.splits.NUSCENES_PRETRAIN_VAL_SCENES`;
  100 on v1.0-trainval);
- ``nuscenes_infos_train.pkl`` / ``nuscenes_infos_val.pkl``: the official splits
  (mini_train / mini_val on v1.0-mini).

Paths in the infos are relative to the data prefixes of the configs: lidar files to
``samples/LIDAR_TOP`` and images to ``samples/<CAM>`` (as mmdet3d's nuScenes configs). Each
info file gets a checksum sidecar, ``<info>.pkl.sha256``, that the datasets check before
reading it (:mod:`projects.img2lidar.datasets.info_file_io`).
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
from pyquaternion import Quaternion

from ..datasets.info_file_io import write_info_file
from ..file_integrity import checksum_path
from ..splits import NUSCENES_PRETRAIN_VAL_SCENES, read_name_list

CAMERAS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT',
           'CAM_BACK_RIGHT')


def pose(rec: dict) -> np.ndarray:
    """4x4 transform of a calibrated_sensor or ego_pose record."""
    m = np.eye(4)
    m[:3, :3] = Quaternion(rec['rotation']).rotation_matrix
    m[:3, 3] = rec['translation']
    return m


def sample_info(nusc, sample: dict, index: int) -> dict:
    """The v1.1 info entry of one keyframe (plus ``scene_name`` and ``scene_index``, its
    scene's position in the scene table, which SLidR's few-shot subsets need)."""
    lidar_sd = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
    lidar2ego = pose(nusc.get('calibrated_sensor', lidar_sd['calibrated_sensor_token']))
    ego2global = pose(nusc.get('ego_pose', lidar_sd['ego_pose_token']))
    scene = nusc.get('scene', sample['scene_token'])
    info = dict(
        sample_idx=index,
        token=sample['token'],
        scene_name=scene['name'],
        scene_index=nusc._token2ind['scene'][scene['token']],
        timestamp=lidar_sd['timestamp'] / 1e6,
        ego2global=ego2global.tolist(),
        lidar_points=dict(
            num_pts_feats=5,
            lidar_path=osp.basename(lidar_sd['filename']),
            lidar2ego=lidar2ego.tolist()),
        images={})
    for cam in CAMERAS:
        if cam not in sample['data']:
            continue
        sd = nusc.get('sample_data', sample['data'][cam])
        cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
        cam2ego = pose(cs)
        cam_ego2global = pose(nusc.get('ego_pose', sd['ego_pose_token']))
        # lidar -> ego(t_lidar) -> global -> ego(t_cam) -> cam
        lidar2cam = (np.linalg.inv(cam2ego) @ np.linalg.inv(cam_ego2global) @ ego2global
                     @ lidar2ego)
        info['images'][cam] = dict(
            img_path=osp.basename(sd['filename']),
            cam2img=np.asarray(cs['camera_intrinsic']).tolist(),
            cam2ego=cam2ego.tolist(),
            sample_data_token=sd['token'],
            timestamp=sd['timestamp'] / 1e6,
            lidar2cam=lidar2cam.tolist())
    if 'lidarseg' in nusc.table_names and len(nusc.lidarseg):
        try:
            rec = nusc.get('lidarseg', lidar_sd['token'])
            info['pts_semantic_mask_path'] = rec['filename']
        except KeyError:
            pass
    return info


def split_scenes(version: str, pretrain_val_scenes: Optional[Sequence[str]]
                 ) -> Dict[str, List[str]]:
    """Scene names of each output split.

    Args:
        version (str): ``v1.0-trainval`` or ``v1.0-mini``.
        pretrain_val_scenes (Sequence[str], optional): Train scenes held out of pretraining;
            None holds out none.

    Raises:
        ValueError: On v1.0-trainval, a held-out name that is not a train scene (a list made
            for another split or version would silently hold out fewer scenes).
    """
    from nuscenes.utils import splits
    if version == 'v1.0-mini':
        train, val = splits.mini_train, splits.mini_val
    elif version == 'v1.0-trainval':
        train, val = splits.train, splits.val
    else:
        raise ValueError(f'unsupported version {version}')
    held = set(pretrain_val_scenes or ())
    if version == 'v1.0-trainval':
        unknown = sorted(held - set(train))
        if unknown:
            raise ValueError(f'{len(unknown)} held-out scenes are not train scenes of {version}: '
                             f'{unknown[:10]}')
    return dict(
        pretrain=[s for s in train if s not in held],
        pretrain_val=[s for s in train if s in held],
        train=list(train),
        val=list(val))


def create_pretrain_infos(root: str, version: str = 'v1.0-trainval', out_dir: Optional[str] = None,
                          pretrain_val_scenes: Optional[str] = str(NUSCENES_PRETRAIN_VAL_SCENES),
                          splits: Sequence[str] = ('pretrain', 'pretrain_val', 'train', 'val'),
                          prefix: str = 'nuscenes_infos') -> Dict[str, str]:
    """Write the info files of a nuScenes root (see the module doc).

    Args:
        root (str): nuScenes root (holds the version folder).
        version (str): ``v1.0-trainval`` or ``v1.0-mini``.
        out_dir (str, optional): Where the files go; the root when None.
        pretrain_val_scenes (str, optional): File of the train scene names held out for
            pretraining validation, one per line (default: the list that ships with the
            project, SLidR's 100 scenes). None holds out none, on purpose only: a missing file
            is an error, never an empty hold-out, since that would change the experiment.
        splits (Sequence[str]): Splits to write.
        prefix (str): File name prefix.

    Returns:
        dict[str, str]: The file written for each split.

    Raises:
        FileNotFoundError: ``pretrain_val_scenes`` names a file that does not exist.
    """
    from mmengine.utils import ProgressBar
    from nuscenes import NuScenes

    written = {}
    held_out = None if pretrain_val_scenes is None else read_name_list(pretrain_val_scenes)
    print('pretraining validation scenes: ' + ('none (on request)' if held_out is None else
                                                f'{len(held_out)} listed in {pretrain_val_scenes}'))
    scenes = split_scenes(version, held_out)
    nusc = NuScenes(version=version, dataroot=root, verbose=False)
    by_name = {s['name']: s for s in nusc.scene}
    out_dir = out_dir or root
    os.makedirs(out_dir, exist_ok=True)
    for split in splits:
        names = [n for n in scenes[split] if n in by_name]
        tokens = []
        for n in names:
            tok = by_name[n]['first_sample_token']
            while tok:
                tokens.append(tok)
                tok = nusc.get('sample', tok)['next']
        print(f'{split}: {len(names)} scenes, {len(tokens)} samples')
        bar = ProgressBar(len(tokens))
        data_list = []
        for i, tok in enumerate(tokens):
            data_list.append(sample_info(nusc, nusc.get('sample', tok), i))
            bar.update()
        print()
        path = osp.join(out_dir, f'{prefix}_{split}.pkl')
        write_info_file(path, dict(metainfo=dict(dataset='nuscenes', version=version,
                                                 info_version='1.1', split=split,
                                                 scenes=names), data_list=data_list))
        print(f'wrote {path} (and its checksum, {osp.basename(checksum_path(path))})')
        written[split] = path
    return written
