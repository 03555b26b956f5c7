"""Regions from k-means on a frozen image teacher's features and the pixel position."""
import os.path as osp
from functools import lru_cache
from typing import List, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import RegionGenerator
from .checkpoint_hash import checkpoint_sha256
from .kmeans import assign_nearest, kmeans
from .mask_rasterizer import compact_ids
from .registry import REGION_GENERATORS
from .teacher_codebook import CodebookMeta, load_codebook, save_codebook

MODES = ('per_image', 'codebook')
#: the ImageNet MobileNetV2 teacher (FrozenImageTeacher) of the project's model bases
DEFAULT_TEACHER = 'configs/_base_/models/mobilenetv2-imagenet-dilated_teacher.py'
_REPO = osp.abspath(osp.join(osp.dirname(__file__), *(['..'] * 4)))


@REGION_GENERATORS.register_module(name='teacher_kmeans')
class TeacherFeatureRegions(RegionGenerator):
    """k-means on a frozen teacher's features, each cell's feature (unit norm) next to its
    position ``position_weight * (x / W, y / H)``.

    The image is resized to ``input_width`` and run through the teacher (a
    ``FrozenImageTeacher`` config: the ImageNet MobileNetV2 by default, output stride 16, so
    40 x 23 cells for a 640-wide 16:9 image). The centroids come from its cells; every pixel
    of a grid ``assign_stride`` times coarser than the resized image then takes its nearest
    centroid (features bilinearly interpolated and renormalised), and the grid is scaled to
    the image by nearest neighbour.

    Two modes:

    - ``'per_image'``: k-means over each image's own cells (``clusters`` of them at most); ids
      ``0..n-1`` per image, meaning nothing across images.
    - ``'codebook'``: one set of centroids fitted once (:meth:`prepare`) over ``fit_images``
      images of the dataset (``cells_per_image`` cells each) and stored in ``codebook``; a
      pixel's id is its centroid's, so equal ids mean the same cluster in every image and
      frame (ids are not renumbered per image). An existing codebook file is read, not
      refitted; its SHA-256 is a parameter of the maps.

    Args:
        mode (str): ``'per_image'`` (default) or ``'codebook'``.
        clusters (int): k. Defaults to 150 (SLIC's segment count).
        position_weight (float): Weight of the position. Defaults to 1.0.
        input_width (int): Width of the teacher's input. Defaults to 640.
        assign_stride (int): Assignment grid step, in pixels of the resized image.
            Defaults to 4.
        iterations (int): Most Lloyd steps. Defaults to 20.
        seed (int): k-means seed. Defaults to 0.
        codebook (str, optional): The codebook file (``'codebook'`` mode).
        fit_images (int): Images the codebook is fitted on (evenly spaced over the listed
            ones). Defaults to 200.
        cells_per_image (int): Cells drawn per image for the fit. Defaults to 256.
        teacher (str): Config file whose ``teacher_model['teacher']`` is the teacher.
            Defaults to :data:`DEFAULT_TEACHER`.
        checkpoint (str, optional): The teacher's weights; None: its config's.
        device (str, optional): None: CUDA when there is one.
    """

    name = 'teacher_kmeans'
    uses_torch = True
    packages = ('numpy', 'cv2', 'torch', 'mmengine', 'mmdet')

    def __init__(self, mode: str = 'per_image', clusters: int = 150,
                 position_weight: float = 1.0, input_width: int = 640, assign_stride: int = 4,
                 iterations: int = 20, seed: int = 0, codebook: Optional[str] = None,
                 fit_images: int = 200, cells_per_image: int = 256,
                 teacher: str = DEFAULT_TEACHER, checkpoint: Optional[str] = None,
                 device: Optional[str] = None) -> None:
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        if mode == 'codebook' and not codebook:
            raise ValueError("mode='codebook' needs a codebook file path (codebook=PATH; "
                             'fitted there when it does not exist)')
        self.mode = mode
        self.clusters = int(clusters)
        self.position_weight = float(position_weight)
        self.input_width = int(input_width)
        self.assign_stride = int(assign_stride)
        self.iterations = int(iterations)
        self.seed = int(seed)
        self.codebook_path = codebook
        self.fit_images = int(fit_images)
        self.cells_per_image = int(cells_per_image)
        self.teacher_config = teacher
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.teacher, self.checkpoint = self._build_teacher(teacher, checkpoint)
        self.centroids: Optional[Tensor] = None
        self.codebook_sha256: Optional[str] = None

    def _build_teacher(self, config: str, checkpoint: Optional[str]):
        """The frozen teacher of the config, with its weights (checked on load)."""
        from mmdet3d.registry import MODELS
        from mmengine.config import Config
        path = config if osp.isfile(config) else osp.join(_REPO, config)
        if not osp.isfile(path):
            raise FileNotFoundError(f'teacher config not found: {config}')
        cfg = Config.fromfile(path).teacher_model['teacher']
        if checkpoint is not None:
            cfg['checkpoint'] = checkpoint
        ckpt = cfg.get('checkpoint')
        if ckpt is not None and not osp.isfile(ckpt) and osp.isfile(osp.join(_REPO, ckpt)):
            cfg['checkpoint'] = ckpt = osp.join(_REPO, ckpt)
        if ckpt is None or not osp.isfile(ckpt):
            raise FileNotFoundError(
                f'teacher checkpoint not found: {ckpt} (make the ImageNet MobileNetV2 one with '
                'python tools/convert_teacher_checkpoint.py package:mobilenetv2-imagenet '
                'checkpoints/mobilenetv2-imagenet.pth, or pass --checkpoint)')
        teacher = MODELS.build(cfg)
        teacher.init_weights()
        return teacher.to(self.device).eval(), ckpt

    def parameters(self) -> dict:
        params = dict(mode=self.mode, clusters=self.clusters,
                      position_weight=self.position_weight, input_width=self.input_width,
                      assign_stride=self.assign_stride, teacher=self.teacher_config)
        if self.mode == 'per_image':
            params.update(iterations=self.iterations, seed=self.seed)
        else:
            params.update(codebook_sha256=self.codebook_sha256)
        return params

    def checkpoint_sha256(self) -> str:
        return _file_sha256(self.checkpoint)

    # features -------------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, images: Sequence[np.ndarray]) -> List[Tensor]:
        """The teacher's unit-norm features of each image, (C, h, w) each, on its device."""
        out = []
        for img in images:
            h, w = img.shape[:2]
            size = (self.input_width, max(1, round(h * self.input_width / w)))
            small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            x = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None]
            feats = self.teacher(x.float().to(self.device))[0]
            out.append(F.normalize(feats, dim=0))
        return out

    def vectors(self, feats: Tensor, grid: tuple) -> Tensor:
        """Feature-and-position vectors of the pixels of a (gh, gw) grid over the image,
        (gh * gw, C + 2): features interpolated bilinearly and renormalised, positions of
        the grid cells' centres as fractions of the image, times ``position_weight``."""
        gh, gw = grid
        if tuple(feats.shape[1:]) != (gh, gw):
            feats = F.normalize(F.interpolate(feats[None], size=(gh, gw), mode='bilinear',
                                              align_corners=False)[0], dim=0)
        ys = (torch.arange(gh, device=feats.device, dtype=feats.dtype) + 0.5) / gh
        xs = (torch.arange(gw, device=feats.device, dtype=feats.dtype) + 0.5) / gw
        pos = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), 0) * self.position_weight
        return torch.cat([feats, pos], 0).flatten(1).T.contiguous()

    def _grid(self, image_hw: tuple) -> tuple:
        h, w = image_hw
        rh = max(1, round(h * self.input_width / w))
        return max(1, round(rh / self.assign_stride)), max(1, round(self.input_width /
                                                                     self.assign_stride))

    # regions --------------------------------------------------------------------------------
    def generate(self, image: np.ndarray, source: Optional[dict] = None) -> np.ndarray:
        return self.generate_batch([image])[0]

    def generate_batch(self, images: Sequence[np.ndarray],
                       sources: Optional[Sequence[Optional[dict]]] = None) -> List[np.ndarray]:
        """Region ids, (H, W) int32 each: ``0..n-1`` per image, or codebook ids."""
        if self.mode == 'codebook' and self.centroids is None:
            raise RuntimeError("mode='codebook': call prepare() (fit or read the codebook) "
                               'before generating')
        maps = []
        for img, feats in zip(images, self.features(images)):
            if self.mode == 'per_image':
                cells = self.vectors(feats, tuple(feats.shape[1:]))
                centroids, _ = kmeans(cells, min(self.clusters, len(cells)), self.iterations,
                                      self.seed)
            else:
                centroids = self.centroids
            grid = self._grid(img.shape[:2])
            ids = assign_nearest(self.vectors(feats, grid), centroids)
            ids = ids.reshape(grid).to(torch.int32).cpu().numpy()
            if self.mode == 'per_image':
                ids = compact_ids(ids)
            maps.append(cv2.resize(ids, (img.shape[1], img.shape[0]),
                                   interpolation=cv2.INTER_NEAREST))
        return maps

    # the codebook ---------------------------------------------------------------------------
    def _meta(self, images: int) -> CodebookMeta:
        return CodebookMeta(teacher=self.teacher_config,
                            checkpoint_sha256=self.checkpoint_sha256(),
                            input_width=self.input_width, position_weight=self.position_weight,
                            clusters=self.clusters, seed=self.seed, iterations=self.iterations,
                            images=images, cells_per_image=self.cells_per_image)

    def prepare(self, image_paths: Sequence[str]) -> None:
        """``'codebook'`` mode: read the codebook file, or fit it over ``fit_images`` of the
        images (evenly spaced, in the given order) and write it there."""
        if self.mode != 'codebook':
            return
        if not osp.isfile(self.codebook_path):
            self.fit_codebook(image_paths)
        self.centroids, _, self.codebook_sha256 = load_codebook(
            self.codebook_path, {k: getattr(self._meta(0), k) for k in
                                 ('teacher', 'checkpoint_sha256', 'input_width',
                                  'position_weight', 'clusters')})
        self.centroids = self.centroids.to(self.device)

    def fit_codebook(self, image_paths: Sequence[str]) -> None:
        """Fit the codebook over a sample of the images and write it."""
        if not image_paths:
            raise ValueError('fitting a teacher codebook needs images')
        pick = np.unique(np.linspace(0, len(image_paths) - 1,
                                     min(self.fit_images, len(image_paths))).round().astype(int))
        generator = torch.Generator().manual_seed(self.seed)
        cells = []
        for i in pick:
            img = cv2.imread(image_paths[i], cv2.IMREAD_COLOR)
            if img is None:
                raise FileNotFoundError(f'missing or unreadable image: {image_paths[i]}')
            feats = self.features([cv2.cvtColor(img, cv2.COLOR_BGR2RGB)])[0]
            vec = self.vectors(feats, tuple(feats.shape[1:]))
            if len(vec) > self.cells_per_image:
                vec = vec[torch.randperm(len(vec), generator=generator)[:self.cells_per_image]
                          .to(vec.device)]
            cells.append(vec)
        cells = torch.cat(cells)
        centroids, _ = kmeans(cells, min(self.clusters, len(cells)), self.iterations, self.seed)
        if len(centroids) < self.clusters:
            raise ValueError(f'{len(cells)} cells cannot make {self.clusters} clusters: use '
                             'more images or cells per image')
        save_codebook(self.codebook_path, centroids, self._meta(len(pick)))


@lru_cache(maxsize=8)
def _file_sha256(path: str) -> str:
    return checkpoint_sha256(path)
