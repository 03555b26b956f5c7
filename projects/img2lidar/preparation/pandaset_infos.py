"""mmdet3d v1.1 info files, ego-frame point files and label files of a PandaSet root.

The command line is ``tools/create_pandaset_infos.py``. PandaSet stores each frame's points in
world coordinates (``<seq>/lidar/<NN>.pkl.gz``, a pickled pandas DataFrame with columns x, y,
z, i, t, d; ``d == 0`` Pandar64 360-degree, ``d == 1`` PandarGT forward-facing), one pose per
frame of the sequence for the lidar (the ego/Pandar64 pose) and for each camera (both
camera-to-world, position + heading quaternion w, x, y, z), and the semantic labels as one row
per point (``annotations/semseg/<NN>.pkl.gz``, column ``class``, ids of ``classes.json``).
:func:`create_pandaset_infos` writes, under ``out_dir``:

- ``points/<seq>_<NN>.bin``: float32, the columns of :data:`POINT_COLUMNS`, the points of the
  chosen lidar(s) (:data:`LIDARS`) moved into the ego frame of that frame (world points moved
  by the inverse of ``lidar/poses.json``'s pose);
- ``labels/<seq>_<NN>.bin``: uint8, PandaSet's raw class id of each point, in the same order
  (when the sequence has semseg annotations); the mapping to evaluation classes is
  :class:`~projects.img2lidar.datasets.PandaSetSegDataset`'s;
- ``camera/<cam>/<seq>_<NN>.jpg``: a relative symbolic link (or a copy) to each camera image,
  so that every image of the dataset has a unique file name, as the superpixel maps
  (``<sp>/<cam>/<image stem>``) need: PandaSet names the images of every sequence 00.jpg to
  79.jpg;
- ``<prefix>_<split>.pkl``: one info file per split of sequences, with ``lidar_points``
  (``lidar_path``, ``num_pts_feats``, ``lidar2ego`` = identity, since the points are stored in
  the ego frame), ``ego2global`` (the lidar pose), ``pts_semantic_mask_path``,
  ``images.<cam>.{img_path, cam2img (3x3), lidar2cam (4x4), cam2ego, timestamp}``, and
  ``sequence``, ``frame``, ``token`` (``<seq>_<NN>``), ``timestamp``; and its checksum
  sidecar ``<prefix>_<split>.pkl.sha256``, which the datasets check before reading it
  (:mod:`projects.img2lidar.datasets.info_file_io`).

``lidar2cam = inverse(camera pose) @ ego pose``: both poses are world poses at their own
timestamps (the cameras fire about 50 ms before the lidar frame's timestamp), so the ego motion
between the two is folded in, as in this project's nuScenes infos. Paths in the infos are
relative to the data prefixes of ``configs/_base_/datasets/pandaset_layout.py``
(``points``, ``labels``, ``camera/<cam>``).
"""
import json
import os
import os.path as osp
import shutil
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from pyquaternion import Quaternion

from ..datasets.info_file_io import write_info_file

#: the float32 columns of the written point files, in order. The student reads the first four
#: (x, y, z, intensity), as from nuScenes; 'lidar_id' is PandaSet's ``d`` (0 Pandar64,
#: 1 PandarGT); 'time_offset' is PandaSet's ``t`` minus the frame's lidar timestamp, in seconds
#: (about -0.1 to 0.05; the absolute time does not fit float32)
POINT_COLUMNS = ('x', 'y', 'z', 'intensity', 'lidar_id', 'time_offset')
#: lidar choice -> the values of PandaSet's ``d`` column kept
LIDARS = {'pandar64': (0, ), 'pandargt': (1, ), 'both': (0, 1)}
#: the six cameras of PandaSet's rig, in the order the infos list them; camera folders with
#: other names are listed after them, sorted
CAMERAS = ('front_camera', 'front_left_camera', 'front_right_camera', 'left_camera',
           'right_camera', 'back_camera')


@dataclass
class CameraCalibration:
    """One camera of a sequence: its folder, ``cam2img`` (3x3), and per frame its pose
    (4x4) and timestamp."""
    name: str
    folder: str
    cam2img: np.ndarray
    poses: List[np.ndarray]
    timestamps: List[float]


@dataclass
class SequenceCalibration:
    """What a sequence's frames share: the lidar poses and timestamps, the cameras, the ids
    of ``classes.json`` (None without semseg annotations)."""
    name: str
    folder: str
    ego_poses: List[np.ndarray]
    lidar_timestamps: List[float]
    cameras: List[CameraCalibration]
    class_ids: Optional[np.ndarray]


