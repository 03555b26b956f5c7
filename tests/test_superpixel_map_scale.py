"""Superpixel maps stored below full resolution (``create_superpixels --map-scale``): the scale
is recorded in the file, read exactly (never resized), and checked against the image."""
import pickle
import re

import numpy as np
import pytest
from mmdet3d.registry import DATASETS

from conftest import NUSCENES_SAMPLE, sample_info_file
from projects.img2lidar.datasets.transforms.superpixel_map import (read_scaled_superpixels,
                                                                    stored_map_shape)
from projects.img2lidar.file_integrity import DamagedFileError
from projects.img2lidar.preparation.superpixels import create_superpixels, write_labels
from projects.img2lidar.preparation.verify_data import verify_sample


def _one_camera_root(tmp_path, cam='CAM_FRONT_LEFT'):
    """A data root with the sample's sweep and one camera (an info file listing only it)."""
    with open(sample_info_file(NUSCENES_SAMPLE), 'rb') as f:
        info = pickle.load(f)
    entry = info['data_list'][0]
    entry['images'] = {cam: entry['images'][cam]}
    for name in (entry['images'][cam]['img_path'], entry['lidar_points']['lidar_path']):
        (tmp_path / name).symlink_to(NUSCENES_SAMPLE / name)
    ann = tmp_path / 'one_camera.pkl'
    with open(ann, 'wb') as f:
        pickle.dump(info, f)
    return ann, entry['images'][cam]['img_path']


def _samples(root, ann, sp, decode_scale, seeds):
    pipeline = [
        dict(type='LoadLidarPoints', load_dim=5, use_dim=[0, 1, 2, 3]),
        dict(type='LoadMultiViewImagesAndSuperpixels', decode_scale=decode_scale),
        dict(type='PointPixelPairing', min_depth=1.0),
        dict(type='PairedRandomResizedCrop', size=(224, 416), min_pairs_per_image=1,
             min_pairs=1),
        dict(type='PairedRandomFlip', prob=0.5),
        dict(type='PackImageLidarInputs'),
    ]
    ds = DATASETS.build(dict(type='ImageLidarPretrainDataset', ann_file=str(ann),
                             data_root=str(root), data_prefix=dict(pts='', img='', sp=sp),
                             pipeline=pipeline))
    out = []
    for seed in seeds:
        np.random.seed(seed)
        out.append(ds[0])
    return out


def test_a_map_at_the_scale_slic_computed_it_gives_the_same_samples(tmp_path):
    """--downscale 2 --map-scale 2 keeps the map SLIC computed at half resolution; every crop,
    flip, pair and final map equals those of the upsampled full-resolution map (both decode
    scales). Before --map-scale, the half-size map was refused as the wrong size."""
    ann, img = _one_camera_root(tmp_path)
    for scale in (1, 2):
        create_superpixels(str(ann), str(tmp_path), str(tmp_path / f'sp{scale}'), img_prefix='',
                           workers=1, progress=False, downscale=2, map_scale=scale)
    stem = img.rsplit('.', 1)[0]
    full, s1 = read_scaled_superpixels(str(tmp_path / 'sp1' / 'CAM_FRONT_LEFT' / f'{stem}.npz'))
    half, s2 = read_scaled_superpixels(str(tmp_path / 'sp2' / 'CAM_FRONT_LEFT' / f'{stem}.npz'),
                                       (900, 1600), img)
    assert (s1, s2, full.shape, half.shape) == (1, 2, (900, 1600), (450, 800))
    # the full-resolution map is the half one with every pixel repeated over its 2x2 block
    np.testing.assert_array_equal(full, np.repeat(np.repeat(half, 2, axis=0), 2, axis=1))
    seeds = range(6)
    for decode_scale in (1, 2):
        ref = _samples(tmp_path, ann, 'sp1', decode_scale, seeds)
        got = _samples(tmp_path, ann, 'sp2', decode_scale, seeds)
        for a, b in zip(ref, got):
            np.testing.assert_array_equal(a['inputs']['img'], b['inputs']['img'])
            np.testing.assert_array_equal(a['inputs']['superpixels'], b['inputs']['superpixels'])
            for key in ('point', 'cam', 'pixel'):
                np.testing.assert_array_equal(a['inputs']['pairs'][key],
                                              b['inputs']['pairs'][key])
            assert a['data_samples'].metainfo['img_aug'] == b['data_samples'].metainfo['img_aug']
            assert a['data_samples'].metainfo['superpixel_sizes'] == \
                b['data_samples'].metainfo['superpixel_sizes']
    # the crops differ between seeds: the comparison covers several boxes
    assert len({str(s['data_samples'].metainfo['img_aug']) for s in ref}) == len(seeds)


