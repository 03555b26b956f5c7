"""A synthetic PandaSet root in PandaSet's own layout, every point placed by construction.

One sequence (``001``) with two frames, ``00`` and ``02``: the sequence's pose and timestamp
lists hold three entries, and the one of the missing frame 01 is far away, so a converter that
took a frame's pose by its position in the folder instead of its file name would be seen. The
files are those the converter reads, in the formats of the real sample (checked against it):

- ``lidar/NN.pkl.gz``: a gzipped pickled pandas DataFrame, columns x, y, z (world, float64),
  i (float64), t (float64, absolute seconds), d (int64: 0 Pandar64, 1 PandarGT), a RangeIndex
  named ``index``; ``lidar/poses.json`` (position + heading quaternion w, x, y, z, ego to
  world) and ``lidar/timestamps.json``;
- ``camera/front_camera/NN.jpg`` (64 x 48), ``poses.json`` (camera to world),
  ``intrinsics.json`` ({fx, fy, cx, cy}), ``timestamps.json`` (50 ms before the lidar);
- ``annotations/semseg/NN.pkl.gz`` (a DataFrame with one int64 column ``class``, one row per
  lidar row) and ``classes.json``; ``meta/gps.json`` and ``meta/timestamps.json``.

Everything is written from rotations and translations chosen here (yaw and pitch angles, the
camera's mounting, the ego motion between the camera's and the lidar's timestamps), with plain
trigonometry and pinhole maths, independently of the converter's pyquaternion and formulas. The
points are made in the ego frame and moved to the world by the frame's pose; the front camera's
points are made from a chosen pixel centre and depth, ``depth * ((u - cx) / fx, (v - cy) / fy,
1)`` in the camera, so that the converted ``cam2img @ lidar2cam`` must put them back on that
pixel. The kinds of points (:data:`KINDS`):

- ``camera``: on a chosen pixel centre at a chosen depth (> 1 m), Pandar64 or PandarGT;
- ``behind``: on a chosen pixel's ray behind the camera (negative depth): a projection that
  forgot the sign of the depth would put them on the pixel;
- ``near``: on a pixel's ray at 0.5 m, nearer than the pairing's 1 m;
- ``outside``: in front of the camera, outside the image;
- ``road``: the road (class 7) behind the car at z = :data:`ROAD_Z` in the ego frame;
- ``far``: ground (class 6) 50 m away, beyond a 30 m range.
"""
import gzip
import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np

SEQUENCE = '001'
FRAMES = ('00', '02')
CAMERA = 'front_camera'
IMAGE_HW = (48, 64)
FX, FY, CX, CY = 40.0, 42.0, 31.0, 23.0
#: the expected ``cam2img`` of the converted infos
CAM2IMG = [[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]]
#: the front camera's position in the ego frame (x right, y forward, z up), looking along +y
CAM_IN_EGO = (0.1, 1.0, 1.6)
#: how far (m, along the ego's +y) the car moves between the camera's and the lidar's stamps
EGO_MOTION = 0.5
CAMERA_LEAD = 0.05  # s: the camera fires this long before the lidar timestamp
LIDAR_STAMPS = (1557539924.49981, 1557539924.599788, 1557539924.699766)
#: the road's height in the ego frame: PandaSet's (configs/_base_/datasets/sensor_heights.py)
ROAD_Z = -0.22
#: each pose (yaw about z, pitch about x, both radians; position in the world, m), by frame
#: number; frame 01 has no files and a pose far away
POSES = {0: (0.3, 0.02, (10.0, 20.0, 0.3)), 1: (2.0, 0.0, (1000.0, -1000.0, 50.0)),
         2: (0.45, -0.03, (10.6, 20.9, 0.35))}
