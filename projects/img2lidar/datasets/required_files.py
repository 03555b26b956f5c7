"""The files a built dataset reads, by kind, and which of them are missing (a stat, no decoding).

A file is required when a loading transform of the dataset's pipeline reads it; its path is the
one the dataset itself computed (``parse_data_info`` joins the data root and prefixes), never a
path rebuilt here. The kinds and the transforms that read them:

============== ================================================ ===============================
kind           read by                                          path in the data info
============== ================================================ ===============================
points         ``LoadLidarPoints``; mmdet3d's                   ``lidar_path``;
               ``LoadPointsFromFile``                           ``lidar_points.lidar_path``
sweeps         mmdet3d's ``LoadPointsFromMultiSweeps``          ``lidar_sweeps[*].lidar_points
                                                                .lidar_path``
images         ``LoadMultiViewImagesAndSuperpixels``;           ``img_paths``;
               mmdet3d's ``LoadMultiViewImageFromFiles``,       ``images.<cam>.img_path``;
               ``LoadImageFromFileMono3D``; mmcv's              the camera it reads;
               ``LoadImageFromFile``                            ``img_path``
superpixels    ``LoadMultiViewImagesAndSuperpixels``            ``sp_paths``
               (``with_superpixels=True``)
labels         mmdet3d's ``LoadAnnotations3D``                  ``pts_semantic_mask_path``
               (``with_seg_3d=True``)
instance_masks mmdet3d's ``LoadAnnotations3D``                  ``pts_instance_mask_path``
               (``with_mask_3d=True``)
============== ================================================ ===============================

That covers this project's datasets (``ImageLidarPretrainDataset``, ``NuScenesLidarSegDataset``,
``PandaSetSegDataset``, ``SemanticKittiFewShotDataset``) and mmdet3d's ``Det3DDataset`` and
``Seg3DDataset`` subclasses; mmengine's dataset wrappers (``ConcatDataset``, ``RepeatDataset``,
``ClassBalancedDataset``, and any wrapper holding ``dataset`` or ``datasets``) are walked
recursively. Within a sample, ``images[i]`` and ``superpixels[i]`` belong to the same camera.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Sequence

from mmcv.transforms import LoadImageFromFile
from mmdet3d.datasets.transforms import (LoadAnnotations3D, LoadImageFromFileMono3D,
                                         LoadMultiViewImageFromFiles, LoadPointsFromFile,
                                         LoadPointsFromMultiSweeps)
from mmengine.dataset import BaseDataset

from .transforms import LoadLidarPoints, LoadMultiViewImagesAndSuperpixels

#: every kind, in the order reports list them
KINDS = ('points', 'sweeps', 'images', 'superpixels', 'labels', 'instance_masks')


def leaf_datasets(dataset) -> List[BaseDataset]:
    """The datasets that hold samples, through wrappers (``datasets`` / ``dataset``) of any
    depth, each fully initialised (wrappers may build theirs lazily)."""
    inner = getattr(dataset, 'datasets', None)
    if inner is not None:
        return [leaf for d in inner for leaf in leaf_datasets(d)]
    inner = getattr(dataset, 'dataset', None)
    if inner is not None:
        return leaf_datasets(inner)
    if isinstance(dataset, BaseDataset):
        dataset.full_init()
    return [dataset]


def loading_transforms(dataset) -> List[object]:
    """The transforms of the dataset's pipeline (nested ``transforms`` lists included)."""

    def walk(transforms) -> Iterator[object]:
        for t in transforms or []:
            yield t
            inner = getattr(t, 'transforms', None)
            if isinstance(inner, (list, tuple)):
                yield from walk(inner)
            elif inner is not None:
                yield from walk(getattr(inner, 'transforms', None))

    pipeline = getattr(dataset, 'pipeline', None)
    return list(walk(getattr(pipeline, 'transforms', None)))


