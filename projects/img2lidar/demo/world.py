"""A small procedural driving world, seen by a nuScenes-like rig (32-beam lidar, 6 cameras).

Geometry is a flat ground (road, sidewalks, terrain) and axis-aligned boxes (buildings,
vegetation, poles, barriers, cars, trucks, pedestrians). The lidar and the cameras ray-cast
the same geometry, so images and points agree; each class has its own colour, texture and
shading, with noise. Everything is seeded. Labels are nuScenes raw lidarseg ids.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from pyquaternion import Quaternion

# nuScenes raw lidarseg ids
RAW = dict(pedestrian=2, barrier=9, car=17, truck=23, road=24, sidewalk=26, terrain=27,
           manmade=28, vegetation=30)
ROAD_HALF, SIDEWALK_HALF = 4.0, 6.5

# the nuScenes rig (from the shared sample's calibration): cam2ego translation, rotation
# (w, x, y, z) and intrinsics at 1600x900
CAMERAS: Dict[str, Tuple[list, list, list]] = {
    'CAM_FRONT': ([1.7008, 0.0159, 1.511], [-0.4998, 0.50303, -0.49978, 0.49737],
                  [[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]]),
    'CAM_FRONT_RIGHT': ([1.5508, -0.4934, 1.4957], [0.20603, -0.20269, 0.68245, -0.67136],
                        [[1260.8, 0, 808.0], [0, 1260.8, 495.3], [0, 0, 1]]),
    'CAM_FRONT_LEFT': ([1.5239, 0.4946, 1.5093], [0.67573, -0.67363, 0.21214, -0.21123],
                       [[1272.6, 0, 826.6], [0, 1272.6, 479.8], [0, 0, 1]]),
    'CAM_BACK': ([0.0283, 0.0035, 1.5791], [0.50379, -0.4974, -0.49419, 0.50455],
                 [[809.2, 0, 829.2], [0, 809.2, 481.8], [0, 0, 1]]),
    'CAM_BACK_LEFT': ([1.0357, 0.4848, 1.591], [-0.69242, 0.70316, 0.11648, -0.11203],
                      [[1256.7, 0, 792.1], [0, 1256.7, 492.8], [0, 0, 1]]),
    'CAM_BACK_RIGHT': ([1.0149, -0.4806, 1.5624], [-0.12281, 0.1324, 0.70043, -0.6905],
                       [[1259.5, 0, 807.3], [0, 1259.5, 501.2], [0, 0, 1]]),
}
LIDAR = ([0.9437, 0.0, 1.8402], [0.7078, -0.00649, 0.01065, -0.70631])


def pose_matrix(translation, rotation) -> np.ndarray:
    """4x4 from a translation and a (w, x, y, z) quaternion."""
    m = np.eye(4)
    m[:3, :3] = Quaternion(rotation).normalised.rotation_matrix
    m[:3, 3] = translation
    return m


@dataclass
class Box:
    """An axis-aligned box of one class."""
    lo: np.ndarray  # (3,) min corner, world frame
    hi: np.ndarray  # (3,) max corner
    label: int      # nuScenes raw id
    color: np.ndarray  # (3,) RGB in [0, 1]


# base colours (RGB) per class, jittered per object
_COLORS = {RAW['manmade']: (0.62, 0.52, 0.45), RAW['vegetation']: (0.18, 0.45, 0.15),
           RAW['barrier']: (0.85, 0.2, 0.15), RAW['car']: (0.15, 0.3, 0.75),
           RAW['truck']: (0.9, 0.85, 0.75), RAW['pedestrian']: (0.9, 0.65, 0.2)}
GROUND_COLORS = {RAW['road']: (0.25, 0.25, 0.27), RAW['sidewalk']: (0.68, 0.66, 0.62),
                 RAW['terrain']: (0.45, 0.38, 0.2)}


def make_world(seed: int, length: float = 120.0) -> List[Box]:
    """Boxes along a straight road on the x axis from 0 to ``length`` (per-seed layout)."""
    rng = np.random.default_rng(seed)
    boxes: List[Box] = []

    def add(cx, cy, sx, sy, sz, label, z0=0.0):
        base = np.array(_COLORS[label])
        color = np.clip(base + rng.normal(0, 0.06, 3), 0, 1)
        boxes.append(Box(np.array([cx - sx / 2, cy - sy / 2, z0]),
                         np.array([cx + sx / 2, cy + sy / 2, z0 + sz]), label, color))

    for side in (-1, 1):
        x = -20.0
        while x < length + 20:  # buildings and trees behind the sidewalk
            w = rng.uniform(6, 14)
            if rng.random() < 0.6:
                add(x + w / 2, side * rng.uniform(11, 14), w, rng.uniform(5, 8),
                    rng.uniform(6, 15), RAW['manmade'])
            else:
                add(x + w / 2, side * rng.uniform(8.5, 10), rng.uniform(2, 4),
                    rng.uniform(2, 4), rng.uniform(3, 7), RAW['vegetation'])
            x += w + rng.uniform(1, 4)
        for x in np.arange(rng.uniform(0, 10), length, rng.uniform(12, 20)):  # poles
            add(x, side * 5.8, 0.25, 0.25, rng.uniform(4, 6), RAW['manmade'])
        for x in np.arange(rng.uniform(0, 15), length, rng.uniform(15, 30)):  # barriers
            add(x, side * 4.6, rng.uniform(1.5, 3), 0.4, 1.0, RAW['barrier'])
        for x in np.arange(rng.uniform(0, 8), length, rng.uniform(6, 14)):  # pedestrians
            if rng.random() < 0.5:
                add(x, side * rng.uniform(5.0, 6.2), 0.5, 0.5, rng.uniform(1.6, 1.9),
                    RAW['pedestrian'])
    for x in np.arange(rng.uniform(5, 12), length, rng.uniform(10, 18)):  # parked cars
        side = rng.choice([-1, 1])
        if rng.random() < 0.7:
            add(x, side * 3.0, 4.4, 1.8, 1.5, RAW['car'])
        else:
            add(x, side * 2.9, 8.0, 2.4, 3.2, RAW['truck'])
    return boxes


def cast(origins: np.ndarray, dirs: np.ndarray, boxes: List[Box], max_range: float = 80.0,
         chunk: int = 65536):
    """First hit of each ray with the ground plane z = 0 or a box.

    Returns:
        tuple: distance (N,) (inf when nothing is hit), raw label (N,) (255 for sky), box index
        (N,) (-1 for ground or sky) and hit axis (N,) (0/1/2 for a box face, 2 for the ground).
    """
    n = len(dirs)
    dist = np.full(n, np.inf)
    label = np.full(n, 255, dtype=np.int64)
    box_id = np.full(n, -1, dtype=np.int64)
    axis = np.full(n, 2, dtype=np.int64)
    with np.errstate(divide='ignore', invalid='ignore'):
        t_ground = np.where(dirs[:, 2] < -1e-9, -origins[:, 2] / dirs[:, 2], np.inf)
    hit = t_ground < max_range
    dist[hit] = t_ground[hit]
    gy = origins[:, 1] + t_ground * dirs[:, 1]
    ground_label = np.where(np.abs(gy) < ROAD_HALF, RAW['road'],
                            np.where(np.abs(gy) < SIDEWALK_HALF, RAW['sidewalk'], RAW['terrain']))
    label[hit] = ground_label[hit]
    if boxes:
        lo = np.stack([b.lo for b in boxes])
        hi = np.stack([b.hi for b in boxes])
        for s in range(0, n, chunk):
            o, d = origins[s:s + chunk, None], dirs[s:s + chunk, None]
            with np.errstate(divide='ignore', invalid='ignore'):
                inv = 1.0 / d
                t1, t2 = (lo[None] - o) * inv, (hi[None] - o) * inv
            tmin3 = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf)
            tmax3 = np.nan_to_num(np.maximum(t1, t2), nan=np.inf)
            tmin, tmax = tmin3.max(-1), tmax3.min(-1)
            ok = (tmax >= tmin) & (tmin > 1e-6) & (tmin < max_range)
            tmin = np.where(ok, tmin, np.inf)
            best = tmin.argmin(1)
            tb = tmin[np.arange(len(best)), best]
            closer = tb < dist[s:s + chunk]
            idx = np.flatnonzero(closer) + s
            dist[idx] = tb[closer]
            box_id[idx] = best[closer]
            label[idx] = np.array([b.label for b in boxes])[best[closer]]
            axis[idx] = tmin3[closer, best[closer]].argmax(-1)
    return dist, label, box_id, axis


def lidar_sweep(ego2world: np.ndarray, boxes: List[Box], rng: np.random.Generator,
                beams: int = 32, azimuth_steps: int = 900):
    """A 32-beam sweep in the lidar frame: points (N, 5) = x, y, z, intensity, ring, and the
    raw label of each point (N,)."""
    lidar2ego = pose_matrix(*LIDAR)
    lidar2world = ego2world @ lidar2ego
    elev = np.radians(np.linspace(-30.0, 10.0, beams))
    az = np.linspace(-np.pi, np.pi, azimuth_steps, endpoint=False)
    el, a = np.meshgrid(elev, az, indexing='ij')
    d_lidar = np.stack([np.cos(el) * np.cos(a), np.cos(el) * np.sin(a), np.sin(el)], -1)
    d_lidar = d_lidar.reshape(-1, 3)
    ring = np.repeat(np.arange(beams), azimuth_steps)
    dirs = d_lidar @ lidar2world[:3, :3].T
    origins = np.broadcast_to(lidar2world[:3, 3], dirs.shape)
    dist, label, _, _ = cast(origins, dirs, boxes, max_range=70.0)
    keep = np.isfinite(dist) & (dist > 1.0)
    r = dist[keep] + rng.normal(0, 0.02, keep.sum())
    pts = d_lidar[keep] * r[:, None]
    reflect = {RAW['road']: 0.15, RAW['sidewalk']: 0.3, RAW['terrain']: 0.2, RAW['manmade']: 0.4,
               RAW['vegetation']: 0.25, RAW['barrier']: 0.8, RAW['car']: 0.6, RAW['truck']: 0.5,
               RAW['pedestrian']: 0.35}
    inten = np.array([reflect[int(c)] for c in label[keep]]) * 100 + rng.normal(0, 3, keep.sum())
    out = np.concatenate([pts, np.clip(inten, 0, 255)[:, None], ring[keep, None]], 1)
    return out.astype(np.float32), label[keep].astype(np.uint8)


def _texture(label: np.ndarray, world_pts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A per-class brightness pattern from world coordinates (deterministic per point)."""
    x, y, z = world_pts.T
    pat = np.ones(len(label))
    road = label == RAW['road']
    pat[road] = 1 + 0.15 * np.sin(7.1 * x[road]) * np.sin(5.3 * y[road])
    marks = road & (np.abs(y) < 0.12) & (np.mod(x, 6) < 3)
    pat[marks] = 3.2
    side = label == RAW['sidewalk']
    pat[side] = 0.85 + 0.25 * ((np.floor(x[side] / 0.8) + np.floor(y[side] / 0.8)) % 2)
    man = label == RAW['manmade']
    windows = man & (np.mod(z, 3.0) > 1.2) & (np.mod(z, 3.0) < 2.2) & (
        np.mod(x + y, 2.5) < 1.2)
    pat[windows] = 0.35
    veg = label == RAW['vegetation']
    pat[veg] = 0.7 + 0.5 * np.abs(np.sin(3.7 * x[veg]) * np.cos(4.1 * z[veg] + 2 * y[veg]))
    bar = label == RAW['barrier']
    pat[bar] = np.where(np.mod(x[bar] + y[bar], 1.0) < 0.5, 1.0, 2.2)
    return pat