#: points on the front camera: pixel centre (u, v), depth (m), lidar (0 Pandar64,
#: 1 PandarGT), class id; frame 02 has the first six only
CAMERA_POINTS = (
    (5.5, 3.5, 4.0, 0, 13),
    (60.5, 44.5, 12.0, 0, 5),
    (31.5, 23.5, 2.0, 0, 13),
    (0.5, 47.5, 29.0, 0, 41),
    (63.5, 0.5, 1.5, 0, 42),
    (20.5, 30.5, 8.0, 1, 13),
    (44.5, 10.5, 25.0, 1, 41),
    (31.5, 23.5, 6.0, 1, 30),  # the pixel of a Pandar64 point, farther
)
#: points on pixel rays that the camera does not see: (u, v), depth, lidar, class, kind
UNSEEN_POINTS = (
    (5.5, 3.5, -4.0, 0, 4, 'behind'),
    (31.5, 23.5, -10.0, 1, 4, 'behind'),
    (31.5, 23.5, 0.5, 0, 2, 'near'),
    (-3.5, 10.5, 5.0, 0, 11, 'outside'),
    (70.5, 10.5, 5.0, 0, 11, 'outside'),
    (10.5, 50.5, 5.0, 1, 11, 'outside'),
)
#: the road (class 7, Pandar64) behind the car: x and y of the grid, z = ROAD_Z
ROAD_XS, ROAD_YS = (-4.0, -2.0, 0.0, 2.0, 4.0), (-6.0, -9.0, -12.0)
#: ground (class 6, Pandar64) 50 m away horizontally
FAR_POINTS = ((0.0, -50.0), (30.0, -40.0))
KINDS = ('camera', 'behind', 'near', 'outside', 'road', 'far')
CLASSES = {2: 'Exhaust', 4: 'Reflection', 5: 'Vegetation', 6: 'Ground', 7: 'Road',
           11: 'Sidewalk', 13: 'Car', 30: 'Pedestrian', 41: 'Building',
           42: 'Other Static Object'}


@dataclass
class SyntheticFrame:
    """What is known of one frame by construction, one row per lidar row (file order)."""
    stem: str
    ego2world: np.ndarray  # 4x4
    ego: np.ndarray  # (N, 3) the points in the ego frame
    lidar: np.ndarray  # (N,) 0 Pandar64, 1 PandarGT
    intensity: np.ndarray  # (N,)
    time_offset: np.ndarray  # (N,) s from the lidar timestamp
    label: np.ndarray  # (N,) raw class id
    kind: np.ndarray  # (N,) one of KINDS
    pixel: np.ndarray  # (N, 2) the chosen (u, v); NaN for road and far points
    depth: np.ndarray  # (N,) the chosen depth; NaN for road and far points


def rotation(yaw: float, pitch: float) -> np.ndarray:
    """``Rz(yaw) @ Rx(pitch)``."""
    cz, sz, cx, sx = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    return rz @ rx


def quaternion(yaw: float, pitch: float) -> dict:
    """The unit quaternion of ``Rz(yaw) @ Rx(pitch)``: the product of the two half-angle
    quaternions (cos(yaw/2), 0, 0, sin(yaw/2)) (cos(pitch/2), sin(pitch/2), 0, 0)."""
    cz, sz = math.cos(yaw / 2), math.sin(yaw / 2)
    cx, sx = math.cos(pitch / 2), math.sin(pitch / 2)
    return dict(w=cz * cx, x=cz * sx, y=sz * sx, z=sz * cx)


def transform(rot: np.ndarray, pos) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, pos
    return m


def ego2world(frame: int) -> np.ndarray:
    yaw, pitch, pos = POSES[frame]
    return transform(rotation(yaw, pitch), pos)


#: the camera's axes (x right, y down, z forward) in the ego frame: Rx(-90 degrees)
CAM_PITCH = -math.pi / 2
#: camera to ego at the camera's timestamp
CAM2EGO = transform(rotation(0.0, CAM_PITCH), CAM_IN_EGO)
#: where the camera-time ego origin lies in the ego frame of the lidar's timestamp
EGO_AT_CAMERA = transform(np.eye(3), (0.0, -EGO_MOTION, 0.0))


def expected_lidar2cam() -> np.ndarray:
    """Ego (lidar time) to camera, from the construction: undo the ego motion (the camera
    time's ego origin is EGO_MOTION behind), then the camera's mounting."""
    r = rotation(0.0, CAM_PITCH).T  # ego axes -> camera axes
    t = np.array(CAM_IN_EGO) + np.array([0.0, -EGO_MOTION, 0.0])  # the camera in the ego frame
    return transform(r, -r @ t)


def camera_ray_point(u: float, v: float, depth: float) -> np.ndarray:
    """The ego-frame point at ``depth`` on the ray of pixel (u, v)."""
    cam = depth * np.array([(u - CX) / FX, (v - CY) / FY, 1.0])
    return (EGO_AT_CAMERA @ CAM2EGO @ np.append(cam, 1.0))[:3]


