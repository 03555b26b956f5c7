"""Region maps someone else computed (SLidR's, Seal's, SuperFlow's releases), read and
converted."""
import os.path as osp
from typing import Optional

import cv2
import numpy as np

from .base import UNASSIGNED, RegionGenerator
from .map_check import saturated_id_range
from .mask_rasterizer import compact_ids
from .registry import REGION_GENERATORS

#: the fields a template can use
FIELDS = ('cam', 'stem', 'name', 'img_path', 'token', 'sample_data_token')


@REGION_GENERATORS.register_module(name='precomputed')
class PrecomputedRegions(RegionGenerator):
    """Read each image's map from a file named by a template, and convert it.

    Peers publish one map per camera image, e.g. SLidR
    ``superpixels/nuscenes/superpixels_slic/<camera sample_data token>.png`` (uint8), Seal and
    SuperFlow ``<camera sample_data token>.png`` as well: the template
    ``/data/seal/sam/{sample_data_token}.png`` finds them. Any format
    :func:`~projects.img2lidar.datasets.transforms.superpixel_map.read_superpixels` reads
    (``.npz``, ``.npy``, 8/16-bit PNG) works, with its damage checks.

    The conversion: ``unassigned`` (e.g. 0, where a release writes 0 for "no mask") becomes
    -1; the other ids are renumbered ``0..n-1`` in increasing order. A map that uses all 256
    ids of uint8 is refused: more than 255 masks written as uint8 wrapped around, so that
    unrelated masks share ids (``allow_saturated=True`` reads it anyway). A map of another
    size than its image is refused, or scaled by nearest neighbour with ``resize=True``.

    Args:
        template (str): Path of an image's map, with the fields ``{cam}`` (camera),
            ``{stem}`` (image file name without suffix), ``{name}`` (image file name),
            ``{img_path}`` (as in the info file), ``{token}`` (sample token) and
            ``{sample_data_token}`` (the camera image's own token, nuScenes infos).
        unassigned (int, optional): The stored id of pixels in no region. None: every id
            is a region (a negative stored id is then an error).
        resize (bool): Scale maps of another size to the image. Defaults to False.
        allow_saturated (bool): Read uint8 maps that use all 256 ids. Defaults to False.
    """

    name = 'precomputed'
    needs_source = True

    def __init__(self, template: str, unassigned: Optional[int] = None, resize: bool = False,
                 allow_saturated: bool = False) -> None:
        self.template = template
        self.unassigned = None if unassigned is None else int(unassigned)
        self.resize = bool(resize)
        self.allow_saturated = bool(allow_saturated)
        self.may_leave_unassigned = unassigned is not None

    def parameters(self) -> dict:
        return dict(template=self.template, unassigned=self.unassigned, resize=self.resize,
                    allow_saturated=self.allow_saturated)

    def path(self, source: dict) -> str:
        """The stored map of an image."""
        try:
            return self.template.format(**source)
        except KeyError as e:
            raise KeyError(f'template {self.template!r}: field {e} is not known for '
                           f'{source.get("img_path")} (it has: '
                           f'{", ".join(k for k, v in source.items() if v is not None)})') from e

    def generate(self, image: np.ndarray, source: Optional[dict] = None) -> np.ndarray:
        """The stored map, converted: (H, W) int32, -1 where ``unassigned`` was."""
        from ...datasets.transforms.superpixel_map import read_superpixels
        if source is None:
            raise ValueError('precomputed regions need the image\'s source record')
        path = self.path(source)
        stored = read_superpixels(path)
        if not self.allow_saturated and saturated_id_range(stored):
            raise ValueError(
                f'{path}: this {stored.dtype} map uses all {np.iinfo(stored.dtype).max + 1} '
                'ids: more masks than the type holds were probably written and wrapped around, '
                'so that unrelated masks share ids. Regenerate the maps with 16-bit ids, or '
                'pass allow_saturated=True to read them anyway')
        labels = stored.astype(np.int64)
        hole = labels == self.unassigned if self.unassigned is not None else labels < 0
        if self.unassigned is None and hole.any():
            raise ValueError(f'{path}: {int(hole.sum())} pixels have negative ids; pass '
                             'unassigned=<their id> to read them as unassigned')
        labels[hole] = UNASSIGNED
        labels[labels < 0] = UNASSIGNED
        h, w = image.shape[:2]
        if labels.shape != (h, w):
            if not self.resize:
                raise ValueError(f'{path}: map of {labels.shape[1]}x{labels.shape[0]}, its '
                                 f'image is {w}x{h} (pass resize=True to scale it)')
            labels = cv2.resize(labels.astype(np.int32), (w, h),
                                interpolation=cv2.INTER_NEAREST)
        return compact_ids(labels)

    def __repr__(self) -> str:
        return f'PrecomputedRegions({osp.basename(self.template)!r})'
