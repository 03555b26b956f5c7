"""Region sources behind one interface: the rasteriser of overlapping masks, the fills of
unassigned pixels, run-length masks, k-means, SLIC as a generator, precomputed maps, the map
checks (uint8 wrap, 0 as unassigned) and the sidecar comparisons."""
import cv2
import numpy as np
import pytest
import torch

from conftest import NUSCENES_SAMPLE

from projects.img2lidar.preparation.regions import build_region_generator
from projects.img2lidar.preparation.regions.kmeans import kmeans
from projects.img2lidar.preparation.regions.map_check import (pieces_per_id,
                                                              saturated_id_range,
                                                              summarize_map)
from projects.img2lidar.preparation.regions.mask_rasterizer import rasterize_masks
from projects.img2lidar.preparation.regions.rle_masks import RleMasks
from projects.img2lidar.preparation.regions.sidecar import (expectation_differences,
                                                            spec_differences)
from projects.img2lidar.preparation.regions.unassigned_fill import fill_from, fill_nearest


def _box(shape, y0, y1, x0, x1):
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


# the rasteriser ------------------------------------------------------------------------------
SHAPE = (4, 6)
#: a 4x6 image: A the left 4 columns (16 px), B rows 1-2 x columns 2-4 (6 px, over A's edge),
#: C the pixel (1, 3) inside B (1 px); column 5 rows 0 and 3 are in no mask
A = _box(SHAPE, 0, 4, 0, 4)
B = _box(SHAPE, 1, 3, 2, 5)
C = _box(SHAPE, 1, 2, 3, 4)


def test_larger_masks_first_smaller_on_top_and_unassigned_minus_one():
    # given in a scrambled order: ids follow the painting order, 0 = the largest
    labels = rasterize_masks([C, A, B])
    expected = np.array([[0, 0, 0, 0, -1, -1],
                         [0, 0, 1, 2, 1, -1],
                         [0, 0, 1, 1, 1, -1],
                         [0, 0, 0, 0, -1, -1]])
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, expected)


def test_min_area_and_the_cap_on_regions():
    # C (1 px) is below min_area 2: B shows whole
    np.testing.assert_array_equal(rasterize_masks([C, A, B], min_area=2), np.array(
        [[0, 0, 0, 0, -1, -1], [0, 0, 1, 1, 1, -1], [0, 0, 1, 1, 1, -1],
         [0, 0, 0, 0, -1, -1]]))
    # the cap keeps the K largest: with K=1 only A
    np.testing.assert_array_equal(rasterize_masks([C, A, B], max_regions=1),
                                  np.where(A, 0, -1))


def test_equal_areas_by_score_then_input_order_and_hidden_masks_relabelled():
    left, right = _box(SHAPE, 0, 2, 0, 3), _box(SHAPE, 0, 2, 1, 4)  # 6 px each, overlapping
    # higher score painted first, so the other lies on top where they overlap
    by_score = rasterize_masks([left, right], scores=np.array([0.2, 0.9]))
    np.testing.assert_array_equal(by_score[0], [1, 1, 1, 0, -1, -1])
    by_order = rasterize_masks([left, right], scores=np.array([0.5, 0.5]))
    np.testing.assert_array_equal(by_order[0], [0, 1, 1, 1, -1, -1])
    # a mask wholly covered by two smaller ones disappears, and the ids stay 0..n-1
    hidden = _box(SHAPE, 0, 1, 0, 4)  # 4 px
    halves = [_box(SHAPE, 0, 1, 0, 2), _box(SHAPE, 0, 1, 2, 4)]  # 2 px each, on top
    labels = rasterize_masks([A, hidden, *halves])
    assert sorted(np.unique(labels)) == [-1, 0, 1, 2]
    np.testing.assert_array_equal(labels[0, :4], [1, 1, 2, 2])


def test_no_mask_is_all_unassigned():
    labels = rasterize_masks([], shape=SHAPE)
    assert labels.shape == SHAPE and (labels == -1).all()


# fills ---------------------------------------------------------------------------------------
def test_fill_nearest_and_fill_from_another_map():
    labels = np.array([[0, 0, -1, -1, 1]])
    # distances to the nearest assigned pixel: column 2 -> 0 (1 px), column 3 -> 1 (1 px)
    np.testing.assert_array_equal(fill_nearest(labels), [[0, 0, 0, 1, 1]])
    slic = np.array([[5, 5, 5, 7, 7]])
    # the holes take SLIC's regions as new ids after the masks' ones
    np.testing.assert_array_equal(fill_from(labels, slic), [[0, 0, 2, 3, 1]])
    assert (fill_nearest(np.full((2, 2), -1)) == -1).all()


