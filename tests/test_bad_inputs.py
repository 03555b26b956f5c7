"""Every bad input to the pretraining dataset gets an error that names the file, or a logged,
counted skip where the config allows it (``skip_bad_samples=True``)."""
import copy
import pickle
import re
import shutil

import numpy as np
import pytest
from mmdet3d.registry import DATASETS

from conftest import sample_info_file
from projects.img2lidar.datasets import BadSampleError

LOAD = [dict(type='LoadLidarPoints', load_dim=5, use_dim=[0, 1, 2, 3]),
        dict(type='LoadMultiViewImagesAndSuperpixels'),
        dict(type='PointPixelPairing', min_depth=1.0)]


def _dataset(root, pipeline=LOAD, ann=None, **kw):
    ann = ann or str(sample_info_file(root))
    return DATASETS.build(dict(type='ImageLidarPretrainDataset', ann_file=str(ann),
                               data_root=str(root),
                               data_prefix=dict(pts='', img='', sp='superpixels'),
                               pipeline=pipeline, **kw))


@pytest.fixture
def copy_root(nuscenes_root, tmp_path):
    """A writable copy of the sample and its superpixels (files, not links), and its info."""
    dst = tmp_path / 'root'
    shutil.copytree(nuscenes_root, dst, symlinks=False)
    with open(sample_info_file(dst), 'rb') as f:
        info = pickle.load(f)
    return dst, info


def _two_samples(root, info, edit):
    """An info file whose first entry is edited by ``edit`` and whose second is the sample."""
    bad = copy.deepcopy(info['data_list'][0])
    edit(bad)
    path = root / 'two.pkl'
    with open(path, 'wb') as f:
        pickle.dump(dict(info, data_list=[bad, info['data_list'][0]]), f)
    return str(path)


def _raises_then_skips(root, ann, match):
    """The bad first sample raises a BadSampleError matching ``match``; with skipping it is
    logged, counted and replaced by the good one."""
    with pytest.raises(BadSampleError, match=match):
        _dataset(root, ann=ann)[0]
    ds = _dataset(root, ann=ann, skip_bad_samples=True)
    out = ds[0]
    assert out['lidar_path'].endswith('.pcd.bin')
    assert ds.num_skipped >= 1


# -- files --------------------------------------------------------------------------------------
def test_truncated_lidar_file_names_the_file(copy_root):
    root, info = copy_root
    lidar = root / info['data_list'][0]['lidar_points']['lidar_path']
    lidar.write_bytes(lidar.read_bytes()[:-6])
    with pytest.raises(ValueError, match=re.escape(lidar.name) + '.*not a whole number of points'):
        _dataset(root)[0]


def test_missing_and_unreadable_images_name_the_file(copy_root):
    root, info = copy_root
    img = root / info['data_list'][0]['images']['CAM_BACK']['img_path']
    img.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(img.name)):
        _dataset(root)[0]
    img.write_bytes(b'not a jpeg')
    with pytest.raises(ValueError, match=re.escape(f'{img.name}: unreadable image')):
        _dataset(root)[0]


def _map_path(root, info, cam='CAM_FRONT'):
    stem = info['data_list'][0]['images'][cam]['img_path'].rsplit('.', 1)[0]
    return root / 'superpixels' / cam / (stem + '.npz')


def test_bad_superpixel_maps_name_the_file(copy_root):
    root, info = copy_root
    sp = _map_path(root, info)
    sp.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(sp.name)):
        _dataset(root)[0]
    sp.write_bytes(b'garbage')
    with pytest.raises(ValueError, match=re.escape(f'{sp.name}: unreadable superpixel map')):
        _dataset(root)[0]
    np.savez_compressed(sp, labels=np.zeros((450, 800), np.uint8))
    msg = re.escape(f'{sp.name}: superpixel map is 800x450 but its image')
    with pytest.raises(ValueError, match=msg):
        _dataset(root)[0]


