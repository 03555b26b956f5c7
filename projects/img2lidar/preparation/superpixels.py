"""Region maps (SLIC superpixels by default) for every camera image of one or more info files.

Writes one integer map per image to ``<out_dir>/<CAM>/<image stem>.npz`` (compressed uint8 when
the ids fit, uint16 otherwise, int16/int32 when some pixels are unassigned (-1); ``fmt='png'``
for PNG, which reads about 3x slower and cannot hold -1), the layout
:class:`ImageLidarPretrainDataset` reads with ``data_prefix['sp']``, and the folder's sidecar
``superpixels.json`` (what made the maps, :mod:`.regions.sidecar`). Every split a config reads
(the pretraining and its validation infos) can be given at once; an image listed by several
infos is computed once. Images whose map exists are skipped, so a killed run resumes; a folder
whose sidecar names another source or other parameters is refused. Any registered region
generator (:mod:`.regions`) makes the maps: SLIC in parallel processes, network-based ones
(SAM, teacher features) in one process in batches, with reading and writing in threads. The
command line is ``tools/create_superpixels.py``.
"""
import os
import os.path as osp
import pickle
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple, Union

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


def write_labels(path: str, labels: np.ndarray, scale: int = 1) -> None:
    """Write a label map as ``.npz`` (compressed, key ``labels``) or PNG, chosen by the
    suffix; atomically, so a killed run leaves no partial file. A map stored at 1/s of its
    image's resolution (``scale`` s > 1, ``.npz`` only) also records s (key ``scale``; see
    :mod:`projects.img2lidar.datasets.transforms.superpixel_map`).

    Ids >= 0 are stored as uint8 when they fit, else uint16; a map with unassigned pixels
    (-1) as int16 (int32 beyond 32767 ids), which only ``.npz`` holds.

    Raises:
        ValueError: More than 65536 ids, or -1 pixels in a PNG.
    """
    suffix = osp.splitext(path)[1]
    if scale != 1 and suffix != '.npz':
        raise ValueError(f'{path}: only an .npz map records its scale ({scale})')
    lo = int(labels.min()) if labels.size else 0
    hi = int(labels.max()) if labels.size else 0
    if lo < 0:
        if suffix != '.npz':
            raise ValueError(f'{path}: {int((labels < 0).sum())} pixels are unassigned (-1), '
                             'which a PNG cannot hold: write .npz, or fill them')
        labels = labels.astype(np.int16 if hi <= np.iinfo(np.int16).max else np.int32)
    else:
        if hi > np.iinfo(np.uint16).max:
            raise ValueError(f'{path}: {hi + 1} segments do not fit 16 bits')
        labels = labels.astype(np.uint8 if hi <= 255 else np.uint16)
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp' + suffix
    if suffix == '.npz':
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, labels=labels,
                                **({} if scale == 1 else dict(scale=np.int64(scale))))
    elif not cv2.imwrite(tmp, labels):
        raise OSError(f'could not write {tmp}')
    os.replace(tmp, path)


def read_rgb(path: str) -> np.ndarray:
    """An image file as RGB, (H, W, 3) uint8.

    Raises:
        FileNotFoundError: It is missing or unreadable.
    """
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'missing or unreadable image: {path}')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


#: each worker process's generator, built once from its config
_WORKER_GENERATORS: Dict[str, object] = {}


def _worker_generator(cfg_json: str):
    import json

    from .regions import build_region_generator
    if cfg_json not in _WORKER_GENERATORS:
        _WORKER_GENERATORS[cfg_json] = build_region_generator(json.loads(cfg_json))
    return _WORKER_GENERATORS[cfg_json]


def write_at_scale(path: str, labels: np.ndarray, scale: int = 1) -> None:
    """Write a full-resolution map stored at 1/``scale``: pixel [i, j] of the stored map is
    pixel [scale i, scale j] of ``labels`` (exactly the map computed at 1/scale, when the
    labels were upsampled from it by nearest neighbour)."""
    write_labels(path, labels[::scale, ::scale], scale)


def _job(args: Tuple[str, str, str, dict, int]) -> str:
    """Make one map in a worker process: (image, map path, generator config as JSON, the
    image's source record, the map's scale)."""
    img_path, out_path, cfg_json, source, scale = args
    write_at_scale(out_path, _worker_generator(cfg_json).generate(read_rgb(img_path), source),
                   scale)
    return out_path