# run lengths ---------------------------------------------------------------------------------
def test_rle_masks_decode_column_major_runs():
    # [[0, 1, 1], [0, 0, 1]] column by column: 0 0 | 1 0 | 1 1 -> runs 0x2, 1x1, 0x1, 1x2
    masks = RleMasks([{'size': [2, 3], 'counts': [2, 1, 1, 2]},
                      {'size': [2, 3], 'counts': [0, 6]}])
    np.testing.assert_array_equal(masks[0], [[False, True, True], [False, False, True]])
    assert masks[1].all()
    np.testing.assert_array_equal(masks.areas(), [3, 6])
    with pytest.raises(ValueError, match='cover 5 pixels'):
        RleMasks([{'size': [2, 3], 'counts': [2, 3]}])[0]


# k-means -------------------------------------------------------------------------------------
def test_kmeans_finds_planted_clusters_deterministically():
    rng = np.random.default_rng(0)
    means = np.array([[0, 0, 0, 0], [8, 0, 0, 0], [0, 0, -8, 0]], dtype=np.float32)
    truth = np.repeat(np.arange(3), [40, 25, 60])
    x = means[truth] + rng.normal(0, 0.2, (len(truth), 4)).astype(np.float32)
    centroids, labels = kmeans(torch.from_numpy(x), 3, seed=1)
    labels = labels.numpy()
    # one label per planted cluster, all different
    found = [np.unique(labels[truth == c]) for c in range(3)]
    assert all(len(f) == 1 for f in found) and len({int(f[0]) for f in found}) == 3
    for c in range(3):
        np.testing.assert_allclose(centroids[found[c][0]].numpy(), x[truth == c].mean(0),
                                   atol=1e-5)
    again_c, again_l = kmeans(torch.from_numpy(x), 3, seed=1)
    assert torch.equal(again_c, centroids) and np.array_equal(again_l.numpy(), labels)
    with pytest.raises(ValueError, match='k must be in'):
        kmeans(torch.from_numpy(x[:2]), 3)


def test_kmeans_on_duplicated_points_uses_both_clusters():
    x = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    centroids, labels = kmeans(x, 2)
    assert sorted(labels.bincount().tolist()) == [5, 5]