def _as_list(value) -> List[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _mono_camera_image(info: dict) -> List[str]:
    """The image ``LoadImageFromFileMono3D`` reads: CAM2's, or the only camera's."""
    images = info.get('images', {})
    if 'CAM2' in images:
        return _as_list(images['CAM2'].get('img_path'))
    if len(images) == 1:
        return _as_list(next(iter(images.values())).get('img_path'))
    return _as_list(info.get('img_path'))


def sample_files(transforms: Sequence[object], info: dict) -> Dict[str, List[str]]:
    """The files of one sample that the given loading transforms read, by kind.

    Args:
        transforms (Sequence): The dataset's pipeline transforms (:func:`loading_transforms`).
        info (dict): The sample's data info as the dataset returns it (``get_data_info``).

    Returns:
        dict[str, list[str]]: Kind -> paths (kinds no transform reads are absent).
    """
    files: Dict[str, List[str]] = {}

    def add(kind: str, paths: List[str]) -> None:
        got = files.setdefault(kind, [])
        got.extend(p for p in paths if p not in got)

    for t in transforms:
        if isinstance(t, LoadLidarPoints):
            add('points', _as_list(info.get('lidar_path')))
        elif isinstance(t, LoadPointsFromFile):
            add('points', _as_list(info.get('lidar_points', {}).get('lidar_path')))
        elif isinstance(t, LoadPointsFromMultiSweeps):
            add('sweeps', [s['lidar_points']['lidar_path'] for s in info.get('lidar_sweeps', [])
                           if 'lidar_path' in s.get('lidar_points', {})])
        elif isinstance(t, LoadMultiViewImagesAndSuperpixels):
            add('images', _as_list(info.get('img_paths')))
            if t.with_superpixels:
                add('superpixels', _as_list(info.get('sp_paths')))
        elif isinstance(t, LoadMultiViewImageFromFiles):
            add('images', [v['img_path'] for v in info.get('images', {}).values()
                           if 'img_path' in v])
        elif isinstance(t, LoadImageFromFileMono3D):
            add('images', _mono_camera_image(info))
        elif isinstance(t, LoadImageFromFile):
            add('images', _as_list(info.get('img_path')))
        if isinstance(t, LoadAnnotations3D):
            if t.with_seg_3d:
                add('labels', _as_list(info.get('pts_semantic_mask_path')))
            if t.with_mask_3d:
                add('instance_masks', _as_list(info.get('pts_instance_mask_path')))
    return files


def iter_sample_files(dataset) -> Iterator[Dict[str, List[str]]]:
    """:func:`sample_files` of every sample of a leaf dataset, in index order (none for a
    dataset without mmengine's ``get_data_info``)."""
    if not hasattr(dataset, 'get_data_info'):
        return
    transforms = loading_transforms(dataset)
    for idx in range(len(dataset)):
        yield sample_files(transforms, dataset.get_data_info(idx))


def required_files(dataset) -> Dict[str, List[str]]:
    """Every file the dataset (wrappers walked) reads, by kind, each once, in sample order.

    Args:
        dataset: A built dataset (mmengine ``BaseDataset`` or a wrapper of some).

    Returns:
        dict[str, list[str]]: Kind (one of :data:`KINDS`) -> paths; only the kinds read.
    """
    found: Dict[str, Dict[str, None]] = {}
    for leaf in leaf_datasets(dataset):
        for files in iter_sample_files(leaf):
            for kind, paths in files.items():
                found.setdefault(kind, {}).update(dict.fromkeys(paths))
    return {kind: list(found[kind]) for kind in KINDS if kind in found}


def missing_files(paths: Sequence[str], threads: int = 16) -> List[str]:
    """The paths that are not regular files, in the given order (``os.path.isfile`` only; the
    stats run in threads, which overlap their waits on a network file system)."""
    paths = list(paths)
    chunk = 4096
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]

    def stat(part: List[str]) -> List[str]:
        return [p for p in part if not os.path.isfile(p)]

    if len(chunks) <= 1:
        return stat(paths)
    with ThreadPoolExecutor(max_workers=min(threads, len(chunks))) as pool:
        return [p for part in pool.map(stat, chunks) for p in part]
