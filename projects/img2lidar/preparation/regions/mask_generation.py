"""Regions from a SAM-family automatic mask generator (SAM, SAM-HQ, SAM2, EdgeTAM) run
through transformers, from a local checkpoint folder."""
import os.path as osp
from functools import lru_cache
from typing import Optional

import numpy as np

from .base import RegionGenerator
from .checkpoint_hash import checkpoint_sha256
from .mask_rasterizer import rasterize_masks
from .registry import REGION_GENERATORS
from .rle_masks import RleMasks
from .unassigned_fill import fill_from, fill_nearest

FILLS = ('none', 'nearest', 'slic')


@REGION_GENERATORS.register_module(name='sam')
class MaskGenerationRegions(RegionGenerator):
    """Automatic mask generation (a grid of point prompts, optionally on crops) with any
    mask-generation model of transformers (``SamModel``, ``SamHQModel``, ``Sam2Model``,
    ``EdgeTamModel``), then one region map from the masks (:mod:`.mask_rasterizer`: larger
    masks first, smaller on top, the ``max_regions`` largest, ids from 0 = the largest).

    The points, crops and filters are transformers' ``mask-generation`` pipeline's own
    (``preprocess`` and ``forward``); only the last step, the non-maximum suppression of
    duplicate masks across crops, runs through ``mmcv.ops.nms`` instead of torchvision's (the
    same greedy box NMS), so that SAM and SAM-HQ checkpoints run without torchvision. SAM2 and
    EdgeTAM checkpoints need torchvision for their image processor.

    Nothing is downloaded: ``checkpoint`` is a folder written by ``save_pretrained`` (the
    model and its image processor), e.g. a copy of ``facebook/sam-vit-base``.

    Args:
        checkpoint (str): The local checkpoint folder.
        points_per_side (int): Grid of point prompts per side (per crop). Defaults to 32.
        points_per_batch (int): Prompts run at once (memory against speed). Defaults to 64.
        crops_n_layers (int): Crop layers (layer i has 4**i crops; 0: the whole image only).
            Defaults to 0.
        crop_overlap_ratio (float): Overlap of the crops. Defaults to 512 / 1500.
        crop_n_points_downscale_factor (int): Points per side divided by this per layer.
            Defaults to 1.
        pred_iou_thresh (float): Keep masks whose predicted IoU is above. Defaults to 0.88.
        stability_score_thresh (float): Keep masks whose stability is above. Defaults to 0.95.
        stability_score_offset (float): Threshold shift of the stability score. Defaults to 1.
        mask_threshold (float): Logit threshold of a mask. Defaults to 0.
        crops_nms_thresh (float): Box IoU above which a lower-scored mask is a duplicate.
            Defaults to 0.7.
        max_regions (int, optional): The cap K on regions (the largest masks). None: no cap.
        min_area (int): Drop masks of fewer pixels. Defaults to 0.
        fill (str): Pixels no mask covers: ``'none'`` (stay -1, unassigned), ``'nearest'``
            (the nearest region's id) or ``'slic'`` (SLIC's segments, as new regions).
            Defaults to 'none'.
        fill_slic (dict, optional): :class:`SlicRegions` arguments for ``fill='slic'``.
        device (str, optional): ``'cuda'``, ``'cpu'``...; None: CUDA when there is one.
    """

    name = 'sam'
    uses_torch = True
    packages = ('numpy', 'cv2', 'torch', 'transformers', 'mmcv')

    def __init__(self, checkpoint: str, points_per_side: int = 32, points_per_batch: int = 64,
                 crops_n_layers: int = 0, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, pred_iou_thresh: float = 0.88,
                 stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0,
                 mask_threshold: float = 0.0, crops_nms_thresh: float = 0.7,
                 max_regions: Optional[int] = None, min_area: int = 0, fill: str = 'none',
                 fill_slic: Optional[dict] = None, device: Optional[str] = None) -> None:
        if fill not in FILLS:
            raise ValueError(f'fill must be one of {FILLS}, got {fill!r}')
        if not osp.isfile(osp.join(str(checkpoint), 'config.json')):
            raise FileNotFoundError(
                f'{checkpoint}: not a local checkpoint folder (no config.json). Give the folder '
                'a SAM, SAM-HQ, SAM2 or EdgeTAM model was saved to with save_pretrained (with '
                'its image processor); nothing is downloaded')
        self.checkpoint = str(checkpoint)
        self.prompts = dict(points_per_crop=int(points_per_side),
                            points_per_batch=int(points_per_batch),
                            crops_n_layers=int(crops_n_layers),
                            crop_overlap_ratio=float(crop_overlap_ratio),
                            crop_n_points_downscale_factor=int(crop_n_points_downscale_factor))
        self.filters = dict(pred_iou_thresh=float(pred_iou_thresh),
                            stability_score_thresh=float(stability_score_thresh),
                            stability_score_offset=float(stability_score_offset),
                            mask_threshold=float(mask_threshold))
        self.crops_nms_thresh = float(crops_nms_thresh)
        self.max_regions = None if max_regions is None else int(max_regions)
        self.min_area = int(min_area)
        self.fill = fill
        self.fill_slic = dict(fill_slic or {})
        self.may_leave_unassigned = fill == 'none'
        self.pipe = self._load(device)

    def _load(self, device: Optional[str]):
        """transformers' mask-generation pipeline on the local model and image processor."""
        import torch
        from transformers import (AutoImageProcessor, AutoModelForMaskGeneration,
                                  pipeline)
        device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        model = AutoModelForMaskGeneration.from_pretrained(self.checkpoint,
                                                           local_files_only=True).eval()
        processor = AutoImageProcessor.from_pretrained(self.checkpoint, local_files_only=True)
        self.model_type = model.config.model_type
        return pipeline('mask-generation', model=model, image_processor=processor,
                        device=device)

    def parameters(self) -> dict:
        points = dict(self.prompts)
        points['points_per_side'] = points.pop('points_per_crop')
        return dict(model_type=self.model_type, **points, **self.filters,
                    crops_nms_thresh=self.crops_nms_thresh, max_regions=self.max_regions,
                    min_area=self.min_area, fill=self.fill,
                    fill_slic=self._slic().parameters() if self.fill == 'slic' else None)

    def checkpoint_sha256(self) -> str:
        return _folder_sha256(self.checkpoint)

    def _slic(self):
        from .slic import SlicRegions
        return SlicRegions(**self.fill_slic)

    def masks(self, image: np.ndarray):
        """The generator's masks of one image after the duplicate suppression.

        Returns:
            tuple: :class:`RleMasks` (M masks, (H, W) each) and their predicted IoUs (M,).
        """
        import torch
        from mmcv.ops import nms
        from PIL import Image
        rles, scores, boxes = [], [], []
        for chunk in self.pipe.preprocess(Image.fromarray(image), **self.prompts):
            out = self.pipe.forward(chunk, **self.filters)
            rles += out['masks']
            scores.append(out['iou_scores'].float().reshape(-1))
            boxes.append(out['boxes'].float().reshape(-1, 4))
        if not rles:
            return RleMasks([]), np.zeros(0, dtype=np.float32)
        scores, boxes = torch.cat(scores), torch.cat(boxes)
        _, keep = nms(boxes, scores, self.crops_nms_thresh)
        keep = keep.tolist()
        return RleMasks([rles[i] for i in keep]), scores[keep].numpy()

    def generate(self, image: np.ndarray, source: Optional[dict] = None) -> np.ndarray:
        """Region ids from 0 (0 = the largest mask kept), -1 where no mask is unless filled,
        (H, W) int32."""
        masks, scores = self.masks(image)
        labels = rasterize_masks(masks, masks.areas(), scores, self.max_regions, self.min_area,
                                 shape=image.shape[:2])
        if self.fill == 'nearest':
            labels = fill_nearest(labels)
        elif self.fill == 'slic':
            labels = fill_from(labels, self._slic().generate(image))
        return labels


@lru_cache(maxsize=8)
def _folder_sha256(path: str) -> str:
    return checkpoint_sha256(path)