def render(ego2world: np.ndarray, cam: str, boxes: List[Box], rng: np.random.Generator,
           size: Tuple[int, int] = (225, 400)):
    """RGB image (H, W, 3) uint8 of one camera, its per-pixel raw label (H, W) (255 = sky) and
    its intrinsics at this size."""
    h, w = size
    trans, rot, k = CAMERAS[cam]
    k = np.array(k, dtype=np.float64)
    k[:2] *= w / 1600.0
    cam2world = ego2world @ pose_matrix(trans, rot)
    v, u = np.mgrid[0:h, 0:w]
    pix = np.stack([u.ravel() + 0.5, v.ravel() + 0.5, np.ones(h * w)], 1)
    d_cam = pix @ np.linalg.inv(k).T
    dirs = d_cam @ cam2world[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = np.broadcast_to(cam2world[:3, 3], dirs.shape)
    dist, label, box_id, axis = cast(origins, dirs, boxes, max_range=150.0)
    img = np.zeros((h * w, 3))
    sky = ~np.isfinite(dist)
    img[sky] = np.array([0.55, 0.7, 0.92]) * (0.8 + 0.2 * (v.ravel()[sky] / h))[:, None]
    hit = ~sky
    pts = origins[hit] + dirs[hit] * dist[hit, None]
    base = np.zeros((hit.sum(), 3))
    lab = label[hit]
    bid = box_id[hit]
    for c, col in GROUND_COLORS.items():
        base[(bid < 0) & (lab == c)] = col
    if boxes:
        colors = np.stack([b.color for b in boxes])
        base[bid >= 0] = colors[bid[bid >= 0]]
    shade = np.array([0.75, 0.9, 1.0])[axis[hit]]  # faces along x, y darker than tops/ground
    fog = np.exp(-dist[hit] / 120.0)
    col = base * (_texture(lab, pts, rng) * shade)[:, None]
    col = col * fog[:, None] + (1 - fog[:, None]) * np.array([0.7, 0.75, 0.8])
    img[hit] = col
    img = img + rng.normal(0, 0.02, img.shape)
    img = (np.clip(img, 0, 1) * 255).astype(np.uint8).reshape(h, w, 3)
    return img, label.reshape(h, w), k
