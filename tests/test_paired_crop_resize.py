"""The crop-resize of PairedRandomResizedCrop: aligned boxes, the image it makes against a
bilinear reference written here in float64 (not OpenCV), and the paired transforms' results
whatever the order of the pairs."""
import math

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from conftest import REPO_ROOT
from projects.img2lidar.datasets.transforms.pack_image_lidar_inputs import \
    PackImageLidarInputs
from projects.img2lidar.datasets.transforms.paired_random_resized_crop import (
    PairedRandomFlip, PairedRandomResizedCrop, camera_rows, crop_resize_image, sample_crop)


def bilinear_reference(img: np.ndarray, box, size, s: int, clamp_to_box: bool) -> np.ndarray:
    """Output pixel (x', y') samples the decoded image at ``(x0 + (x' + 0.5) w / W) / s - 0.5``
    (and the same in y), bilinearly; coordinates are clamped to the box's decoded pixels
    (``clamp_to_box``) or to the image's."""
    x0, y0, w, h = box
    out_h, out_w = size
    hd, wd = img.shape[:2]

    def taps(start, length, out, limit):
        src = (start + (np.arange(out) + 0.5) * length / out) / s - 0.5
        lo_lim, hi_lim = ((start // s, (start + length) // s - 1) if clamp_to_box
                          else (0, limit - 1))
        src = np.clip(src, lo_lim, hi_lim)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, hi_lim)
        return lo, hi, src - lo

    ylo, yhi, fy = taps(y0, h, out_h, hd)
    xlo, xhi, fx = taps(x0, w, out_w, wd)
    f = img.astype(np.float64)
    top = f[ylo][:, xlo] * (1 - fx)[None, :, None] + f[ylo][:, xhi] * fx[None, :, None]
    bot = f[yhi][:, xlo] * (1 - fx)[None, :, None] + f[yhi][:, xhi] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 2)


