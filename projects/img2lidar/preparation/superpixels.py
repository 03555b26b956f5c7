"""SLIC superpixels for every camera image of one or more info files (SLidR's parameters).

Writes one integer map per image to ``<out_dir>/<CAM>/<image stem>.npz`` (compressed uint8 when
the ids fit, uint16 otherwise; ``fmt='png'`` for PNG, which reads about 3x slower), the layout
:class:`ImageLidarPretrainDataset` reads with ``data_prefix['sp']``. Every split a config reads
(the pretraining and its validation infos) can be given at once; an image listed by several
infos is computed once. Images whose map exists are skipped, so a killed run resumes. The
command line is ``tools/create_superpixels.py``.
"""
import os
import os.path as osp
import pickle
from typing import List, Sequence, Tuple, Union

import cv2
import numpy as np


def slic_superpixels(img_bgr: np.ndarray, n_segments: int = 150, compactness: float = 6.0,
                     sigma: float = 3.0, downscale: float = 1.0,
                     preprocess: str = 'opencv') -> np.ndarray:
    """SLIC labels of one image, (H, W) int32, ids from 0.

    Args:
        img_bgr (np.ndarray): Image as OpenCV reads it, (H, W, 3) uint8.
        n_segments, compactness, sigma: skimage's SLIC parameters (SLidR's defaults).
        downscale (float): Compute at 1 / downscale resolution (INTER_AREA, sigma / downscale)
            and upsample the labels by nearest neighbour. 1 = full resolution.
        preprocess (str): 'skimage' runs ``skimage.segmentation.slic`` as is; 'opencv' (the
            default) does its two preprocessing steps, RGB -> CIELAB and the Gaussian blur of
            the Lab image (truncated at 4 sigma, reflected borders), with OpenCV in float32,
            then runs skimage's SLIC iterations on the result: the same algorithm, about 2x
            faster at full resolution.
    """
    from skimage.segmentation import slic
    rgb = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    if downscale != 1:
        rgb = cv2.resize(rgb, (int(round(w / downscale)), int(round(h / downscale))),
                         interpolation=cv2.INTER_AREA)
        sigma = sigma / downscale
    if preprocess == 'skimage':
        labels = slic(rgb, n_segments=n_segments, compactness=compactness, sigma=sigma,
                      start_label=0)
    elif preprocess == 'opencv':
        # skimage stretches the RGB values to [0, 1] (one min and max over all channels)
        # before converting to Lab
        rgb = rgb.astype(np.float32)
        lo, hi = float(rgb.min()), float(rgb.max())
        lab = cv2.cvtColor((rgb - lo) / max(hi - lo, 1e-12), cv2.COLOR_RGB2LAB)
        if sigma > 0:
            radius = int(4.0 * sigma + 0.5)  # scipy's truncate=4.0
            lab = cv2.GaussianBlur(lab, (2 * radius + 1, 2 * radius + 1), sigma,
                                   borderType=cv2.BORDER_REFLECT)
        # skimage stretches this input again to [0, 1] (divides it by its range r) and then
        # multiplies colours by 1 / compactness: compactness / r undoes the stretch
        span = float(lab.max() - lab.min())
        labels = slic(lab, n_segments=n_segments, compactness=compactness / span, sigma=0,
                      convert2lab=False, channel_axis=-1, start_label=0)
    else:
        raise ValueError(f"preprocess must be 'opencv' or 'skimage', got {preprocess!r}")
    if downscale != 1:
        labels = cv2.resize(labels.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
    return labels.astype(np.int32)


def write_labels(path: str, labels: np.ndarray) -> None:
    """Write a label map as uint8/uint16 ``.npz`` (compressed, key ``labels``) or PNG, chosen
    by the suffix; atomically, so a killed run leaves no partial file."""
    if labels.max() > np.iinfo(np.uint16).max:
        raise ValueError(f'{path}: {labels.max() + 1} segments do not fit 16 bits')
    labels = labels.astype(np.uint8 if labels.max() <= 255 else np.uint16)
    os.makedirs(osp.dirname(path), exist_ok=True)
    suffix = osp.splitext(path)[1]
    tmp = path + '.tmp' + suffix
    if suffix == '.npz':
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, labels=labels)
    elif not cv2.imwrite(tmp, labels):
        raise OSError(f'could not write {tmp}')
    os.replace(tmp, path)


def _job(args: Tuple[str, str, dict]) -> str:
    img_path, out_path, params = args
    img = cv2.imread(img_path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'missing or unreadable image: {img_path}')
    write_labels(out_path, slic_superpixels(img, **params))
    return out_path


def list_jobs(info_file: str, data_root: str, img_prefix: str, out_dir: str,
              suffix: str = '.npz'):
    """(image path, map path) for every camera image of the info file."""
    with open(info_file, 'rb') as f:
        infos = pickle.load(f)
    jobs = []
    for info in infos['data_list']:
        for cam, img in info.get('images', {}).items():
            if 'img_path' not in img:
                continue
            src = osp.join(data_root, img_prefix.format(cam=cam), img['img_path'])
            stem = osp.splitext(osp.basename(img['img_path']))[0]
            jobs.append((src, osp.join(out_dir, cam, stem + suffix)))
    return jobs


def unique_jobs(info_files: Sequence[str], data_root: str, img_prefix: str, out_dir: str,
                suffix: str = '.npz') -> List[Tuple[str, str]]:
    """(image path, map path) of every camera image of the info files, each map once (in the
    order of the first info that lists it)."""
    jobs = {}
    for info_file in info_files:
        for src, dst in list_jobs(info_file, data_root, img_prefix, out_dir, suffix):
            jobs.setdefault(dst, src)
    return [(src, dst) for dst, src in jobs.items()]


def create_superpixels(info_file: Union[str, Sequence[str]], data_root: str, out_dir: str,
                       img_prefix: str = 'samples/{cam}', workers: int = 1, fmt: str = 'npz',
                       progress: bool = True, **params) -> Tuple[int, int]:
    """Compute the maps of every camera image of the info file(s) that has none yet.

    Args:
        info_file (str | Sequence[str]): mmdet3d info file(s) (.pkl); an image listed by
            several is computed once.
        data_root (str): Root the image paths are joined to.
        out_dir (str): Where the maps go (``<out_dir>/<CAM>/<stem>.<fmt>``).
        img_prefix (str): Image folder under the data root; ``{cam}`` is the camera name.
        workers (int): Processes. Defaults to 1.
        fmt (str): ``'npz'`` (default) or ``'png'``.
        progress (bool): Show mmengine's progress bar. Defaults to True.
        **params: :func:`slic_superpixels` arguments (``n_segments``, ``compactness``,
            ``sigma``, ``downscale``, ``preprocess``).

    Returns:
        tuple[int, int]: Distinct images listed and maps computed now.
    """
    from mmengine.utils import track_parallel_progress, track_progress
    info_files = [info_file] if isinstance(info_file, str) else list(info_file)
    jobs = unique_jobs(info_files, data_root, img_prefix, out_dir, '.' + fmt)
    todo = [(src, dst, params) for src, dst in jobs if not osp.isfile(dst)]
    if progress:
        print(f'{len(info_files)} info file(s), {len(jobs)} images, {len(jobs) - len(todo)} '
              f'already done, {len(todo)} to compute with {workers} workers')
    if todo:
        if workers > 1:
            track_parallel_progress(_job, todo, nproc=workers, chunksize=4)
        elif progress:
            track_progress(_job, todo)
        else:
            for job in todo:
                _job(job)
    return len(jobs), len(todo)
