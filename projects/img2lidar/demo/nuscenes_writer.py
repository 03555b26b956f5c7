"""Write the procedural world as a nuScenes-format dataset that nuscenes-devkit opens."""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence

import cv2
import numpy as np
from mmengine.utils import ProgressBar

from .world import CAMERAS, LIDAR, RAW, lidar_sweep, make_world, pose_matrix, render

# nuScenes lidarseg categories: raw index -> name (the ones the world uses, plus noise)
CATEGORIES = {0: 'noise', RAW['pedestrian']: 'human.pedestrian.adult',
              RAW['barrier']: 'movable_object.barrier', RAW['car']: 'vehicle.car',
              RAW['truck']: 'vehicle.truck', RAW['road']: 'flat.driveable_surface',
              RAW['sidewalk']: 'flat.sidewalk', RAW['terrain']: 'flat.terrain',
              RAW['manmade']: 'static.manmade', RAW['vegetation']: 'static.vegetation'}


def _token(*parts) -> str:
    return '_'.join(str(p) for p in parts)


def write_world(root: str, scenes: Sequence[str], samples_per_scene: int = 4,
                image_size=(225, 400), version: str = 'v1.0-mini', seed: int = 0,
                step_m: float = 4.0) -> Dict[str, List[str]]:
    """Generate and write ``scenes`` (names, e.g. nuScenes mini split names) under ``root``.

    Writes ``<version>/*.json`` tables, ``samples/LIDAR_TOP/*.pcd.bin`` (5 float32 per point),
    ``samples/<CAM>/*.jpg``, ``lidarseg/<version>/*_lidarseg.bin`` (uint8 raw ids) and, for
    tests and pictures, the rendered per-pixel raw labels ``demo_gt/<CAM>/<stem>.npz``.

    Returns:
        dict: scene name -> its sample tokens.
    """
    t = {name: [] for name in ('category', 'attribute', 'visibility', 'instance', 'sensor',
                               'calibrated_sensor', 'ego_pose', 'log', 'scene', 'sample',
                               'sample_data', 'sample_annotation', 'map', 'lidarseg')}
    for idx, name in sorted(CATEGORIES.items()):
        t['category'].append(dict(token=_token('cat', idx), name=name, description='',
                                  index=idx))
    t['sensor'].append(dict(token='sensor_lidar', channel='LIDAR_TOP', modality='lidar'))
    t['calibrated_sensor'].append(dict(token='cs_lidar', sensor_token='sensor_lidar',
                                       translation=LIDAR[0], rotation=LIDAR[1],
                                       camera_intrinsic=[]))
    h, w = image_size
    for cam, (trans, rot, k) in CAMERAS.items():
        k = np.array(k, dtype=np.float64)
        k[:2] *= w / 1600.0
        t['sensor'].append(dict(token=_token('sensor', cam), channel=cam, modality='camera'))
        t['calibrated_sensor'].append(dict(token=_token('cs', cam),
                                           sensor_token=_token('sensor', cam), translation=trans,
                                           rotation=rot, camera_intrinsic=k.tolist()))
    t['map'].append(dict(token='map0', log_tokens=[], category='semantic_prior', filename=''))
    for d in ['samples/LIDAR_TOP', f'lidarseg/{version}', version] + [
            f'samples/{c}' for c in CAMERAS] + [f'demo_gt/{c}' for c in CAMERAS]:
        os.makedirs(osp.join(root, d), exist_ok=True)
    out: Dict[str, List[str]] = {}
    bar = ProgressBar(len(scenes) * samples_per_scene)
    for s, name in enumerate(scenes):
        rng = np.random.default_rng([seed, s])
        boxes = make_world(seed * 1000 + s, length=samples_per_scene * step_m + 40)
        log = _token('log', name)
        t['log'].append(dict(token=log, logfile='', vehicle='demo', date_captured='',
                             location='demo-town'))
        t['map'][0]['log_tokens'].append(log)
        tokens = [_token('sample', name, k) for k in range(samples_per_scene)]
        t['scene'].append(dict(token=_token('scene', name), log_token=log,
                               nbr_samples=samples_per_scene, first_sample_token=tokens[0],
                               last_sample_token=tokens[-1], name=name, description='demo'))
        prev_sd: Dict[str, str] = {}
        for k, tok in enumerate(tokens):
            ts = 1_600_000_000_000_000 + s * 100_000_000 + k * 500_000
            t['sample'].append(dict(token=tok, timestamp=ts, scene_token=_token('scene', name),
                                    prev=tokens[k - 1] if k else '',
                                    next=tokens[k + 1] if k + 1 < len(tokens) else ''))
            ego_t = [10.0 + k * step_m, -2.0 + 0.3 * np.sin(k), 0.0]
            ego_r = [np.cos(0.01 * k), 0, 0, np.sin(0.01 * k)]
            ego2world = pose_matrix(ego_t, ego_r)
            ep = _token('ego', tok)
            t['ego_pose'].append(dict(token=ep, timestamp=ts, translation=ego_t,
                                      rotation=ego_r))
            channels = [('LIDAR_TOP', 'cs_lidar', 'pcd', f'samples/LIDAR_TOP/{tok}__LIDAR_TOP'
                         '.pcd.bin')] + [(c, _token('cs', c), 'jpg', f'samples/{c}/{tok}__{c}.jpg')
                                         for c in CAMERAS]
            for channel, cs, fmt, filename in channels:
                sd = _token('sd', tok, channel)
                rec = dict(token=sd, sample_token=tok, ego_pose_token=ep,
                           calibrated_sensor_token=cs, timestamp=ts, fileformat=fmt,
                           is_key_frame=True, height=0 if fmt == 'pcd' else h,
                           width=0 if fmt == 'pcd' else w, filename=filename,
                           prev=prev_sd.get(channel, ''), next='')
                t['sample_data'].append(rec)
                if fmt == 'pcd':
                    pts, labels = lidar_sweep(ego2world, boxes, rng)
                    pts.tofile(osp.join(root, filename))
                    seg = f'lidarseg/{version}/{sd}_lidarseg.bin'
                    labels.tofile(osp.join(root, seg))
                    t['lidarseg'].append(dict(token=sd, sample_data_token=sd, filename=seg))
                else:
                    img, lab, _ = render(ego2world, channel, boxes, rng, image_size)
                    cv2.imwrite(osp.join(root, filename), img[:, :, ::-1],
                                [cv2.IMWRITE_JPEG_QUALITY, 92])
                    stem = osp.splitext(osp.basename(filename))[0]
                    with open(osp.join(root, 'demo_gt', channel, stem + '.npz'), 'wb') as f:
                        np.savez_compressed(f, labels=lab.astype(np.uint8))
                prev_sd[channel] = sd
            bar.update()
        out[name] = tokens
    # link next pointers of the sample_data chains
    by_token = {r['token']: r for r in t['sample_data']}
    for r in t['sample_data']:
        if r['prev']:
            by_token[r['prev']]['next'] = r['token']
    for name, rows in t.items():
        with open(osp.join(root, version, name + '.json'), 'w') as f:
            json.dump(rows, f)
    print()
    return out