@pytest.mark.parametrize('s', [1, 2])
def test_an_aligned_box_is_cut_and_resized_as_the_reference(s):
    """A box of whole decoded pixels: the bilinear resize of the box itself (its edge pixels
    extending it), within 1 grey level of the float64 reference everywhere."""
    full_h, full_w = 900, 1600
    img = _image(full_h // s, full_w // s)
    for box in [(0, 0, 1600, 900), (100, 50, 700, 400), (1000, 300, 600, 338),
                (2, 4, 560, 320)]:
        out = crop_resize_image(img, box, (224, 416), s)
        ref = bilinear_reference(img, box, (224, 416), s, clamp_to_box=True)
        assert out.shape == (224, 416, 3) and out.dtype == np.uint8
        assert np.abs(out - ref).max() <= 1.0 + 1e-9


def test_an_unaligned_box_is_warped_as_the_reference():
    """A box that is not whole decoded pixels (odd corner at s=2) samples the same positions
    through one affine warp, reading the pixels next to the box; OpenCV's warp quantises
    positions to 1/32 pixel, so on this smooth image it is within 2 grey levels."""
    img = _image(450, 800)
    box = (101, 51, 701, 399)
    out = crop_resize_image(img, box, (224, 416), 2)
    ref = bilinear_reference(img, box, (224, 416), 2, clamp_to_box=False)
    assert np.abs(out - ref).max() <= 2.0
    # the two forms differ only where the box's edge is read
    aligned = crop_resize_image(img, (100, 50, 700, 400), (224, 416), 2)
    warped = cv2.warpAffine(img, np.array([[700 / 832, 0, (100 + 350 / 416) / 2 - 0.5],
                                           [0, 400 / 448, (50 + 200 / 224) / 2 - 0.5]]),
                            (416, 224), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    inner = (slice(1, -1), slice(1, -1))
    assert np.abs(aligned[inner].astype(int) - warped[inner]).max() <= 2


@pytest.mark.parametrize('align', [2, 4])
def test_aligned_boxes_are_multiples_inside_the_image(align):
    np.random.seed(0)
    scale, ratio = (0.3, 1.0), (14 / 9, 17 / 9)
    for hw in [(900, 1600), (1080, 1920), (375, 1242)]:
        for _ in range(200):
            x0, y0, w, h = sample_crop(hw, scale, ratio, align)
            assert x0 % align == y0 % align == w % align == h % align == 0
            assert 0 <= x0 and x0 + w <= hw[1] and 0 <= y0 and y0 + h <= hw[0] and w > 0 < h
            # rounding each side to the multiple changes the area by a few per cent at most
            assert w * h >= 0.95 * scale[0] * hw[0] * hw[1]


def test_align_one_draws_what_the_unaligned_rule_draws():
    """``align=1`` consumes the generator as the rule does and gives its box: sizes the rounded
    square roots, corners uniform among the positions that fit."""
    hw, scale, ratio = (900, 1600), (0.3, 1.0), (14 / 9, 17 / 9)
    np.random.seed(5)
    got = [sample_crop(hw, scale, ratio, 1) for _ in range(50)]
    np.random.seed(5)
    expected = []
    for _ in range(50):
        while True:
            target = hw[0] * hw[1] * np.random.uniform(*scale)
            aspect = math.exp(np.random.uniform(math.log(ratio[0]), math.log(ratio[1])))
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if w <= hw[1] and h <= hw[0]:
                expected.append((np.random.randint(0, hw[1] - w + 1),
                                 np.random.randint(0, hw[0] - h + 1), w, h))
                break
    assert got == expected


def test_the_nuscenes_crops_are_whole_decoded_pixels():
    """The pretraining data's crops align to its decode scale (the fast path), the reference
    configs' full-resolution decoding needs none."""
    for name in ('nuscenes_pretrain.py', 'nuscenes_pretrain_224x448.py', 'pandaset_pretrain.py',
                 'nuscenes_pretrain_slidr.py'):
        cfg = Config.fromfile(str(REPO_ROOT / 'configs' / '_base_' / 'datasets' / name))
        for pipeline in (cfg.train_pipeline, cfg.train_dataloader.dataset.pipeline):
            load = next(t for t in pipeline if t['type'] == 'LoadMultiViewImagesAndSuperpixels')
            crop = next(t for t in pipeline if t['type'] == 'PairedRandomResizedCrop')
            assert crop.get('align', 1) % load.get('decode_scale', 1) == 0, name


def _paired_sample(seed: int, num_cams: int = 4, num_pairs: int = 3000) -> dict:
    """Images, maps and pairs ordered by camera (as PointPixelPairing makes them)."""
    rng = np.random.default_rng(seed)
    cams = np.sort(rng.integers(0, num_cams, num_pairs))
    pixel = np.stack([rng.integers(0, 160, num_pairs), rng.integers(0, 90, num_pairs)], 1)
    return dict(img=[_image(90, 160, seed + c) for c in range(num_cams)],
                img_shape=[(90, 160)] * num_cams,
                superpixels=[rng.integers(0, 50, (90, 160)).astype(np.uint8)
                             for _ in range(num_cams)],
                superpixel_scales=[1] * num_cams,
                pairs=dict(point=rng.permutation(num_pairs), cam=cams, pixel=pixel))


def _run(transform, results: dict, seed: int) -> dict:
    np.random.seed(seed)
    return transform({k: (list(v) if isinstance(v, list) else
                          {n: a.copy() for n, a in v.items()}) for k, v in results.items()})


@pytest.mark.parametrize('seed', range(3))
def test_crop_and_flip_do_not_depend_on_the_order_of_the_pairs(seed):
    """Camera-ordered pairs take slices, any other order index arrays: the same boxes, images,
    maps and pairs (each pair moved as the reference rule moves it), in the input's order."""
    ordered = _paired_sample(seed)
    perm = np.random.default_rng(seed).permutation(len(ordered['pairs']['cam']))
    shuffled = dict(ordered, pairs={k: v[perm] for k, v in ordered['pairs'].items()})
    crop = PairedRandomResizedCrop(size=(40, 72), min_pairs_per_image=100, align=2)
    flip = PairedRandomFlip(prob=0.5)
    a = _run(flip, _run(crop, ordered, seed), seed)
    b = _run(flip, _run(crop, shuffled, seed), seed)
    assert a['img_aug'] == b['img_aug']
    for x, y in zip(a['img'] + a['superpixels'], b['img'] + b['superpixels']):
        np.testing.assert_array_equal(x, y)
    # the same pairs: b keeps the shuffled order, so match them by their point id
    key_a = np.argsort(a['pairs']['point'])
    key_b = np.argsort(b['pairs']['point'])
    for k in ('point', 'cam', 'pixel'):
        np.testing.assert_array_equal(a['pairs'][k][key_a], b['pairs'][k][key_b])
    # b's pairs are in the shuffled input's relative order
    order_in = {int(p): i for i, p in enumerate(shuffled['pairs']['point'])}
    assert (np.diff([order_in[int(p)] for p in b['pairs']['point']]) > 0).all()
    # each pair's pixel from its original pixel, by the rule written out here
    orig = {int(p): px for p, px in zip(ordered['pairs']['point'], ordered['pairs']['pixel'])}
    for p, c, px in zip(a['pairs']['point'], a['pairs']['cam'], a['pairs']['pixel']):
        x0, y0, w, h = a['img_aug'][c]['crop']
        ox, oy = orig[int(p)]
        x = min(math.floor((ox + 0.5 - x0) * 72 / w), 71)
        y = min(math.floor((oy + 0.5 - y0) * 40 / h), 39)
        assert (px[0], px[1]) == ((71 - x) if a['img_aug'][c]['flip'] else x, y)


def test_camera_rows_are_slices_only_for_camera_ordered_pairs():
    rows = camera_rows(np.array([0, 0, 2, 2, 2]), 3)
    assert rows == [slice(0, 2), slice(2, 2), slice(2, 5)]
    rows = camera_rows(np.array([2, 0, 2, 0, 5]), 3)  # camera 5 >= 3: in none
    assert [r.tolist() for r in rows] == [[1, 3], [], [0, 2]]


def test_stack_images_is_numpys_channel_first_stack():
    imgs = [_image(30, 50, s) for s in range(3)]
    want = np.stack([im.transpose(2, 0, 1) for im in imgs])
    got = PackImageLidarInputs.stack_images(imgs)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    # an image of another type than the first: OpenCV allocates its planes, which are copied
    mixed = imgs[:2] + [imgs[2].astype(np.uint16)]
    np.testing.assert_array_equal(PackImageLidarInputs.stack_images(mixed), want)