def read_json(path: str) -> Any:
    """A JSON file's content; a missing or malformed file is an error naming it."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'PandaSet file not found: {path}')
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{path}: not valid JSON ({e})') from None


def pose_matrix(pose: dict, path: str = '<pose>') -> np.ndarray:
    """The 4x4 sensor-to-world transform of one PandaSet pose.

    Args:
        pose (dict): ``{'position': {x, y, z}, 'heading': {w, x, y, z}}``.
        path (str): The file it comes from, for the error message.

    Raises:
        ValueError: A key is missing.
    """
    try:
        q = pose['heading']
        t = pose['position']
        m = np.eye(4)
        m[:3, :3] = Quaternion(q['w'], q['x'], q['y'], q['z']).rotation_matrix
        m[:3, 3] = [t['x'], t['y'], t['z']]
    except (KeyError, TypeError) as e:
        raise ValueError(f'{path}: a pose needs position x, y, z and heading w, x, y, z '
                         f'(missing {e})') from None
    return m


def intrinsic_matrix(intrinsics: dict, path: str = '<intrinsics>') -> np.ndarray:
    """``cam2img`` (3x3) from PandaSet's ``{fx, fy, cx, cy}``."""
    try:
        return np.array([[intrinsics['fx'], 0.0, intrinsics['cx']],
                         [0.0, intrinsics['fy'], intrinsics['cy']], [0.0, 0.0, 1.0]])
    except KeyError as e:
        raise ValueError(f'{path}: intrinsics need fx, fy, cx, cy (missing {e})') from None


def find_sequences(root: str) -> List[str]:
    """The sequence folders of a PandaSet root (those with ``lidar/poses.json``), sorted."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'PandaSet root not found: {root}')
    return sorted(d for d in os.listdir(root)
                  if osp.isfile(osp.join(root, d, 'lidar', 'poses.json')))


def list_frames(seq_dir: str) -> List[str]:
    """The frame stems (``'00'``, ``'01'``, ...) of the lidar files of a sequence, sorted."""
    lidar_dir = osp.join(seq_dir, 'lidar')
    return sorted(f[:-len('.pkl.gz')] for f in os.listdir(lidar_dir) if f.endswith('.pkl.gz'))


def list_cameras(seq_dir: str) -> List[str]:
    """The camera folders of a sequence: those of :data:`CAMERAS` first, in that order."""
    cam_dir = osp.join(seq_dir, 'camera')
    present = sorted(d for d in os.listdir(cam_dir)
                     if osp.isdir(osp.join(cam_dir, d))) if osp.isdir(cam_dir) else []
    return [c for c in CAMERAS if c in present] + [c for c in present if c not in CAMERAS]


def load_camera(seq_dir: str, name: str) -> CameraCalibration:
    """The intrinsics, poses and timestamps of one camera folder."""
    folder = osp.join(seq_dir, 'camera', name)
    intr_path, poses_path = osp.join(folder, 'intrinsics.json'), osp.join(folder, 'poses.json')
    return CameraCalibration(
        name=name, folder=folder,
        cam2img=intrinsic_matrix(read_json(intr_path), intr_path),
        poses=[pose_matrix(p, poses_path) for p in read_json(poses_path)],
        timestamps=[float(t) for t in read_json(osp.join(folder, 'timestamps.json'))])


def load_sequence(root: str, name: str) -> SequenceCalibration:
    """Read the calibration shared by the frames of one sequence."""
    folder = osp.join(root, name)
    poses_path = osp.join(folder, 'lidar', 'poses.json')
    classes_path = osp.join(folder, 'annotations', 'semseg', 'classes.json')
    class_ids = None
    if osp.isfile(classes_path):
        class_ids = np.array(sorted(int(k) for k in read_json(classes_path)))
    return SequenceCalibration(
        name=name, folder=folder,
        ego_poses=[pose_matrix(p, poses_path) for p in read_json(poses_path)],
        lidar_timestamps=[float(t) for t in
                          read_json(osp.join(folder, 'lidar', 'timestamps.json'))],
        cameras=[load_camera(folder, c) for c in list_cameras(folder)],
        class_ids=class_ids)


def frame_entry(items: list, index: int, path: str, what: str):
    """``items[index]``, or an error naming the file that has too few entries."""
    if index >= len(items):
        raise IndexError(f'{path}: {len(items)} {what}, none for frame {index:02d}')
    return items[index]


def read_lidar_frame(path: str) -> np.ndarray:
    """PandaSet's lidar DataFrame as (N, 6) float64: x, y, z, i, t, d (world coordinates)."""
    import pandas as pd
    if not osp.isfile(path):
        raise FileNotFoundError(f'PandaSet lidar file not found: {path}')
    df = pd.read_pickle(path)
    missing = [c for c in ('x', 'y', 'z', 'i', 't', 'd') if c not in df.columns]
    if missing:
        raise ValueError(f'{path}: lidar DataFrame lacks columns {missing} '
                         f'(has {list(df.columns)})')
    return df[['x', 'y', 'z', 'i', 't', 'd']].to_numpy(dtype=np.float64)