def test_negative_superpixel_ids_name_the_file_or_are_ignored(copy_root):
    root, info = copy_root
    sp = _map_path(root, info)
    labels = np.load(sp)['labels'].astype(np.int64)
    negative = np.full_like(labels, -3)
    np.savez_compressed(sp, labels=negative)
    count = labels.size
    with pytest.raises(ValueError, match=re.escape(f'{sp.name}: {count} pixels have a negative '
                                                   'superpixel id (smallest -3)')):
        _dataset(root)[0]
    # 'ignore': a map with a negative band reads as unassigned pixels (-1) that pair with no
    # superpixel; the rest keeps its partition
    band = slice(450, 550)  # rows where lidar points land
    part = labels.copy()
    part[band] = -7
    np.savez_compressed(sp, labels=part)
    pipeline = copy.deepcopy(LOAD)
    pipeline[1]['negative_superpixels'] = 'ignore'
    out = _dataset(root, pipeline)[0]
    got = out['superpixels'][0]
    outside = np.ones(len(got), bool)
    outside[band] = False
    assert (got[band] == -1).all() and (got[outside] >= 0).all()
    assert out['superpixel_sizes'][0] == len(np.unique(part[outside]))
    # the pairs on the band read no superpixel (what the model reads: the map at the pixel)
    rows = out['pairs']['cam'] == 0
    px = out['pairs']['pixel'][rows]
    on_band = (px[:, 1] >= band.start) & (px[:, 1] < band.stop)
    under = got[px[:, 1], px[:, 0]]
    assert on_band.any() and (under[on_band] == -1).all()
    assert (under[~on_band] >= 0).all()


# -- values ---------------------------------------------------------------------------------
@pytest.mark.parametrize('column,value', [(1, np.nan), (3, np.inf), (3, np.nan)])
def test_non_finite_point_values_raise_or_are_skipped(copy_root, column, value):
    """A non-finite coordinate or intensity (any used column) is a bad sample."""
    root, info = copy_root
    pts = np.fromfile(root / info['data_list'][0]['lidar_points']['lidar_path'], np.float32)
    pts = pts.reshape(-1, 5)
    pts[[10, 20], column] = value
    pts.tofile(root / 'bad.bin')

    def edit(entry):
        entry['lidar_points']['lidar_path'] = 'bad.bin'

    ann = _two_samples(root, info, edit)
    _raises_then_skips(root, ann, re.escape(f'bad.bin: 2 points have NaN or infinite values '
                                            f'(in used column(s) [{column}] of 4)'))


def test_non_finite_unused_column_is_not_an_error(copy_root):
    """The ring index (column 4) is not loaded by ``use_dim=[0, 1, 2, 3]``: a NaN there is
    harmless."""
    root, info = copy_root
    pts = np.fromfile(root / info['data_list'][0]['lidar_points']['lidar_path'], np.float32)
    pts = pts.reshape(-1, 5)
    pts[5, 4] = np.nan
    pts.tofile(root / 'ring.bin')

    def edit(entry):
        entry['lidar_points']['lidar_path'] = 'ring.bin'

    out = _dataset(root, ann=_two_samples(root, info, edit))[0]
    assert np.isfinite(out['points']).all()


@pytest.mark.parametrize('key', ['lidar2cam', 'cam2img'])
def test_non_finite_calibration_raises_or_is_skipped(copy_root, key):
    """A NaN calibration matrix used to drop every pair of that camera silently."""
    root, info = copy_root

    def edit(entry):
        mat = np.array(entry['images']['CAM_BACK_LEFT'][key], dtype=np.float64)
        mat[0, 0] = np.nan
        entry['images']['CAM_BACK_LEFT'][key] = mat.tolist()

    ann = _two_samples(root, info, edit)
    _raises_then_skips(root, ann, re.escape('two.pkl: sample ') + '.*'
                       + re.escape(f'camera CAM_BACK_LEFT has a non-finite {key} (1 of'))


def test_too_few_pairs_raise_or_are_skipped(nuscenes_root):
    pipeline = LOAD + [dict(type='PairedRandomResizedCrop', min_pairs=10**6, max_tries=3)]
    with pytest.raises(BadSampleError, match=r'pcd.bin: only \d+ point-pixel pairs left after 3'):
        _dataset(nuscenes_root, pipeline)[0]
    # with skipping, mmengine redraws until max_refetch and then reports the dataset as broken
    ds = _dataset(nuscenes_root, pipeline, skip_bad_samples=True, max_refetch=3)
    with pytest.raises(Exception, match='Cannot find valid'):
        ds[0]
    assert ds.num_skipped == 4