# SLIC ----------------------------------------------------------------------------------------
def test_slic_generator_gives_the_same_maps_as_the_slic_function():
    from projects.img2lidar.preparation.superpixels import slic_superpixels
    bgr = cv2.imread(str(next(NUSCENES_SAMPLE.glob('*CAM_FRONT__*.jpg'))))
    gen = build_region_generator(dict(type='slic', downscale=4))
    labels = gen.generate(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    assert labels.dtype == np.int32 and labels.shape == bgr.shape[:2]
    np.testing.assert_array_equal(labels, slic_superpixels(bgr, downscale=4))
    spec = gen.spec()
    assert spec['name'] == 'slic' and spec['checkpoint_sha256'] is None
    assert spec['parameters'] == dict(n_segments=150, compactness=6.0, sigma=3.0,
                                      downscale=4.0, preprocess='opencv')
    assert {'numpy', 'cv2', 'skimage', 'img2lidar'} <= set(spec['versions'])
    with pytest.raises(KeyError, match="unknown region generator 'slick'; registered: "):
        build_region_generator('slick')


# precomputed maps ----------------------------------------------------------------------------
def _source(token):
    return dict(cam='CAM_FRONT', stem='img', name='img.jpg', img_path='img.jpg', token='s',
                sample_data_token=token)


def test_precomputed_png_with_zero_as_unassigned(tmp_path):
    stored = np.array([[0, 3, 3], [7, 7, 0]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'tok1.png'), stored)
    gen = build_region_generator(dict(type='precomputed', unassigned=0,
                                      template=str(tmp_path / '{sample_data_token}.png')))
    labels = gen.generate(np.zeros((2, 3, 3), np.uint8), _source('tok1'))
    np.testing.assert_array_equal(labels, [[-1, 0, 0], [1, 1, -1]])
    assert gen.spec()['unassigned'] is True
    # a map of another size than its image: refused, or scaled by nearest neighbour
    with pytest.raises(ValueError, match=r'tok1.png: map of 3x2, its image is 6x4'):
        gen.generate(np.zeros((4, 6, 3), np.uint8), _source('tok1'))
    scaled = build_region_generator(dict(type='precomputed', unassigned=0, resize=True,
                                         template=str(tmp_path / '{sample_data_token}.png')))
    assert scaled.generate(np.zeros((4, 6, 3), np.uint8), _source('tok1')).shape == (4, 6)
    with pytest.raises(KeyError, match="field 'scene'"):
        build_region_generator(dict(type='precomputed', template='{scene}.png')).generate(
            np.zeros((2, 3, 3), np.uint8), _source('tok1'))


def test_precomputed_refuses_a_wrapped_uint8_map(tmp_path):
    wrapped = (np.arange(16 * 20).reshape(16, 20) % 256).astype(np.uint8)  # 320 masks
    cv2.imwrite(str(tmp_path / 'w.png'), wrapped)
    gen = build_region_generator(dict(type='precomputed', template=str(tmp_path / 'w.png')))
    with pytest.raises(ValueError, match='uses all 256 ids: more masks than the type holds'):
        gen.generate(np.zeros((16, 20, 3), np.uint8), _source('w'))
    allowed = build_region_generator(dict(type='precomputed', allow_saturated=True,
                                          template=str(tmp_path / 'w.png')))
    assert allowed.generate(np.zeros((16, 20, 3), np.uint8), _source('w')).max() == 255


# the map checks ------------------------------------------------------------------------------
def _grid_map(rows=12, cols=16, cell=6):
    """A SLIC-like map: rows x cols rectangles, ids row-major from 0."""
    ids = np.arange(rows * cols).reshape(rows, cols)
    return np.kron(ids, np.ones((cell, cell), dtype=np.int64))


def test_checks_of_a_clean_map():
    labels = _grid_map().astype(np.uint8)  # 192 ids
    s = summarize_map(labels)
    assert (s.regions, s.id_min, s.id_max, s.unassigned) == (192, 0, 191, 0.0)
    assert s.median_pieces == 1 and s.zero_pieces == 1
    assert not s.saturated and not s.zero_unassigned
    np.testing.assert_array_equal(pieces_per_id(np.array([[1, 0, 1], [1, 0, 2]])), [1, 2, 1])


def test_checks_catch_the_uint8_wrap():
    wrapped = (_grid_map(20, 15) % 256).astype(np.uint8)  # 300 masks in uint8
    assert saturated_id_range(wrapped) and summarize_map(wrapped).saturated
    assert not saturated_id_range(wrapped.astype(np.uint16))  # 16 bits: room for all
    assert not saturated_id_range(_grid_map(15, 17).astype(np.uint8))  # 255 ids


def test_checks_catch_zero_as_unassigned():
    # masks painted from id 0 onto a zero image; the pixels no mask covers, scattered every
    # 5 px, keep 0, so id 0 = the first mask plus 99 isolated pixels
    labels = _grid_map(8, 8)
    labels[2::5, 2::5] = 0
    s = summarize_map(labels.astype(np.uint8))
    assert s.zero_unassigned and s.zero_pieces == 100
    assert not summarize_map(_grid_map(8, 8).astype(np.uint8)).zero_unassigned


# sidecars ------------------------------------------------------------------------------------
def test_sidecar_differences():
    sidecar = dict(generator='slic', parameters=dict(n_segments=150, downscale=2.0),
                   checkpoint_sha256=None)
    spec = dict(name='slic', parameters=dict(n_segments=150, downscale=2.0),
                checkpoint_sha256=None)
    assert spec_differences(sidecar, spec) == []
    spec['parameters']['downscale'] = 1.0
    assert spec_differences(sidecar, spec) == ['downscale: 2.0 in the folder, 1.0 now']
    assert spec_differences(sidecar, dict(spec, name='sam')) == [
        "generator: 'slic' in the folder, 'sam' now"]
    assert expectation_differences(sidecar, dict(generator='slic')) == []
    assert expectation_differences(sidecar, dict(generator='slic', downscale=2)) == []
    assert expectation_differences(sidecar, dict(generator='slic', sigma=3.0)) == [
        "sigma: '<absent>' in the maps, 3.0 expected"]
    assert expectation_differences(sidecar, dict(generator='teacher_kmeans')) == [
        "generator: 'slic' made them, 'teacher_kmeans' expected"]


# purity against labels -----------------------------------------------------------------------
def test_region_purity_counts():
    from projects.img2lidar.preparation.regions.label_purity import region_purity
    # region 0: labels 1, 1, 2 (majority 2 of 3); region 5: 0, 0 (2 of 2); region -1: one
    # labelled point (unassigned); label 3 is ignored
    regions = np.array([0, 0, 0, 5, 5, -1, 5, -1])
    labels = np.array([1, 1, 2, 0, 0, 2, 3, 3])
    p = region_purity(regions, labels, ignore=3)
    assert (p.majority, p.counted, p.unassigned, p.regions) == (4, 5, 1, 2)
    assert p.purity == 4 / 5 and p.points_per_region == 5 / 2


def test_maps_with_unassigned_pixels_are_stored_signed(tmp_path):
    from projects.img2lidar.datasets.transforms.superpixel_map import read_superpixels
    from projects.img2lidar.preparation.superpixels import write_labels
    labels = np.array([[-1, 0, 3], [2, -1, 1]], dtype=np.int32)
    write_labels(str(tmp_path / 'm.npz'), labels)
    stored = read_superpixels(str(tmp_path / 'm.npz'))
    assert stored.dtype == np.int16
    np.testing.assert_array_equal(stored, labels)
    with pytest.raises(ValueError, match='2 pixels are unassigned'):
        write_labels(str(tmp_path / 'm.png'), labels)
    write_labels(str(tmp_path / 'u.npz'), np.array([[0, 255]]))
    assert read_superpixels(str(tmp_path / 'u.npz')).dtype == np.uint8