def image_records(info_file: str, data_root: str, img_prefix: str, out_dir: str,
                  suffix: str = '.npz') -> List[dict]:
    """Every camera image of the info file: ``src`` (image path), ``dst`` (map path) and
    ``source`` (``cam``, ``stem``, ``name``, ``img_path``, ``token``,
    ``sample_data_token``: what a precomputed map's file name can be made of)."""
    with open(info_file, 'rb') as f:
        infos = pickle.load(f)
    records = []
    for info in infos['data_list']:
        for cam, img in info.get('images', {}).items():
            if 'img_path' not in img:
                continue
            src = osp.join(data_root, img_prefix.format(cam=cam), img['img_path'])
            name = osp.basename(img['img_path'])
            stem = osp.splitext(name)[0]
            records.append(dict(src=src, dst=osp.join(out_dir, cam, stem + suffix), source=dict(
                cam=cam, stem=stem, name=name, img_path=img['img_path'],
                token=info.get('token'), sample_data_token=img.get('sample_data_token'))))
    return records


def list_jobs(info_file: str, data_root: str, img_prefix: str, out_dir: str,
              suffix: str = '.npz'):
    """(image path, map path) for every camera image of the info file."""
    return [(r['src'], r['dst'])
            for r in image_records(info_file, data_root, img_prefix, out_dir, suffix)]


def unique_records(info_files: Sequence[str], data_root: str, img_prefix: str, out_dir: str,
                   suffix: str = '.npz') -> List[dict]:
    """:func:`image_records` of every info file, each map once (in the order of the first
    info that lists it)."""
    records: Dict[str, dict] = {}
    for info_file in info_files:
        for r in image_records(info_file, data_root, img_prefix, out_dir, suffix):
            records.setdefault(r['dst'], r)
    return list(records.values())


def unique_jobs(info_files: Sequence[str], data_root: str, img_prefix: str, out_dir: str,
                suffix: str = '.npz') -> List[Tuple[str, str]]:
    """(image path, map path) of every camera image of the info files, each map once (in the
    order of the first info that lists it)."""
    return [(r['src'], r['dst'])
            for r in unique_records(info_files, data_root, img_prefix, out_dir, suffix)]


#: the suffixes of stored maps
MAP_SUFFIXES = ('.npz', '.npy', '.png')


def _folder_has_maps(folder: str) -> bool:
    """Whether a folder holds any map file in its camera folders (where the tool writes)."""
    if not osp.isdir(folder):
        return False
    return any(entry.is_dir() and any(n.endswith(MAP_SUFFIXES) for n in os.listdir(entry.path))
               for entry in os.scandir(folder))


def claim_folder(out_dir: str, spec: dict, fmt: str, log=print) -> None:
    """Check a folder's sidecar against the generator that is about to write into it, or
    write one.

    A folder with a sidecar must be continued with the same generator, parameters and
    checkpoint (library versions may differ: logged). A folder without one is given one,
    unless it holds maps already (their source is unknown: logged, and left without).

    Raises:
        SuperpixelSourceError: The sidecar names another source or other parameters.
    """
    from .regions.sidecar import (SuperpixelSourceError, describe, read_sidecar,
                                  sidecar_content, sidecar_path, spec_differences,
                                  write_sidecar)
    content = sidecar_content(spec, fmt)
    existing = read_sidecar(out_dir)
    if existing is None:
        if _folder_has_maps(out_dir):
            log(f'warning: {out_dir} holds maps but no superpixels.json; what made them is '
                'unknown, so no sidecar is written (a pretraining run accepts the folder with '
                'a warning). Use a new --out-dir to get one')
        else:
            write_sidecar(out_dir, content)
        return
    diffs = spec_differences(existing, spec)
    if diffs:
        raise SuperpixelSourceError(
            f'{sidecar_path(out_dir)}: this folder holds maps of {describe(existing)}, this run '
            f'would add maps of another source ({"; ".join(diffs)}). Use another --out-dir, or '
            'the options the folder was made with')
    if existing.get('versions') != content['versions']:
        log(f'note: {out_dir} was started with other library versions '
            f'({existing.get("versions")}; now {content["versions"]})')


def _run_in_processes(cfg: dict, todo: List[dict], workers: int, progress: bool,
                      map_scale: int = 1) -> None:
    """SLIC-like generators: one process per worker, each building its own generator."""
    import json

    from mmengine.utils import track_parallel_progress, track_progress
    cfg_json = json.dumps(cfg, sort_keys=True)
    jobs = [(r['src'], r['dst'], cfg_json, r['source'], map_scale) for r in todo]
    if workers > 1:
        track_parallel_progress(_job, jobs, nproc=workers, chunksize=4)
    elif progress:
        track_progress(_job, jobs)
    else:
        for job in jobs:
            _job(job)