def build_frame(stem: str) -> SyntheticFrame:
    """The points of one frame, in the order of its files."""
    rows = []  # (ego xyz, lidar, label, kind, (u, v), depth)
    camera = CAMERA_POINTS if stem == '00' else CAMERA_POINTS[:6]
    for u, v, depth, lidar, label in camera:
        rows.append((camera_ray_point(u, v, depth), lidar, label, 'camera', (u, v), depth))
    for u, v, depth, lidar, label, kind in UNSEEN_POINTS:
        rows.append((camera_ray_point(u, v, depth), lidar, label, kind, (u, v), depth))
    for y in ROAD_YS:
        for x in ROAD_XS:
            rows.append((np.array([x, y, ROAD_Z]), 0, 7, 'road', (np.nan, np.nan), np.nan))
    for x, y in FAR_POINTS:
        rows.append((np.array([x, y, ROAD_Z]), 0, 6, 'far', (np.nan, np.nan), np.nan))
    n = len(rows)
    return SyntheticFrame(
        stem=stem, ego2world=ego2world(int(stem)),
        ego=np.stack([r[0] for r in rows]), lidar=np.array([r[1] for r in rows]),
        intensity=(np.arange(n) * 7 % 256).astype(np.float64),
        time_offset=np.linspace(-0.08, 0.04, n), label=np.array([r[2] for r in rows]),
        kind=np.array([r[3] for r in rows]), pixel=np.array([r[4] for r in rows], dtype=float),
        depth=np.array([r[5] for r in rows], dtype=float))


def pose_json(to_world: np.ndarray, yaw: float, pitch: float) -> dict:
    """A PandaSet pose: the position from the matrix, the heading from the angles."""
    return dict(position=dict(zip('xyz', to_world[:3, 3].tolist())),
                heading=quaternion(yaw, pitch))


def _write_pickle(path: Path, frame) -> None:
    """A gzipped pickle, as PandaSet's ``.pkl.gz`` files are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, 'wb') as f:
        pickle.dump(frame, f)


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def write_synthetic_pandaset(root: Path) -> Dict[str, SyntheticFrame]:
    """Write the sequence under ``root`` and return its frames by stem."""
    import pandas as pd
    seq = root / SEQUENCE
    frames = {stem: build_frame(stem) for stem in FRAMES}
    ego_poses, cam_poses = [], []
    for i in range(len(LIDAR_STAMPS)):
        yaw, pitch, _ = POSES[i]
        ego_poses.append(pose_json(ego2world(i), yaw, pitch))
        cam2world = ego2world(i) @ EGO_AT_CAMERA @ CAM2EGO  # Rz(yaw) Rx(pitch - 90 degrees)
        cam_poses.append(pose_json(cam2world, yaw, pitch + CAM_PITCH))
    _write_json(seq / 'lidar' / 'poses.json', ego_poses)
    _write_json(seq / 'lidar' / 'timestamps.json', list(LIDAR_STAMPS))
    cam_dir = seq / 'camera' / CAMERA
    _write_json(cam_dir / 'poses.json', cam_poses)
    _write_json(cam_dir / 'intrinsics.json', dict(fx=FX, fy=FY, cx=CX, cy=CY))
    _write_json(cam_dir / 'timestamps.json', [t - CAMERA_LEAD for t in LIDAR_STAMPS])
    _write_json(seq / 'annotations' / 'semseg' / 'classes.json',
                {str(k): v for k, v in CLASSES.items()})
    _write_json(seq / 'meta' / 'timestamps.json', list(LIDAR_STAMPS))
    _write_json(seq / 'meta' / 'gps.json',
                [dict(lat=37.7747 + 1e-5 * i, long=-122.401, height=2.9, xvel=0.0, yvel=5.0)
                 for i in range(len(LIDAR_STAMPS))])
    h, w = IMAGE_HW
    for stem, frame in frames.items():
        world = (np.c_[frame.ego, np.ones(len(frame.ego))] @ frame.ego2world.T)[:, :3]
        stamp = LIDAR_STAMPS[int(stem)]
        lidar = pd.DataFrame(dict(x=world[:, 0], y=world[:, 1], z=world[:, 2],
                                  i=frame.intensity, t=stamp + frame.time_offset,
                                  d=frame.lidar.astype(np.int64)))
        lidar.index.name = 'index'
        _write_pickle(seq / 'lidar' / f'{stem}.pkl.gz', lidar)
        _write_pickle(seq / 'annotations' / 'semseg' / f'{stem}.pkl.gz',
                      pd.DataFrame({'class': frame.label.astype(np.int64)}))
        ramp = np.linspace(0, 255, w, dtype=np.uint8)
        img = np.stack([np.tile(ramp, (h, 1)), np.tile(ramp[:h, None], (1, w)),
                        np.full((h, w), 80 * int(stem), np.uint8)], -1)
        cam_dir.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(cam_dir / f'{stem}.jpg'), img)
    return frames


def kind_counts(frame: SyntheticFrame) -> Dict[Tuple[str, int], int]:
    """Points of each (kind, lidar) of a frame."""
    out: Dict[Tuple[str, int], int] = {}
    for kind, lidar in zip(frame.kind.tolist(), frame.lidar.tolist()):
        out[(kind, lidar)] = out.get((kind, lidar), 0) + 1
    return out