def read_semseg_frame(path: str, num_points: int, class_ids: np.ndarray) -> np.ndarray:
    """PandaSet's per-point class ids of one frame, (N,) uint8.

    Raises:
        ValueError: The file has no ``class`` column, another number of rows than the lidar
            file, or ids that are neither 0 (unlabelled) nor in ``classes.json``.
    """
    import pandas as pd
    df = pd.read_pickle(path)
    if 'class' not in df.columns:
        raise ValueError(f'{path}: semseg DataFrame lacks the column class '
                         f'(has {list(df.columns)})')
    labels = df['class'].to_numpy()
    if len(labels) != num_points:
        raise ValueError(f'{path}: {len(labels)} labels for the {num_points} points of its '
                         'lidar file (one per point expected)')
    unknown = np.setdiff1d(np.unique(labels), np.concatenate([[0], class_ids]))
    if len(unknown):
        raise ValueError(f'{path}: class ids {unknown.tolist()} are not in classes.json')
    return labels.astype(np.uint8)


def world_to_ego(xyz: np.ndarray, ego2world: np.ndarray) -> np.ndarray:
    """Move world points (N, 3) into the ego frame: ``inverse(ego2world)`` applied."""
    world2ego = np.linalg.inv(ego2world)
    return xyz @ world2ego[:3, :3].T + world2ego[:3, 3]