def test_the_stored_shape_follows_the_scale():
    assert stored_map_shape((900, 1600), 1) == (900, 1600)
    assert stored_map_shape((900, 1600), 2) == (450, 800)
    assert stored_map_shape((900, 1600), 4) == (225, 400)
    assert stored_map_shape((1080, 1920), 7) == (155, 275)  # ceil: the last block is partial


def test_a_map_of_the_wrong_size_for_its_scale_names_both_files(tmp_path):
    path = tmp_path / 'map.npz'
    write_labels(str(path), np.zeros((450, 799), np.int32), scale=2)
    msg = re.escape(f'{path}: superpixel map is 799x450 at scale 2 but its image cam.jpg is '
                    '1600x900 (its map at scale 2 is 800x450)')
    with pytest.raises(ValueError, match=msg):
        read_scaled_superpixels(str(path), (900, 1600), 'cam.jpg')
    # the same map read as full resolution is the wrong size too: no silent resize
    np.savez_compressed(path, labels=np.zeros((450, 800), np.uint8))
    with pytest.raises(ValueError, match=re.escape(f'{path}: superpixel map is 800x450 but its '
                                                   'image cam.jpg is 1600x900')):
        read_scaled_superpixels(str(path), (900, 1600), 'cam.jpg')
    for bad in (np.int64(0), np.float32(2.0), np.array([2, 2])):
        np.savez_compressed(path, labels=np.zeros((450, 800), np.uint8), scale=bad)
        with pytest.raises(ValueError, match=re.escape(f"{path}: the map's scale must be one "
                                                       'integer >= 1')):
            read_scaled_superpixels(str(path))
    with pytest.raises(ValueError, match='only an .npz map records its scale'):
        write_labels(str(tmp_path / 'map.png'), np.zeros((4, 4), np.int32), scale=2)


def test_verify_data_checks_a_scaled_map_against_its_image(tmp_path):
    img = str(NUSCENES_SAMPLE / _one_camera_root(tmp_path)[1])
    good, bad = tmp_path / 'good.npz', tmp_path / 'bad.npz'
    write_labels(str(good), np.zeros((450, 800), np.int32), scale=2)
    write_labels(str(bad), np.zeros((450, 800), np.int32), scale=4)
    results = verify_sample(dict(images=[img, img], superpixels=[str(good), str(bad)],
                                 params={}))
    assert [r[2] for r in results] == ['ok', 'ok', 'ok', 'damaged']  # 2 images, 2 maps
    assert results[3][3] == (f'superpixel map is 800x450 at scale 4 but its image {img} is '
                             '1600x900 (its map at scale 4 is 400x225)')


def test_every_bit_flip_of_a_scaled_map_is_named_or_harmless(tmp_path):
    """Both members are checked against their CRC-32; a flip that hides the scale member
    (its name in the directory) reads as a full-resolution map, which its image's size
    refuses."""
    labels = (np.arange(24 * 40).reshape(24, 40) // 37 % 11).astype(np.int32)
    path = tmp_path / 'map.npz'
    write_labels(str(path), labels, scale=2)
    data = path.read_bytes()
    assert read_scaled_superpixels(str(path), (48, 80))[1] == 2
    outcomes = {'error': 0, 'identical': 0}
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(flipped))
        try:
            got, scale = read_scaled_superpixels(str(path), (48, 80), 'cam.jpg')
        except (DamagedFileError, ValueError) as e:
            assert str(path) in str(e), e
            outcomes['error'] += 1
            continue
        assert scale == 2 and np.array_equal(got, labels), f'bit {bit} read silently different'
        outcomes['identical'] += 1
    assert outcomes['error'] > 0.85 * len(data) * 8, outcomes