def _run_in_batches(generator, todo: List[dict], batch_size: int, threads: int,
                    progress: bool, map_scale: int = 1) -> None:
    """Network generators: one process, ``batch_size`` images per call, the next batch read
    and the previous maps written by ``threads`` threads meanwhile."""
    from mmengine.utils import ProgressBar
    bar = ProgressBar(len(todo)) if progress else None
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        reading = [pool.submit(read_rgb, r['src']) for r in batches[0]] if batches else []
        writing: list = []
        for k, batch in enumerate(batches):
            images = [f.result() for f in reading]
            if k + 1 < len(batches):
                reading = [pool.submit(read_rgb, r['src']) for r in batches[k + 1]]
            maps = generator.generate_batch(images, [r['source'] for r in batch])
            writing += [pool.submit(write_at_scale, r['dst'], m, map_scale)
                        for r, m in zip(batch, maps)]
            while len(writing) > 4 * batch_size:  # bound the maps held in memory
                writing.pop(0).result()
            if bar is not None:
                bar.update(len(batch))
        for f in writing:
            f.result()
    if bar is not None:
        print()


def create_superpixels(info_file: Union[str, Sequence[str]], data_root: str, out_dir: str,
                       img_prefix: str = 'samples/{cam}', workers: int = 1, fmt: str = 'npz',
                       progress: bool = True, generator: str = 'slic',
                       checkpoint: Optional[str] = None, batch_size: int = 1,
                       map_scale: int = 1, **params) -> Tuple[int, int]:
    """Compute the maps of every camera image of the info file(s) that has none yet.

    Args:
        info_file (str | Sequence[str]): mmdet3d info file(s) (.pkl); an image listed by
            several is computed once.
        data_root (str): Root the image paths are joined to.
        out_dir (str): Where the maps go (``<out_dir>/<CAM>/<stem>.<fmt>``) and the sidecar.
        img_prefix (str): Image folder under the data root; ``{cam}`` is the camera name.
        workers (int): Processes (threads for reading and writing, with a network
            generator). Defaults to 1.
        fmt (str): ``'npz'`` (default) or ``'png'``.
        progress (bool): Show mmengine's progress bar. Defaults to True.
        generator (str): A registered region generator: ``'slic'`` (default), ``'sam'``,
            ``'teacher_kmeans'``, ``'precomputed'``.
        checkpoint (str, optional): The generator's weights (a file or a folder).
        batch_size (int): Images per call of a network generator. Defaults to 1.
        map_scale (int): Store each map at 1/s of its image's resolution, recording s
            (``.npz`` only; :func:`write_at_scale`). With SLIC's ``downscale=s`` nothing is
            lost: the map is kept as SLIC computed it. Defaults to 1.
        **params: The generator's arguments (for SLIC: ``n_segments``, ``compactness``,
            ``sigma``, ``downscale``, ``preprocess``).

    Returns:
        tuple[int, int]: Distinct images listed and maps computed now.

    Raises:
        SuperpixelSourceError: ``out_dir`` holds maps of another source.
    """
    from .regions import build_region_generator
    if int(map_scale) != map_scale or map_scale < 1 or (map_scale != 1 and fmt != 'npz'):
        raise ValueError(f'map_scale must be an integer >= 1 (with fmt npz), got {map_scale} '
                         f'({fmt})')
    map_scale = int(map_scale)
    info_files = [info_file] if isinstance(info_file, str) else list(info_file)
    records = unique_records(info_files, data_root, img_prefix, out_dir, '.' + fmt)
    cfg = dict(type=generator, **params)
    if checkpoint is not None:
        cfg['checkpoint'] = checkpoint
    gen = build_region_generator(cfg)
    gen.prepare([r['src'] for r in records])
    claim_folder(out_dir, gen.spec(), fmt, log=print if progress else (lambda msg: None))
    todo = [r for r in records if not osp.isfile(r['dst'])]
    if progress:
        how = (f'in batches of {batch_size}' if gen.uses_torch else f'with {workers} workers')
        print(f'{len(info_files)} info file(s), {len(records)} images, '
              f'{len(records) - len(todo)} already done, {len(todo)} to compute {how}')
    if todo:
        if gen.uses_torch:
            _run_in_batches(gen, todo, batch_size, workers, progress, map_scale)
        else:
            _run_in_processes(cfg, todo, workers, progress, map_scale)
    if progress and gen.may_leave_unassigned:
        print('these maps can hold unassigned pixels (-1): pretrain with '
              "LoadMultiViewImagesAndSuperpixels(negative_superpixels='ignore')")
    return len(records), len(todo)