def write_atomic(path: str, array: np.ndarray) -> None:
    """Write an array's raw bytes; a killed run leaves no partial file."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    array.tofile(tmp)
    os.replace(tmp, path)


def place_image(src: str, dst: str, images: str) -> None:
    """Make ``dst`` a relative symbolic link to ``src`` (``images='link'``) or a copy."""
    os.makedirs(osp.dirname(dst), exist_ok=True)
    if osp.lexists(dst):
        os.remove(dst)
    if images == 'link':
        os.symlink(osp.relpath(osp.abspath(src), osp.dirname(osp.abspath(dst))), dst)
    else:
        shutil.copyfile(src, dst)


def convert_frame(seq: SequenceCalibration, stem: str, out_dir: str, lidar: str,
                  images: str = 'link') -> dict:
    """Write the point, label and image files of one frame and return its info entry
    (without ``sample_idx``).

    Args:
        seq (SequenceCalibration): The frame's sequence.
        stem (str): The frame's file stem (``'00'``...).
        out_dir (str): The output root.
        lidar (str): A key of :data:`LIDARS`.
        images (str): ``'link'`` or ``'copy'``.
    """
    index = int(stem)
    token = f'{seq.name}_{stem}'
    lidar_path = osp.join(seq.folder, 'lidar', f'{stem}.pkl.gz')
    raw = read_lidar_frame(lidar_path)
    keep = np.isin(raw[:, 5].astype(np.int64), LIDARS[lidar])
    ego2world = frame_entry(seq.ego_poses, index,
                            osp.join(seq.folder, 'lidar', 'poses.json'), 'poses')
    stamp = frame_entry(seq.lidar_timestamps, index,
                        osp.join(seq.folder, 'lidar', 'timestamps.json'), 'timestamps')
    points = np.empty((int(keep.sum()), len(POINT_COLUMNS)), dtype=np.float32)
    points[:, :3] = world_to_ego(raw[keep, :3], ego2world)
    points[:, 3] = raw[keep, 3]
    points[:, 4] = raw[keep, 5]
    points[:, 5] = raw[keep, 4] - stamp
    write_atomic(osp.join(out_dir, 'points', token + '.bin'), points)
    info = dict(
        token=token, sequence=seq.name, frame=index, timestamp=stamp,
        ego2global=ego2world.tolist(),
        lidar_points=dict(lidar_path=token + '.bin', num_pts_feats=len(POINT_COLUMNS),
                          lidar2ego=np.eye(4).tolist()),
        images={})
    semseg_path = osp.join(seq.folder, 'annotations', 'semseg', f'{stem}.pkl.gz')
    if seq.class_ids is not None and osp.isfile(semseg_path):
        labels = read_semseg_frame(semseg_path, len(raw), seq.class_ids)[keep]
        write_atomic(osp.join(out_dir, 'labels', token + '.bin'), labels)
        info['pts_semantic_mask_path'] = token + '.bin'
    for cam in seq.cameras:
        img = osp.join(cam.folder, f'{stem}.jpg')
        if not osp.isfile(img):
            continue
        cam2world = frame_entry(cam.poses, index, osp.join(cam.folder, 'poses.json'), 'poses')
        place_image(img, osp.join(out_dir, 'camera', cam.name, token + '.jpg'), images)
        info['images'][cam.name] = dict(
            img_path=token + '.jpg',
            cam2img=cam.cam2img.tolist(),
            lidar2cam=(np.linalg.inv(cam2world) @ ego2world).tolist(),
            cam2ego=(np.linalg.inv(ego2world) @ cam2world).tolist(),
            timestamp=frame_entry(cam.timestamps, index,
                                  osp.join(cam.folder, 'timestamps.json'), 'timestamps'))
    return info


def resolve_splits(sequences: Sequence[str],
                   splits: Optional[Dict[str, Sequence[str]]]) -> Dict[str, List[str]]:
    """The sequences of each split; ``None`` makes one split ``'all'`` of every sequence.

    Raises:
        ValueError: A split names a sequence that the root does not have.
    """
    if splits is None:
        return dict(all=list(sequences))
    found = set(sequences)
    out = {}
    for split, names in splits.items():
        missing = sorted(set(names) - found)
        if missing:
            raise ValueError(f'split {split!r} names sequences the root lacks: {missing} '
                             f'(found {sorted(found)})')
        out[split] = list(names)
    return out


def create_pandaset_infos(root: str, out_dir: str,
                          splits: Optional[Dict[str, Sequence[str]]] = None,
                          lidar: str = 'pandar64', prefix: str = 'pandaset_infos',
                          images: str = 'link', progress: bool = True) -> Dict[str, str]:
    """Convert a PandaSet root (see the module doc).

    Args:
        root (str): PandaSet root; every sub-folder with ``lidar/poses.json`` is a sequence.
        out_dir (str): Where the files go. Use one per lidar choice: the point files of
            another choice would overwrite these.
        splits (dict[str, Sequence[str]], optional): Sequence names of each split; None
            writes one split ``'all'`` of every sequence found.
        lidar (str): ``'pandar64'``, ``'pandargt'`` or ``'both'``. Defaults to 'pandar64'.
        prefix (str): Info file name prefix. Defaults to 'pandaset_infos'.
        images (str): ``'link'`` (relative symbolic links, the default) or ``'copy'``.
        progress (bool): Show mmengine's progress bar. Defaults to True.

    Returns:
        dict[str, str]: The info file written for each split.
    """
    from mmengine.utils import ProgressBar
    if lidar not in LIDARS:
        raise ValueError(f'lidar must be one of {sorted(LIDARS)}, got {lidar!r}')
    if images not in ('link', 'copy'):
        raise ValueError(f"images must be 'link' or 'copy', got {images!r}")
    by_split = resolve_splits(find_sequences(root), splits)
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for split, names in by_split.items():
        seqs = [load_sequence(root, n) for n in names]
        frames = [(s, stem) for s in seqs for stem in list_frames(s.folder)]
        if progress:
            print(f'{split}: {len(names)} sequences, {len(frames)} frames ({lidar})')
            bar = ProgressBar(len(frames))
        data_list = []
        for i, (seq, stem) in enumerate(frames):
            info = convert_frame(seq, stem, out_dir, lidar, images)
            data_list.append(dict(sample_idx=i, **info))
            if progress:
                bar.update()
        path = osp.join(out_dir, f'{prefix}_{split}.pkl')
        write_info_file(path, dict(metainfo=dict(dataset='pandaset', info_version='1.1',
                                                 split=split, sequences=names, lidar=lidar,
                                                 point_columns=POINT_COLUMNS),
                                   data_list=data_list))
        if progress:
            labelled = sum('pts_semantic_mask_path' in d for d in data_list)
            print(f'\nwrote {path} ({labelled} of {len(data_list)} frames labelled)')
        written[split] = path
    return written
