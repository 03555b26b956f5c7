"""The data loader's collate function for image-to-lidar pretraining: the batch is made once.

Every per-sample step that the model would otherwise take on the host happens here, in the
loader's worker processes, in parallel with the model: the samples' images are stacked into one
(I, 3, H, W) uint8 tensor (all cameras of all samples, sample after sample, so that samples with
different cameras, e.g. nuScenes and PandaSet in one batch, stack too), their pairs are
concatenated with batch-wide int32 point and image indices, and their superpixel maps are
stacked as int16 (int32 when an image has more than 32,767 ids), with the first batch-unique id
of every image. The model moves a handful of tensors to its device and never loops over the
samples (:class:`projects.img2lidar.models.BatchPairs`).

Use it in a pretraining dataloader with ``collate_fn=dict(type='collate_image_lidar')`` and
``pin_memory=True``. A batch made by ``pseudo_collate`` is finished the same way by the data
preprocessor (:func:`batch_image_lidar`), so tests and tools that collate by hand keep working.
"""
from typing import List, Sequence

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import FUNCTIONS

from ..models.point_pixel_pairs import BatchPairs


def _offsets(sizes: Sequence[int]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))]))


def _map_dtype(id_ranges: Sequence[int]) -> torch.dtype:
    return torch.int16 if max(id_ranges, default=0) <= torch.iinfo(torch.int16).max else \
        torch.int32


def is_per_sample(inputs: dict) -> bool:
    """Whether ``inputs`` still holds one entry per sample (``pseudo_collate``'s output)."""
    return isinstance(inputs.get('img'), (list, tuple))


def batch_pairs(points: Sequence[torch.Tensor], num_cams: Sequence[int], pairs: dict,
                superpixels, superpixel_sizes) -> BatchPairs:
    """The batch's :class:`BatchPairs` from the samples' own pairs and maps.

    Args:
        points (Sequence[Tensor]): The clouds, (N_b, C) each.
        num_cams (Sequence[int]): The images of each sample.
        pairs (dict): ``point``, ``cam`` and ``pixel``, one tensor per sample each (the
            output of ``pseudo_collate`` on :class:`PackImageLidarInputs`' ``pairs``).
        superpixels (Sequence[Tensor] | None): Per sample, the maps (V_b, H, W) with ids
            ``0..n-1`` (-1 ignored); None without maps.
        superpixel_sizes (Sequence[Sequence[int]] | None): Per sample, each map's id range.

    Returns:
        BatchPairs: On the CPU; the data preprocessor moves it to the model's device.
    """
    num_points = [int(p.shape[0]) for p in points]
    num_cams = [int(n) for n in num_cams]
    num_pairs = [int(p.shape[0]) for p in pairs['point']]
    point_base = np.repeat(_offsets(num_points)[:-1].numpy(), num_pairs)
    image_base = np.repeat(_offsets(num_cams)[:-1].numpy(), num_pairs)
    point = torch.cat(list(pairs['point'])).long() + torch.from_numpy(point_base)
    image = torch.cat(list(pairs['cam'])).long() + torch.from_numpy(image_base)
    maps = image_id_offsets = None
    num_ids = max_image_ids = 0
    if superpixels is not None:
        ranges = [int(n) for sizes in superpixel_sizes for n in sizes]
        max_image_ids = max(ranges, default=0)
        maps = torch.cat([torch.as_tensor(m) for m in superpixels]).to(_map_dtype(ranges))
        image_id_offsets = _offsets(ranges)
        num_ids = int(image_id_offsets[-1])
    return BatchPairs(
        point=point.int(), image=image.int(),
        pixel=torch.cat(list(pairs['pixel'])).int().reshape(-1, 2),
        pair_offsets=_offsets(num_pairs), image_offsets=_offsets(num_cams),
        superpixels=maps, image_id_offsets=image_id_offsets,
        num_points=sum(num_points), num_images=sum(num_cams), num_ids=num_ids,
        max_image_ids=max_image_ids)


def batch_image_lidar(batch: dict) -> dict:
    """Finish a ``pseudo_collate``-d pretraining batch: stack the images and build the pairs.

    Args:
        batch (dict): ``inputs`` with per-sample ``points``, ``img`` (V_b, 3, H, W) and,
            for pretraining, ``pairs`` and optionally ``superpixels``; ``data_samples``.

    Returns:
        dict: The same batch with ``inputs['img']`` (I, 3, H, W) uint8, ``inputs['pairs']``
        the dict of a :class:`BatchPairs` (no ``superpixels`` key left), the points still a
        list of (N_b, C) tensors (mmdet3d's convention).
    """
    inputs = batch['inputs']
    if not is_per_sample(inputs):
        return batch
    shapes = {tuple(im.shape[1:]) for im in inputs['img']}
    if len(shapes) != 1:
        files = [s.metainfo.get('lidar_path') for s in batch.get('data_samples') or []]
        raise ValueError(f'the images of a batch must share one size to be stacked, got '
                         f'{sorted(shapes)} (samples {files}); add a crop or resize')
    num_cams = [int(im.shape[0]) for im in inputs['img']]
    inputs['img'] = torch.cat(list(inputs['img']))
    if 'pairs' in inputs:
        sizes = None
        superpixels = inputs.pop('superpixels', None)
        if superpixels is not None:
            sizes = [s.metainfo['superpixel_sizes'] for s in batch['data_samples']]
        inputs['pairs'] = batch_pairs(inputs['points'], num_cams, inputs['pairs'], superpixels,
                                      sizes).as_dict()
    return batch


@FUNCTIONS.register_module()
def collate_image_lidar(data_batch: Sequence[dict]) -> dict:
    """Collate pretraining samples into one batch (see the module doc).

    Args:
        data_batch (Sequence[dict]): Samples of :class:`PackImageLidarInputs`.

    Returns:
        dict: ``inputs`` (``points``: list of (N_b, C) float32; ``img``: (I, 3, H, W) uint8;
        ``pairs``: the :class:`BatchPairs` dict) and ``data_samples`` (list, metainfo only).
    """
    return batch_image_lidar(pseudo_collate(list(data_batch)))


__all__: List[str] = ['collate_image_lidar', 'batch_image_lidar', 'batch_pairs',
                      'is_per_sample']
