"""Random resized crop of each camera image that moves pairs and superpixels with it."""
import math
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from ..bad_sample import BadSampleError


def sample_crop(img_hw: Tuple[int, int], scale: Sequence[float], ratio: Sequence[float],
                align: int = 1) -> Tuple[int, int, int, int]:
    """One random crop box (x0, y0, w, h) of relative area in ``scale`` and aspect ratio
    (w / h) log-uniform in ``ratio``; falls back to the largest centred box of a valid ratio
    after 10 draws that do not fit. Draws from numpy's global RNG, which mmengine seeds per
    dataloader worker.

    With ``align`` > 1, x0, y0, w and h are multiples of ``align`` (sizes rounded to the
    nearest multiple, at least ``align``; corners drawn among the multiples), so that an image
    decoded at 1/``align`` holds the box as whole pixels. ``align=1`` is the unaligned draw
    (the same numbers from the same generator state).
    """
    h_img, w_img = img_hw
    area = h_img * w_img
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * np.random.uniform(scale[0], scale[1])
        aspect = math.exp(np.random.uniform(*log_ratio))
        w = _aligned(math.sqrt(target * aspect), align)
        h = _aligned(math.sqrt(target / aspect), align)
        if 0 < w <= w_img and 0 < h <= h_img:
            x0 = int(np.random.randint(0, (w_img - w) // align + 1)) * align
            y0 = int(np.random.randint(0, (h_img - h) // align + 1)) * align
            return x0, y0, w, h
    in_ratio = w_img / h_img
    if in_ratio < ratio[0]:
        w, h = w_img, int(round(w_img / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = h_img, int(round(h_img * ratio[1]))
    else:
        w, h = w_img, h_img
    w, h = w // align * align, h // align * align
    return (w_img - w) // 2 // align * align, (h_img - h) // 2 // align * align, w, h


def _aligned(size: float, align: int) -> int:
    """``size`` rounded to the nearest positive multiple of ``align`` (round half to even, as
    ``round``); ``align=1``: ``round(size)``."""
    if align == 1:
        return int(round(size))
    return max(1, int(round(size / align))) * align


def crop_resize_index(start: int, length: int, out: int) -> np.ndarray:
    """Source index of each output pixel along one axis (nearest neighbour on pixel centres):
    ``floor(start + (i + 0.5) * length / out)``."""
    src = np.floor(start + (np.arange(out) + 0.5) * (length / out)).astype(np.int64)
    return np.clip(src, start, start + length - 1)


def crop_resize_image(img: np.ndarray, box: Tuple[int, int, int, int], size: Tuple[int, int],
                      decode_scale: int = 1) -> np.ndarray:
    """Crop ``box`` (full-resolution x0, y0, w, h) and resize it to ``size`` (H, W) bilinearly.

    Output pixel centre x' + 0.5 samples the full-resolution position
    ``x0 + (x' + 0.5) * w / W``, i.e. ``(x0 + (x' + 0.5) * w / W) / s - 0.5`` in an image
    decoded at 1/s resolution, so the content stays aligned with the pairs whatever s is.

    A box of whole decoded pixels (x0, y0, w, h multiples of s; always at s = 1) is cropped and
    resized (``cv2.resize`` of the box, whose edge pixels extend it, as torchvision's
    ``resized_crop``); any other box is sampled by one affine warp of the whole image (reading
    the pixels next to the box at its edge), about 2.5x slower.
    """
    x0, y0, w, h = box
    out_h, out_w = size
    s = int(decode_scale)
    if x0 % s == 0 and y0 % s == 0 and w % s == 0 and h % s == 0:
        roi = img[y0 // s:(y0 + h) // s, x0 // s:(x0 + w) // s]
        return cv2.resize(roi, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    s = float(s)
    ax, ay = w / (out_w * s), h / (out_h * s)
    mat = np.array([[ax, 0.0, (x0 + 0.5 * w / out_w) / s - 0.5],
                    [0.0, ay, (y0 + 0.5 * h / out_h) / s - 0.5]])
    return cv2.warpAffine(img, mat, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def camera_rows(cams: np.ndarray, num: int) -> List[Union[slice, np.ndarray]]:
    """The rows of each of ``num`` cameras' pairs: slices where ``cams`` is ordered by camera
    (as :class:`PointPixelPairing` makes them and the paired transforms keep them), else index
    arrays in increasing order; pairs of cameras ``>= num`` are in none."""
    counts = np.bincount(cams, minlength=num)
    bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
    if len(cams) < 2 or bool((cams[1:] >= cams[:-1]).all()):
        return [slice(bounds[c], bounds[c + 1]) for c in range(num)]
    order = np.argsort(cams, kind='stable')
    return [order[bounds[c]:bounds[c + 1]] for c in range(num)]


@TRANSFORMS.register_module()
class PairedRandomResizedCrop(BaseTransform):
    """Crop each image at random and resize it to ``size``, moving pairs and maps exactly.

    A pair at pixel (x, y) inside the box (x0, y0, w, h) goes to
    ``(floor((x + 0.5 - x0) * W / w), floor((y + 0.5 - y0) * H / h))``; the superpixel map is
    resampled by nearest neighbour on pixel centres (:func:`crop_resize_index`), so a pair's new
    pixel reads the map within one source-pixel step of its original pixel (a map stored at
    scale m is read at full-resolution pixel (x, y) as [y // m, x // m], so it is resampled
    exactly as its full-resolution form would be). Pairs outside the
    box are dropped. The crop is redrawn up to ``max_tries`` times until it keeps
    ``min(min_pairs_per_image, pairs of that image)`` pairs or, with ``min_pairs_fraction``,
    that share of the image's pairs (SLidR: more than 1,024 or 75%); else the best draw is
    kept.

    Required keys: ``img``, ``pairs`` and optionally ``superpixels`` (with
    ``superpixel_scales``; 1 when absent). Updates them and ``img_shape``; adds ``img_aug``
    (per image ``crop`` = [x0, y0, w, h], ``flip``).

    Args:
        size (tuple[int, int]): Output (H, W). Defaults to (224, 416).
        scale (tuple[float, float]): Range of the box area relative to the image.
        ratio (tuple[float, float]): Range of the box aspect ratio w / h.
        max_tries (int): Draws per image. Defaults to 10.
        min_pairs_per_image (int): Pairs a crop should keep. Defaults to 512.
        min_pairs_fraction (float, optional): Or this share of the image's pairs. Defaults to
            None.
        min_pairs (int): Pairs the sample needs after cropping, else :class:`BadSampleError`.
            Defaults to 1.
        align (int): Box corners and sizes are multiples of this many full-resolution pixels
            (:func:`sample_crop`). With the loader's ``decode_scale`` dividing it, every box
            is whole decoded pixels and is cut and resized rather than warped
            (:func:`crop_resize_image`, about 2.5x faster). Defaults to 1 (unaligned).
    """

    def __init__(self,
                 size: Tuple[int, int] = (224, 416),
                 scale: Tuple[float, float] = (0.3, 1.0),
                 ratio: Tuple[float, float] = (14 / 9, 17 / 9),
                 max_tries: int = 10,
                 min_pairs_per_image: int = 512,
                 min_pairs: int = 1,
                 min_pairs_fraction: Optional[float] = None,
                 align: int = 1) -> None:
        if int(align) != align or align < 1:
            raise ValueError(f'align must be a positive integer, got {align}')
        self.size = tuple(size)
        self.align = int(align)
        self.scale = scale
        self.ratio = ratio
        self.max_tries = max_tries
        self.min_pairs_per_image = min_pairs_per_image
        self.min_pairs = min_pairs
        self.min_pairs_fraction = min_pairs_fraction

    def _choose_box(self, img_hw, xs: np.ndarray, ys: np.ndarray):
        """A box of :func:`sample_crop` and which of the image's pairs (pixels ``xs``, ``ys``)
        it holds: the first draw that holds enough of them, else the draw that holds most."""
        need = min(self.min_pairs_per_image, len(xs))
        if self.min_pairs_fraction is not None:
            need = min(need, math.ceil(self.min_pairs_fraction * len(xs)))
        best, best_count = None, -1
        for _ in range(self.max_tries):
            x0, y0, w, h = sample_crop(img_hw, self.scale, self.ratio, self.align)
            inside = (xs >= x0) & (xs < x0 + w) & (ys >= y0) & (ys < y0 + h)
            count = int(np.count_nonzero(inside))
            if count > best_count:
                best, best_count = ((x0, y0, w, h), inside), count
            if count >= need:
                break
        return best

    def _crop_map(self, sp: np.ndarray, box, scale: int) -> np.ndarray:
        """The map resampled to ``size`` by nearest neighbour on pixel centres; full-resolution
        pixel (x, y) of a map stored at ``scale`` m is [y // m, x // m]. Two takes: 3x faster
        than one np.ix_ gather."""
        x0, y0, w, h = box
        out_h, out_w = self.size
        return sp.take(crop_resize_index(y0, h, out_h) // scale, axis=0) \
            .take(crop_resize_index(x0, w, out_w) // scale, axis=1)

    def _box_pixels(self, px: np.ndarray, py: np.ndarray, box) -> np.ndarray:
        """Pixels (x, y) inside ``box`` (x0, y0, w, h) moved to the output, (K, 2) int64:
        ``min(floor((x + 0.5 - x0) * W / w), W - 1)``, and the same for y."""
        x0, y0, w, h = box
        out_h, out_w = self.size
        out = np.empty((len(px), 2), dtype=np.int64)
        out[:, 0] = np.minimum(np.floor((px + 0.5 - x0) * out_w / w), out_w - 1)
        out[:, 1] = np.minimum(np.floor((py + 0.5 - y0) * out_h / h), out_h - 1)
        return out

    def transform(self, results: dict) -> dict:
        pairs = results['pairs']
        cams, pixels = pairs['cam'], pairs['pixel']
        num = len(results['img'])
        augs = results.setdefault('img_aug', [dict(crop=None, flip=False) for _ in range(num)])
        map_scales = results.get('superpixel_scales') or [1] * num
        kept, moved = [], []
        for c, rows in enumerate(camera_rows(cams, num)):
            xs, ys = pixels[rows, 0], pixels[rows, 1]
            box, inside = self._choose_box(results['img_shape'][c], xs, ys)
            inside = np.flatnonzero(inside)
            kept.append(inside + rows.start if isinstance(rows, slice) else rows[inside])
            moved.append(self._box_pixels(xs[inside], ys[inside], box))
            results['img'][c] = crop_resize_image(results['img'][c], box, self.size,
                                                  results.get('img_decode_scale', 1))
            if 'superpixels' in results:
                results['superpixels'][c] = self._crop_map(results['superpixels'][c], box,
                                                           map_scales[c])
            augs[c]['crop'] = [int(v) for v in box]
        kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        moved = np.concatenate(moved) if moved else np.zeros((0, 2), dtype=np.int64)
        if len(kept) > 1 and not bool((kept[1:] > kept[:-1]).all()):  # pairs not by camera
            order = np.argsort(kept)
            kept, moved = kept[order], moved[order]
        pairs = {k: v[kept] if k != 'pixel' else moved.astype(pixels.dtype, copy=False)
                 for k, v in pairs.items()}
        results['pairs'] = pairs
        results['img_shape'] = [self.size for _ in results['img']]
        if 'superpixels' in results:
            results['superpixel_scales'] = [1] * num  # now the images' size
        if len(pairs['point']) < self.min_pairs:
            raise BadSampleError(
                f"{results.get('lidar_path')}: only {len(pairs['point'])} point-pixel pairs "
                f'left after {self.max_tries} crop draws per image (need {self.min_pairs})')
        return results


def flip_columns(labels: np.ndarray) -> np.ndarray:
    """A map mirrored left to right (OpenCV's flip where it takes the type, else numpy's)."""
    if labels.dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32):
        return cv2.flip(labels, 1)
    return np.ascontiguousarray(labels[:, ::-1])


@TRANSFORMS.register_module()
class PairedRandomFlip(BaseTransform):
    """Flip each image horizontally with probability ``prob``, with its pairs and map.

    A pair at x goes to ``W - 1 - x``. Updates ``img``, ``superpixels``, ``pairs`` and the
    ``flip`` flag of ``img_aug``.

    Args:
        prob (float): Flip probability per image. Defaults to 0.5.
    """

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def transform(self, results: dict) -> dict:
        pairs = results['pairs']
        augs = results.setdefault('img_aug', [dict(crop=None, flip=False) for _ in results['img']])
        rows_of = camera_rows(pairs['cam'], len(results['img']))
        for c, (img, rows) in enumerate(zip(results['img'], rows_of)):
            if np.random.rand() >= self.prob:
                continue
            w = results['img_shape'][c][1]
            results['img'][c] = cv2.flip(img, 1)
            if 'superpixels' in results:
                results['superpixels'][c] = flip_columns(results['superpixels'][c])
            pairs['pixel'][rows, 0] = w - 1 - pairs['pixel'][rows, 0]
            augs[c]['flip'] = True
        return results
